"""From specs to stored results: train the references, run a method, store the run.

The CLI and the app's job runner both call these functions; nothing here knows which.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch

from .config import RunSpec, SetupSpec
from .errors import Cancelled, DivergedError
from .methods import UnlearnContext, get_method
from .metrics.report import evaluate
from .progress import Progress
from .runs import RunStore
from .training import Experiment, TrainedModel, get_oracle, get_original, prepare, reference_key


@dataclass
class References:
    """The experiment with its original model and retrain oracle."""

    experiment: Experiment
    original: TrainedModel
    oracle: TrainedModel


def train_references(spec: SetupSpec, store: RunStore, progress: Progress | None = None) -> References:
    """Train (or load from the cache) the original and the oracle of a setup."""
    progress = progress or Progress()
    exp = prepare(spec)
    original = get_original(exp, store, progress.stage(0.0, 0.5))
    oracle = get_oracle(exp, store, progress.stage(0.5, 1.0))
    return References(exp, original, oracle)


def _frozen(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _check_finite(model: torch.nn.Module, method: str) -> None:
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise DivergedError(f"{method}: the unlearned model has non-finite values in "
                                f"{name}; the run diverged (lower the learning rate)")


def run_unlearning(spec: RunSpec, store: RunStore, progress: Progress | None = None) -> str:
    """Run one method on a setup, evaluate it and store the run; returns the run id.

    Hyperparameters are validated before any training starts. A failed or cancelled run
    is recorded as such and the error re-raised; nothing half-written is kept.
    """
    progress = progress or Progress()
    method = get_method(spec.method.name)
    params = method.resolve_params(spec.method.params)
    resolved = RunSpec(spec.setup, type(spec.method)(spec.method.name, params))
    refs = train_references(spec.setup, store, progress.stage(0.0, 0.4))
    exp = refs.experiment
    run_id = store.create("unlearn", resolved.to_dict(),
                          label=f"{method.title} · {spec.setup.forget.describe()}")
    try:
        ctx = UnlearnContext(model=copy.deepcopy(refs.original.model),
                             original=_frozen(copy.deepcopy(refs.original.model)),
                             experiment=exp, params=params,
                             progress=progress.stage(0.4, 0.8), seed=spec.setup.seed)
        started = time.perf_counter()
        outcome = method.unlearn(ctx)
        seconds = time.perf_counter() - started
        _check_finite(outcome.model, method.title)
        eval_started = time.perf_counter()
        report, eval_arrays = evaluate(
            {"unlearned": outcome.model, "original": refs.original.model,
             "oracle": refs.oracle.model}, exp, seconds=seconds,
            oracle_seconds=refs.oracle.meta["seconds"],
            reference_keys={role: reference_key(spec.setup, role) for role in ("original", "oracle")},
            progress=progress.stage(0.8, 1.0))
        report["cost"]["evaluate_seconds"] = time.perf_counter() - eval_started
        report["method"] = {"name": method.name, "title": method.title, "params": params,
                            "info": outcome.info, "curves": outcome.curves}
        report["run_spec_hash"] = resolved.hash
        weights = {k: v.detach().cpu() for k, v in outcome.model.state_dict().items()}
        store.finish(run_id, report, weights=weights, arrays={**outcome.artifacts, **eval_arrays})
        progress.update(1.0, "done")
        return run_id
    except Cancelled:
        store.fail(run_id, "cancelled by the user", cancelled=True)
        raise
    except BaseException as exc:
        store.fail(run_id, f"{type(exc).__name__}: {exc}")
        raise
