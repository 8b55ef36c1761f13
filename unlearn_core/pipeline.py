"""From specs to stored results: train the references, run a method, store the run.

The CLI and the app's job runner both call these functions; nothing here knows which.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from . import array_keys
from .config import ENCODER_MODELS, MethodSpec, RunSpec, SetupSpec
from .data import user as user_data
from .errors import Cancelled, DivergedError
from .io import load_state_dict
from .methods import Method, Outcome, UnlearnContext, get_method
from .methods.user import ImportedCheckpoint, state_dict_digest
from .errors import UserError
from .metrics.activations import (PartsCache, ProbeSubset, activations, probe_subset,
                                  reference_cache_key)
from .metrics.embeddings import joint_umap
from .metrics.readouts import model_readouts
from .metrics.relearn import relearn_report, relearn_sentence
from .metrics.poison import attack_success_scorer
from .metrics.report import evaluate, joint_pca_arrays
from .progress import Progress
from .models import LensModel
from .runs import RunStore
from .training import (CheckpointCache, Experiment, TrainedModel, encoder_setup, get_oracle,
                       get_original, get_twin, prepare, reference_key, seeded)
from .vocabulary import REFERENCE_ROLES, ROLES, TWIN

# A checkpoint-cache entry: (state dict on the CPU, meta), as `RunStore.cache_get` gives.
CacheEntry = tuple[dict[str, torch.Tensor], dict]


@dataclass
class References:
    """The experiment with its original model and retrain oracle."""

    experiment: Experiment
    original: TrainedModel
    oracle: TrainedModel
    twin: TrainedModel | None = None  # with an independent oracle: the seed-noise twin

    def models(self) -> dict[str, LensModel]:
        """The reference models by role, the twin where there is one."""
        return {"original": self.original.model, "oracle": self.oracle.model,
                **({"twin": self.twin.model} if self.twin else {})}


def train_references(spec: SetupSpec, store: CheckpointCache,
                     progress: Progress | None = None) -> References:
    """Train (or load from the cache) the original and the oracle of a setup, and with an
    independent oracle the twin original that measures seed noise. `store` is only used
    as a checkpoint cache: a RunStore, or a `MemoryCache` where no store is."""
    progress = progress or Progress()
    user_data.restore(spec.data, store)  # a user's own data, kept in the store's cache
    exp = prepare(spec)
    twin_share = 1 / 3 if spec.oracle_init == "independent" else 0.0
    split = (1 - twin_share) / 2
    original = get_original(exp, store, progress.stage(0.0, split))
    oracle = get_oracle(exp, store, progress.stage(split, 2 * split))
    twin = get_twin(exp, store, progress.stage(2 * split, 1.0)) if twin_share else None
    return References(exp, original, oracle, twin)


class MemoryCache:
    """A checkpoint cache in memory, for processes that must not open the run store (Ray
    workers): seeded with the entries the store already has, it records what training
    adds, for whoever owns the store to `cache_put` there."""

    def __init__(self, entries: Mapping[str, CacheEntry] | None = None):
        self.entries: dict[str, CacheEntry] = dict(entries or {})
        self.added: list[str] = []

    def cache_has(self, key: str) -> bool:
        return key in self.entries

    def cache_get(self, key: str, on_damage=None) -> CacheEntry | None:
        """The entry, or None; entries in memory cannot be damaged, so `on_damage` (the
        store's note for a damaged file) is never called."""
        return self.entries.get(key)

    def cache_put(self, key: str, state_dict: Mapping[str, torch.Tensor], meta: dict) -> None:
        self.entries[key] = (dict(state_dict), meta)
        self.added.append(key)


def reference_roles(spec: SetupSpec) -> tuple[str, ...]:
    """The reference models a setup has: the original, the oracle and, with an independent
    oracle, the twin original."""
    return REFERENCE_ROLES + ((TWIN,) if spec.oracle_init == "independent" else ())


def reference_cache_keys(spec: SetupSpec) -> list[str]:
    """The cache keys a setup's references are loaded from without training anything: the
    original's and the oracle's (and the twin's with an independent oracle), and for a
    model on an encoder, the encoder's too."""
    setups = [spec, encoder_setup(spec)] if spec.model.name in ENCODER_MODELS else [spec]
    keys = [reference_key(s, role) for s in setups for role in reference_roles(s)]
    return list(dict.fromkeys(keys))


def train_reference_entries(spec: SetupSpec, known: Mapping[str, CacheEntry],
                            progress: Progress | None = None) -> MemoryCache:
    """`train_references` without a store: `known` holds what the store's cache has of
    `reference_cache_keys(spec)`; the returned cache holds those and every entry trained
    now (`added`), state dicts on the CPU."""
    cache = MemoryCache(known)
    train_references(spec, cache, progress)
    return cache


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


@dataclass
class RunOutput:
    """A finished run before it is stored: what `RunStore.finish` takes."""

    spec: RunSpec  # parameters resolved
    label: str
    report: dict
    weights: dict[str, torch.Tensor]
    arrays: dict[str, np.ndarray]


def resolve_run(spec: RunSpec, method: Method | None = None) -> tuple[Method, RunSpec]:
    """The method and the run spec with every parameter resolved (validated here, before
    anything trains). `method`: the method object itself where its name cannot load it (a
    function from a notebook, an imported checkpoint); else it is looked up by name. A
    user's method adds the hash of its source to the spec."""
    method = method or get_method(spec.method.name)
    params = method.resolve_params(spec.method.params)
    return method, RunSpec(spec.setup, MethodSpec(spec.method.name, params,
                                                  getattr(method, "source_hash", None)))


def run_label(method, setup: SetupSpec) -> str:
    return f"{method.title} · {setup.forget.describe()}"


def unlearn_only(resolved: RunSpec, refs: References, progress: Progress | None = None,
                 method: Method | None = None) -> tuple[Any, float]:
    """The method's outcome on a copy of the original, and the seconds it took; raises
    DivergedError for non-finite weights. Nothing is evaluated or stored."""
    method = method or get_method(resolved.method.name)
    ctx = UnlearnContext(model=copy.deepcopy(refs.original.model),
                         original=_frozen(copy.deepcopy(refs.original.model)),
                         experiment=refs.experiment, params=resolved.method.params,
                         progress=progress or Progress(), seed=resolved.setup.seed)
    started = time.perf_counter()
    # A method's draws from torch's global generator (EC's auxiliary heads, a user's
    # method) start from the setup's seed: the same run spec gives the same weights.
    with seeded(ctx.seed):
        outcome = method.unlearn(ctx)
    seconds = time.perf_counter() - started
    if not isinstance(outcome, Outcome) or not isinstance(outcome.model, torch.nn.Module):
        # Only a user's Method subclass can get this wrong; say so rather than fail later.
        raise UserError(f"method.name: {resolved.method.name}.unlearn returned "
                        f"{type(outcome).__name__}; expected an unlearn_core.methods.Outcome "
                        f"holding the unlearned model")
    _check_finite(outcome.model, method.title)
    if outcome.ran_elsewhere and outcome.stated_seconds is not None:
        seconds = outcome.stated_seconds
    return outcome, seconds


def compute_run(resolved: RunSpec, refs: References, progress: Progress | None = None,
                method: Method | None = None, parts_cache: PartsCache | None = None
                ) -> RunOutput:
    """Unlearn and evaluate one run on references already trained; needs no store
    (`parts_cache`, the run store where there is one, keeps the references' evaluation
    parts across processes). `progress` spans the whole run (the references took its
    first 0.4). The method (by name, or `method` as `resolve_run` took it) must have
    accepted the original (`method.accept`) before."""
    progress = progress or Progress()
    method = method or get_method(resolved.method.name)
    params = resolved.method.params
    exp = refs.experiment
    outcome, seconds = unlearn_only(resolved, refs, progress.stage(0.4, 0.8), method)
    eval_started = time.perf_counter()
    references = refs.models()
    report, eval_arrays = evaluate(
        {"unlearned": outcome.model, **references}, exp, seconds=seconds,
        oracle_seconds=refs.oracle.meta["seconds"],
        reference_keys={role: reference_key(resolved.setup, role) for role in references},
        parts_cache=parts_cache, progress=progress.stage(0.8, 1.0))
    report["cost"]["evaluate_seconds"] = time.perf_counter() - eval_started
    if outcome.ran_elsewhere:
        report["cost"]["ran_elsewhere"] = True
        if outcome.stated_seconds is None:
            report["cost"]["speedup"] = None
    report["method"] = {"name": method.name, "title": method.title, "params": params,
                        "info": outcome.info, "curves": outcome.curves}
    report["run_spec_hash"] = resolved.hash
    weights = {k: v.detach().cpu() for k, v in outcome.model.state_dict().items()}
    return RunOutput(resolved, run_label(method, resolved.setup), report, weights,
                     {**outcome.artifacts, **eval_arrays})


def run_unlearning(spec: RunSpec, store: RunStore, progress: Progress | None = None,
                   method: Method | None = None) -> str:
    """Run one method on a setup, evaluate it and store the run; returns the run id.
    `method`: the method object where its name cannot load it (see `resolve_run`).

    Hyperparameters are validated before any training starts. A failed or cancelled run
    is recorded as such and the error re-raised; nothing half-written is kept.
    """
    progress = progress or Progress()
    method, resolved = resolve_run(spec, method)
    user_data.restore(spec.setup.data, store)
    # Whether the method applies to this architecture, before the references train.
    method.accept(resolved.method.params, prepare(spec.setup).new_model())
    refs = train_references(spec.setup, store, progress.stage(0.0, 0.4))
    method.accept(resolved.method.params, refs.original.model)
    run_id = store.create("unlearn", resolved.to_dict(), label=run_label(method, spec.setup))
    try:
        output = compute_run(resolved, refs, progress, method, parts_cache=store)
        store.finish(run_id, output.report, weights=output.weights, arrays=output.arrays)
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


def import_run(setup: SetupSpec, weights: str | Path | Mapping[str, torch.Tensor],
               store: RunStore, progress: Progress | None = None, *,
               seconds: float | None = None, source: str | None = None) -> str:
    """Weights unlearned elsewhere as a run of `setup`, evaluated against its original and
    oracle (trained here if the store lacks them) like any method's; returns the run id.

    `weights`: a safetensors or weights-only torch file (never unpickled), or a state dict
    in memory. They are checked against the setup's architecture before anything trains
    or is recorded (a UserError naming the tensor). Their identity in the run spec is a
    hash of their tensors, so the same weights from either file type are the same run.
    `seconds`: the wall time the unlearning took where it ran, if known (else no speed-up
    is claimed). `source`: what to call weights given in memory (an uploaded file's name)."""
    if isinstance(weights, Mapping):
        state, source = dict(weights), source or "the given state dict"
    else:
        path = Path(weights).expanduser().resolve()
        state, source = load_state_dict(path), str(path)
    method = ImportedCheckpoint(state, source, state_dict_digest(state), seconds)
    return run_unlearning(RunSpec(setup, MethodSpec(method.name)), store, progress, method)


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
                progress: Progress | None = None, with_activations: bool = True) -> RebuiltRun:
    """The original and oracle from the checkpoint cache (trained again if the cache was
    cleared), the unlearned model from the run's weights, and (unless `with_activations`
    is False) their activations on the probe subset the run was evaluated on. `purpose`
    ends the error messages ("embed it")."""
    progress = progress or Progress()
    record = store.get(run_id)
    if record.status != "done" or "layers" not in (record.report or {}):
        raise UserError(f"run {run_id}: only a finished run with layer metrics can be "
                        f"rebuilt to {purpose}")
    spec = RunSpec.from_dict(record.spec)
    refs = train_references(spec.setup, store, progress.stage(0.0, 0.25))
    exp = refs.experiment
    subset = probe_subset(exp, seed=spec.setup.seed)
    if not np.array_equal(subset.index, store.load_arrays(run_id)[array_keys.PROBE_INDEX]):
        raise UserError(f"run {run_id} was evaluated on another probe subset than this "
                        f"version draws; run it again to {purpose}")
    models = {"original": refs.original.model, "unlearned": unlearned_model(store, run_id, exp),
              "oracle": refs.oracle.model}
    acts = {}
    for step, (role, model) in enumerate(models.items()):
        if not with_activations:
            break
        progress.update(0.25 + 0.25 * step, f"activations of the {role} model")
        key = (reference_cache_key(reference_key(spec.setup, role), model)
               if role != "unlearned" else None)
        acts[role] = activations(model, exp, subset, key)
    progress.update(1.0, "models rebuilt")
    return RebuiltRun(spec, exp, subset, models, acts)


