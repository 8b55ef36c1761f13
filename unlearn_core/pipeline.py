"""From specs to stored results: train the references, run a method, store the run.

The CLI and the app's job runner both call these functions; nothing here knows which.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from .config import RunSpec, SetupSpec
from .errors import Cancelled, DivergedError
from .methods import UnlearnContext, get_method
from .errors import UserError
from .metrics.activations import ProbeSubset, activations, probe_subset
from .metrics.embeddings import joint_umap
from .metrics.report import evaluate
from .progress import Progress
from .models import LensModel
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
    method.accept(params, refs.original.model)
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
    except KeyboardInterrupt:  # Ctrl-C: the user stopped it, the run did not fail
        store.fail(run_id, "cancelled (interrupted with Ctrl-C)", cancelled=True)
        raise
    except BaseException as exc:
        store.fail(run_id, f"{type(exc).__name__}: {exc}")
        raise


def unlearned_model(store: RunStore, run_id: str, exp: Experiment) -> LensModel:
    """A finished run's unlearned model, rebuilt from its stored weights."""
    model = exp.new_model()
    model.load_state_dict(store.load_weights(run_id))
    return _frozen(model)


@dataclass
class RebuiltRun:
    """A finished run's three models rebuilt from the store, with their probe-layer
    activations on the run's probe subset (rows follow eval/probe_index)."""

    spec: RunSpec
    experiment: Experiment
    subset: ProbeSubset
    models: dict[str, LensModel]
    activations: dict[str, dict[str, np.ndarray]]


def rebuild_run(store: RunStore, run_id: str, purpose: str,
                progress: Progress | None = None) -> RebuiltRun:
    """The original and oracle from the checkpoint cache (trained again if the cache was
    cleared), the unlearned model from the run's weights, and their activations on the
    probe subset the run was evaluated on. `purpose` ends the error messages ("embed it")."""
    progress = progress or Progress()
    record = store.get(run_id)
    if record.status != "done" or "layers" not in (record.report or {}):
        raise UserError(f"run {run_id}: only a finished run with layer metrics can be "
                        f"rebuilt to {purpose}")
    spec = RunSpec.from_dict(record.spec)
    refs = train_references(spec.setup, store, progress.stage(0.0, 0.25))
    exp = refs.experiment
    subset = probe_subset(exp, seed=spec.setup.seed)
    if not np.array_equal(subset.index, store.load_arrays(run_id)["eval/probe_index"]):
        raise UserError(f"run {run_id} was evaluated on another probe subset than this "
                        f"version draws; run it again to {purpose}")
    models = {"original": refs.original.model, "unlearned": unlearned_model(store, run_id, exp),
              "oracle": refs.oracle.model}
    acts = {}
    for step, (role, model) in enumerate(models.items()):
        progress.update(0.25 + 0.25 * step, f"activations of the {role} model")
        key = reference_key(spec.setup, role) if role != "unlearned" else None
        acts[role] = activations(model, exp, subset, key)
    progress.update(1.0, "models rebuilt")
    return RebuiltRun(spec, exp, subset, models, acts)


def umap_of_run(store: RunStore, run_id: str, layer: str,
                progress: Progress | None = None) -> dict[str, np.ndarray]:
    """One joint UMAP of the original's, the unlearned model's and the oracle's
    activations at `layer` on the run's probe subset, the same examples as its PCA.

    Kept with the run (derived result "umap-<layer>"), so it is computed once; returns
    {"eval/umap/<layer>/<role>": (n, 2) coordinates}, named like the stored PCA.
    """
    progress = progress or Progress()
    name = f"umap-{layer}"
    stored = store.get_derived(run_id, name)
    if stored is not None:
        return stored
    # Checked before rebuilding, which may have to train the references again.
    names = (store.get(run_id).report or {}).get("layers", {}).get("names")
    if names is not None and layer not in names:
        raise UserError(f"layer: expected one of {names}, got {layer!r}")
    run = rebuild_run(store, run_id, "embed it", progress.stage(0.0, 0.4))
    features = {role: acts[layer] for role, acts in run.activations.items()}
    progress.update(0.4, f"fitting one UMAP on {sum(len(f) for f in features.values()):,} points")
    coords = joint_umap(features, seed=run.spec.setup.seed)
    progress.check()
    result = {f"eval/umap/{layer}/{role}": coords[role].astype(np.float32) for role in features}
    store.put_derived(run_id, name, result)
    progress.update(1.0, "UMAP ready")
    return result
