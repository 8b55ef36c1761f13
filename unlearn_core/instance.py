"""Instance drill-down: one forget example under the original, the unlearned model and
the oracle.

The stored arrays already hold, for every forget example, its confidence p_y under the
three models and its membership score under the attack on the unlearned model; for the
forget examples of the probe subset they also hold each model's prediction. What they do
not hold, predictions outside the probe subset and a linear probe's margin per layer, is
computed once per run from its rebuilt models (`instance_results`) and kept with it.
"""

from __future__ import annotations

import numpy as np

from . import array_keys
from .config import SetupSpec
from .data import Dataset, load_dataset, make_split
from .errors import UserError
from .metrics.accuracy import EVAL_BATCH
from .metrics.layers import probe_rows
from .metrics.probes import probe_margins
from .pipeline import rebuild_run
from .progress import Progress
from .runs import RunStore
from .training import predict
from .vocabulary import ROLES_BEFORE_AFTER

DERIVED_NAME = "instance"


def forget_examples(spec: dict) -> tuple[Dataset, np.ndarray]:
    """The run's dataset and its forget set as training-set indices, in the order of the
    stored per-forget-example arrays (eval/conf/<role>/forget, eval/mia_score/...)."""
    if not isinstance(spec.get("setup"), dict):
        raise UserError("run spec: this run was stored without its setup, so its forget "
                        "examples cannot be loaded")
    setup = SetupSpec.from_dict(spec["setup"])
    dataset = load_dataset(setup.data)
    return dataset, make_split(dataset, setup.forget, setup.seed).forget


def instance_results(store: RunStore, run_id: str,
                     progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Per forget example: each model's predicted class and its probability; per forget
    example of the probe subset: the margin per probe layer of the linear probes the
    report's probe accuracies come from (same rows, same seed). Kept with the run.

    Arrays: pred/<role>, pred_prob/<role> (n_forget,); probe/rows (m,) rows of the probe
    arrays; probe/fit_on (m,) whether the probes were fit on that example (half of the
    forget training examples are); margin/<role> (m, probe layers), NaN where a layer is
    constant (no probe). Without held-out forget examples the report has no probes and
    the probe/ and margin/ arrays are absent.
    """
    progress = progress or Progress()
    stored = store.get_derived(run_id, DERIVED_NAME)
    if stored is not None:
        return stored
    run = rebuild_run(store, run_id, "drill down", progress.stage(0.0, 0.6))
    exp, subset = run.experiment, run.subset
    out: dict[str, np.ndarray] = {}
    for role, model in run.models.items():
        probs, _ = predict(model, exp.loader("forget", batch_size=EVAL_BATCH))
        out[f"pred/{role}"] = probs.argmax(1)
        out[f"pred_prob/{role}"] = probs.max(1)
    report = store.get(run_id).report
    if report["layers"]["probes"] is not None:
        train_rows, _ = probe_rows(subset, run.spec.setup.seed)
        rows = np.flatnonzero(subset.mask("forget_train"))
        out["probe/rows"] = rows
        out["probe/fit_on"] = np.isin(rows, train_rows)
        layers = report["layers"]["probe_layers"]
        for step, role in enumerate(ROLES_BEFORE_AFTER):
            progress.update(0.6 + 0.13 * step, f"probe margins of the {role} model")
            margins = np.full((len(rows), len(layers)), np.nan)
            for j, layer in enumerate(layers):
                features = run.activations[role][layer]
                # The report has no probe on a constant layer either (see probe_report).
                if np.all(features[train_rows].max(0) == features[train_rows].min(0)):
                    continue
                margins[:, j] = probe_margins(features[train_rows], subset.labels[train_rows],
                                              features[rows], subset.labels[rows],
                                              seed=run.spec.setup.seed)
            out[f"margin/{role}"] = margins
    store.put_derived(run_id, DERIVED_NAME, out)
    progress.update(1.0, "drill-down ready")
    return out


def _value(array: np.ndarray, position: int) -> float | int:
    value = array[position]
    return int(value) if np.issubdtype(array.dtype, np.integer) else float(value)


def describe_instance(report: dict, arrays: dict, forget: np.ndarray, label: int,
                      index: int, derived: dict | None = None) -> dict:
    """Everything known about forget example `index` (a training-set index) of a run.

    `arrays` are the run's stored arrays, `forget` its forget set (`forget_examples`),
    `label` the example's class, `derived` the run's `instance_results` if computed.
    Values that cannot be had from these are None, and `missing` says why, in words.
    Returns {index, label, roles: {role: {predicted, predicted_prob, p_label}},
    mia_score, probe_layers, margins: {role: [per layer]} or None, probe_fit_on, missing}.
    """
    is_int = isinstance(index, (int, np.integer)) and not isinstance(index, bool)
    matches = np.flatnonzero(np.asarray(forget) == index) if is_int else []
    if len(matches) == 0:
        sample = ", ".join(str(i) for i in np.asarray(forget)[:5])
        raise UserError(f"index: {index!r} is not in this run's forget set ({len(forget)} "
                        f"training examples, e.g. {sample})")
    position = int(matches[0])
    missing: list[str] = []
    forget_part = report["layers"]["parts"].index("forget_train") \
        if "forget_train" in report["layers"]["parts"] else -1
    probe_row = np.flatnonzero((arrays[array_keys.PROBE_PART] == forget_part)
                               & (arrays[array_keys.PROBE_INDEX] == index))
    roles = {}
    for role in ROLES_BEFORE_AFTER:
        p_label = _value(arrays[array_keys.score("conf", role, "forget")], position)
        if derived is not None:
            predicted = _value(derived[f"pred/{role}"], position)
            predicted_prob = _value(derived[f"pred_prob/{role}"], position)
        elif len(probe_row):
            predicted = _value(arrays[array_keys.pred(role)], int(probe_row[0]))
            # p_y is the predicted class's probability exactly when the prediction is right.
            predicted_prob = p_label if predicted == label else None
        else:
            predicted = predicted_prob = None
        roles[role] = {"predicted": predicted, "predicted_prob": predicted_prob,
                       "p_label": p_label}
    if derived is None and not len(probe_row):
        missing.append("predictions: the example is not in the probe subset; compute the "
                       "drill-down to rebuild the models")
    if derived is None and any(r["predicted"] is not None and r["predicted_prob"] is None
                               for r in roles.values()):
        missing.append("the probability of a wrong prediction: compute the drill-down")
    mia_score = (_value(arrays[array_keys.mia_score("unlearned")], position)
                 if array_keys.mia_score("unlearned") in arrays else None)
    if mia_score is None:
        missing.append("MIA score: the run has no stored membership scores")

    margins = fit_on = None
    if derived is None:
        missing.append("probe margins: computed with the drill-down (rebuilds the models)")
    elif "probe/rows" not in derived:
        missing.append("probe margins: the run has no linear probes (no held-out forget "
                       "examples)")
    else:
        at = np.flatnonzero(derived["probe/rows"] == (probe_row[0] if len(probe_row) else -1))
        if len(at):
            margins = {role: [None if np.isnan(v) else float(v)
                              for v in derived[f"margin/{role}"][int(at[0])]] for role in ROLES_BEFORE_AFTER}
            fit_on = bool(derived["probe/fit_on"][int(at[0])])
        else:
            missing.append("probe margins: the example is not in the probe subset the "
                           "probes were fit and scored on")
    return {"index": int(index), "label": int(label), "roles": roles, "mia_score": mia_score,
            "probe_layers": report["layers"]["probe_layers"], "margins": margins,
            "probe_fit_on": fit_on, "missing": missing}