EMBEDDING_METHODS = ("pca", "umap")


def stored_embedding(store: RunStore, run_id: str, arrays: Mapping[str, np.ndarray],
                     layer: str, method: str) -> dict[str, np.ndarray] | None:
    """The run's 2-d map of `layer` by `method` if it is stored (with the run's arrays, as
    evaluate() keeps the PCA of the layers views open on, or as a derived result "pca-<layer>"
    or "umap-<layer>"), else None; named array_keys.embedding(method, layer, role)."""
    if array_keys.embedding(method, layer, "original") in arrays:
        names = [array_keys.embedding(method, layer, role) for role in ROLES]
        names.append(array_keys.embedding_variance(method, layer))
        return {name: arrays[name] for name in names if name in arrays}
    return store.get_derived(run_id, f"{method}-{layer}")


def embedding_of_run(store: RunStore, run_id: str, layer: str, method: str = "pca",
                     progress: Progress | None = None,
                     arrays: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """One joint 2-d map ("pca" or "umap") of the original's, the unlearned model's and
    the oracle's activations at `layer` on the run's probe subset, the rows of its other
    arrays; the same fit evaluate() makes for the layers it maps (PCA) or a seeded UMAP.

    Computed once and kept with the run (derived result "<method>-<layer>"); returns
    {"eval/<method>/<layer>/<role>": (n, 2) coordinates} and, for PCA, the explained
    variance ratio. `arrays`: the run's arrays where the caller holds them (else read).
    """
    if method not in EMBEDDING_METHODS:
        raise UserError(f"method: expected one of {list(EMBEDDING_METHODS)}, got {method!r}")
    progress = progress or Progress()
    # Checked before rebuilding, which may have to train the references again.
    names = (store.get(run_id).report or {}).get("layers", {}).get("names")
    if names is not None and layer not in names:
        raise UserError(f"layer: expected one of {names}, got {layer!r}")
    stored = stored_embedding(store, run_id, store.load_arrays(run_id) if arrays is None
                              else arrays, layer, method)
    if stored is not None:
        return stored
    run = rebuild_run(store, run_id, "embed it", progress.stage(0.0, 0.4))
    features = {role: run.activations[role][layer] for role in ROLES}
    points = sum(len(f) for f in features.values())
    progress.update(0.4, f"fitting one {method.upper()} on {points:,} points")
    seed = run.spec.setup.seed
    if method == "pca":
        result = joint_pca_arrays(features, layer, seed)
    else:
        coords = joint_umap(features, seed=seed)
        result = {array_keys.embedding(method, layer, role): coords[role].astype(np.float32)
                  for role in features}
    progress.check()
    store.put_derived(run_id, f"{method}-{layer}", result)
    progress.update(1.0, f"{method.upper()} ready")
    return result


RELEARN_DERIVED = "relearn"
READOUTS_DERIVED = "readouts"


def _json_derived(store: RunStore, run_id: str, name: str) -> dict | None:
    stored = store.get_derived(run_id, name)
    return None if stored is None else json.loads(str(stored["report_json"]))


def stored_relearn(store: RunStore, run_id: str) -> dict | None:
    """The run's relearning test if it was computed (`relearn_of_run`), else None."""
    return _json_derived(store, run_id, RELEARN_DERIVED)


def stored_readouts(store: RunStore, run_id: str) -> dict | None:
    """The run's feature readouts if they were computed (`readouts_of_run`), else None."""
    return _json_derived(store, run_id, READOUTS_DERIVED)


def relearn_of_run(store: RunStore, run_id: str, progress: Progress | None = None) -> dict:
    """The relearning test (metrics/relearn.py, default k, steps and learning rate, the
    setup's seed) on the run's unlearned model, its oracle and its original; kept with
    the run (derived result "relearn"), so it is computed once. The stored models are
    never changed: each is fine-tuned as a copy."""
    progress = progress or Progress()
    stored = stored_relearn(store, run_id)
    if stored is not None:
        return stored
    run = rebuild_run(store, run_id, "test relearning", progress.stage(0.0, 0.4),
                      with_activations=False)  # relearning needs the models only
    progress.update(0.4, "relearning the unlearned model, the oracle and the original")
    forget = run.spec.setup.forget
    if forget.kind == "poison" and forget.poison.attack == "backdoor":
        # Relearning a backdoor from k poisoned examples: the attack success rate is what
        # comes back, there are no held-out forget examples to score.
        scorer = {"score": attack_success_scorer(run.experiment, run.spec.setup.seed),
                  "score_name": "attack success rate"}
    else:
        scorer = {}
    report = relearn_report(run.models, run.experiment, seed=run.spec.setup.seed, **scorer)
    progress.check()
    for curve in report["curves"].values():
        curve.pop("forget_indices", None)
    report["sentence"] = relearn_sentence(report)
    store.put_derived(run_id, RELEARN_DERIVED, {"report_json": np.array(json.dumps(report))})
    progress.update(1.0, "relearning test ready")
    return report


def readouts_of_run(store: RunStore, run_id: str, progress: Progress | None = None) -> dict:
    """Every feature readout (metrics/readouts.py) of the run's three models at each
    feature layer, on the run's probe subset: {"layers", "roles": {role:
    model_readouts(...)}}; kept with the run (derived result "readouts")."""
    progress = progress or Progress()
    stored = stored_readouts(store, run_id)
    if stored is not None:
        return stored
    run = rebuild_run(store, run_id, "read its layers out", progress.stage(0.0, 0.5))
    layers = list(run.models["unlearned"].feature_layers)
    roles = {}
    for step, role in enumerate(ROLES):
        progress.update(0.5 + 0.15 * step, f"readouts of the {role} model")
        roles[role] = model_readouts(run.activations[role], run.subset, layers,
                                     seed=run.spec.setup.seed)
    result = {"layers": layers, "roles": roles}
    store.put_derived(run_id, READOUTS_DERIVED, {"report_json": np.array(json.dumps(result))})
    progress.update(1.0, "readouts ready")
    return result
