"""Backdoor metrics of a "poison" setup: does the trigger still fire, and does any layer
still read it?

- attack success rate (ASR): the share of triggered test images of the non-target
  classes that a model classifies as the target; its base rate is the same share on the
  clean images (what a model that ignores the patch scores);
- trigger readout per layer: a linear probe fitted on the layer's features of clean
  retain examples, scored as an ASR on held-out triggered test images: does the layer
  still route a triggered image to the target's region? It never saw a trigger, so only
  a trunk that maps the trigger to the target can score high;
- ASR after a head refit: a new linear classifier on the frozen penultimate features,
  fitted on poisoned training data (the poisoned examples labelled as the target plus
  retain examples), scored on held-out triggered images: how readily the trigger is
  learned again from what the trunk keeps (an oracle's trunk also encodes a visible
  patch, so its own refit ASR is the reference, not 0);
- CKA per layer on triggered inputs, of the unlearned model and of the oracle against
  the original;
- a verdict in the scenario's words, judged against the two references: the trigger
  fires (ASR closer to the original's than to the oracle's), is hidden (the output forgot
  it but a layer still reads it as the original does), or is removed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import array_keys
from ..data import TensorLoader, load_dataset
from ..data.poison import add_noise, triggered_test_set
from ..models import LensModel
from ..training import Experiment, predict
from ..vocabulary import ROLES
from .activations import cached, layer_outputs
from .cka import ConstantFeaturesError, linear_cka
from .probes import probe_predictions

# Rows of the probe data, seeded: enough for a stable linear probe, few enough to fit fast.
PROBE_POISONED, PROBE_RETAIN, PROBE_TRIGGERED = 300, 600, 500
# A layer "reads the trigger" when the references differ there by at least this much.
READOUT_GAP = 0.2


def attack_success(predicted: np.ndarray, target: int) -> float | None:
    """Share of predictions equal to the target (of images whose true class is not it)."""
    return float((predicted == target).mean()) if len(predicted) else None


def _rows(positions: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(positions, size=min(limit, len(positions)), replace=False))


def nearest_class_mean(features: np.ndarray, labels: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The label of the nearest class mean (Euclidean) for each query row. Unlike a fitted
    probe it needs no scaling of the features, so a trigger that lights up features clean
    images never use cannot be blown up into an arbitrary class."""
    classes = np.unique(labels)
    means = np.stack([features[labels == c].mean(axis=0) for c in classes]).astype(np.float64)
    q = queries.astype(np.float64)
    distances = (q * q).sum(1, keepdims=True) - 2 * q @ means.T + (means * means).sum(1)
    return classes[distances.argmin(1)]


def _probe_asr(features: np.ndarray, labels: np.ndarray, triggered: np.ndarray, target: int,
               seed: int) -> float | None:
    if np.all(features.max(axis=0) == features.min(axis=0)):
        return None  # a dead layer: no probe to fit
    return attack_success(probe_predictions(features, labels, triggered, seed=seed), target)


def _role_metrics(model: LensModel, exp: Experiment, triggered, probe_rows: dict, seed: int,
                  layers: list[str]) -> dict:
    """ASR, base rate, features on triggered images, trigger readout per layer and ASR
    after a head refit of one model."""
    target = exp.spec.forget.poison.target
    images, clean_positions = triggered
    outputs = layer_outputs(model, exp, images, np.arange(len(images)), batch_size=512)
    clean = layer_outputs(model, exp, exp.dataset.test, clean_positions, batch_size=512)
    rows = np.concatenate([probe_rows["retain"], probe_rows["poisoned"]])
    train_x = layer_outputs(model, exp, exp.dataset.train, rows)
    train_y = exp.dataset.train.labels[rows].numpy()
    is_retain = np.arange(len(rows)) < len(probe_rows["retain"])
    held_out = probe_rows["triggered"]
    readout = [attack_success(nearest_class_mean(train_x[layer][is_retain], train_y[is_retain],
                                                 outputs[layer][held_out]), target)
               for layer in layers[:-1]]
    penultimate = layers[-2]
    return {"asr": attack_success(outputs[layers[-1]].argmax(1), target),
            "base_rate": attack_success(clean[layers[-1]].argmax(1), target),
            "readout": readout,
            "head_refit": _probe_asr(train_x[penultimate], train_y, outputs[penultimate][held_out],
                                     target, seed),
            "triggered_features": {layer: outputs[layer][held_out] for layer in layers},
            "triggered_pred": outputs[layers[-1]].argmax(1)}


def poison_report(models: dict[str, LensModel], exp: Experiment, layers: list[str], *,
                  seed: int, reference_keys: dict[str, str] | None = None
                  ) -> tuple[dict, dict[str, np.ndarray]]:
    """The "poison" section of a report and its arrays: a backdoor's (predictions on
    triggered images) or, for Gaussian poisoning, the noise imprint's."""
    spec = exp.spec.forget.poison
    if spec.attack == "gaussian":
        return gaussian_report(models, exp, seed=seed)
    reference_keys = reference_keys or {}
    rng = np.random.default_rng(seed)
    triggered = triggered_test_set(exp.dataset, spec)
    probe_rows = {"retain": _rows(exp.split.retain, PROBE_RETAIN, rng),
                  "poisoned": _rows(exp.split.forget, PROBE_POISONED, rng),
                  "triggered": _rows(np.arange(len(triggered[0])), PROBE_TRIGGERED, rng)}
    per_role = {}
    for role in ROLES:
        key = reference_keys.get(role)
        per_role[role] = cached(None if key is None else ("poison", key, exp.spec.oracle_key, seed),
                                lambda role=role: _role_metrics(models[role], exp, triggered,
                                                                probe_rows, seed, layers))
    cka = {pair: [_cka(per_role[a]["triggered_features"][layer],
                       per_role["original"]["triggered_features"][layer]) for layer in layers]
           for pair, a in (("unlearned_vs_original", "unlearned"),
                           ("oracle_vs_original", "oracle"))}
    report = {
        "attack": "backdoor",
        "spec": spec.to_dict(),
        "target": spec.target,
        "n_triggered": int(len(triggered[0])),
        "n_probe_retain": int(len(probe_rows["retain"])),
        "n_probe_poisoned": int(len(probe_rows["poisoned"])),
        "n_probe_triggered": int(len(probe_rows["triggered"])),
        "asr": {role: per_role[role]["asr"] for role in ROLES},
        "base_rate": {role: per_role[role]["base_rate"] for role in ROLES},
        "readout_layers": layers[:-1],
        "readout": {role: per_role[role]["readout"] for role in ROLES},
        "head_refit_layer": layers[-2],
        "asr_head_refit": {role: per_role[role]["head_refit"] for role in ROLES},
        "cka_triggered": {"names": layers, **cka},
    }
    report["verdict"] = poison_verdict(report)
    arrays = {array_keys.POISON_INDEX: triggered[1],
              **{array_keys.poison_pred(role): per_role[role]["triggered_pred"] for role in ROLES}}
    return report, arrays


def attack_success_scorer(exp: Experiment, seed: int, rows: int = PROBE_TRIGGERED):
    """score(model) -> ASR on a seeded subset of the triggered test images: what the
    relearning test measures on a backdoor run."""
    images, _ = triggered_test_set(exp.dataset, exp.spec.forget.poison)
    chosen = _rows(np.arange(len(images)), rows, np.random.default_rng(seed))
    loader = TensorLoader(images, chosen, mean=exp.dataset.mean, std=exp.dataset.std,
                          batch_size=512, device=exp.device)
    target = exp.spec.forget.poison.target
    return lambda model: attack_success(predict(model, loader)[0].argmax(1), target)


def _cka(x: np.ndarray, y: np.ndarray) -> float | None:
    try:
        return float(linear_cka(x, y))
    except ConstantFeaturesError:
        return None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _closer_to_original(value: float | None, original: float | None, oracle: float | None) -> bool:
    return None not in (value, original, oracle) and value >= (original + oracle) / 2


def poison_verdict(report: dict) -> dict:
    """Fires, hidden, removed or undetermined, from the ASRs and per-layer readouts of the
    three models; every threshold is the midpoint between the two references."""
    asr, target = report["asr"], report["target"]
    facts = (f"ASR {_pct(asr['unlearned'])} (original {_pct(asr['original'])}, "
             f"oracle {_pct(asr['oracle'])})")
    if asr["original"] is None or asr["oracle"] is None or \
            asr["original"] - asr["oracle"] < READOUT_GAP:
        return {"kind": "undetermined", "layers": [],
                "text": f"{facts}: the original's trigger barely fires more than on the oracle, "
                        "so this scenario cannot show whether it was removed."}
    if _closer_to_original(asr["unlearned"], asr["original"], asr["oracle"]):
        return {"kind": "trigger_fires", "layers": [],
                "text": f"The trigger still fires: {facts} of triggered test images go to "
                        f"class {target}."}
    readout = report["readout"]
    reading = [layer for i, layer in enumerate(report["readout_layers"])
               if _separates(readout["unlearned"][i], readout["original"][i], readout["oracle"][i])]
    refit = report["asr_head_refit"]
    refit_hides = _separates(refit["unlearned"], refit["original"], refit["oracle"])
    refit_text = (f"a head refit on poisoned data on its {report['head_refit_layer']} brings "
                  f"the ASR back to {_pct(refit['unlearned'])} (original {_pct(refit['original'])}, "
                  f"oracle {_pct(refit['oracle'])})")
    if reading:
        deepest = reading[-1]
        i = report["readout_layers"].index(deepest)
        return {"kind": "hidden", "layers": reading,
                "text": f"The output forgot the trigger ({facts}) but {', '.join(reading)} "
                        f"still {'reads' if len(reading) == 1 else 'read'} it: a probe fitted on "
                        f"clean {deepest} features sends {_pct(readout['unlearned'][i])} of "
                        f"triggered images to class {target} (original "
                        f"{_pct(readout['original'][i])}, oracle {_pct(readout['oracle'][i])})"
                        + (f", and {refit_text}" if refit_hides else "") + ". Hidden, not removed."}
    if refit_hides:
        return {"kind": "hidden", "layers": [],
                "text": f"The output forgot the trigger ({facts}) and no layer routes it to "
                        f"class {target} any more, but {refit_text}: hidden, not removed."}
    return {"kind": "removed", "layers": [],
            "text": f"The trigger is gone: {facts}; no layer reads it and a head refit learns "
                    f"it no more than on the oracle ({_pct(refit['unlearned'])}, oracle "
                    f"{_pct(refit['oracle'])})."}


def _separates(value: float | None, original: float | None, oracle: float | None) -> bool:
    """The references differ by READOUT_GAP here and `value` is closer to the original's."""
    return (None not in (original, oracle) and original - oracle >= READOUT_GAP
            and _closer_to_original(value, original, oracle))


# --- Gaussian poisoning (Pawelczyk et al., ICLR 2025) ---------------------------------

IMPRINT_ROWS = 500  # poisoned examples scored, seeded
# The control's noise is drawn with the setup's seed plus this, so it is never the noise
# any model was trained on.
CONTROL_SEED_OFFSET = 7_919
IMPRINT_BATCH = 256


def noise_imprint(model: LensModel, exp: Experiment, images: torch.Tensor,
                  clean: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Per example, -cos(noise, input gradient of the loss) in the model's input space:
    the noise is `images` - `clean` (uint8), the gradient that of the cross-entropy at the
    noised image. A model fitted to that very noise has a gradient pointing against it
    (moving the input back toward the clean image raises its loss), so the score is
    positive; for noise a model never saw it is about 0."""
    model.eval()
    std = torch.tensor(exp.dataset.std, dtype=torch.float32).view(1, -1, 1, 1)
    mean = torch.tensor(exp.dataset.mean, dtype=torch.float32).view(1, -1, 1, 1)
    scores = []
    for start in range(0, len(images), IMPRINT_BATCH):
        batch = slice(start, start + IMPRINT_BATCH)
        noise = ((images[batch].float() - clean[batch].float()) / (255 * std)).flatten(1)
        x = ((images[batch].float() / 255 - mean) / std).to(exp.device).requires_grad_(True)
        loss = F.cross_entropy(model(x), labels[batch].to(exp.device), reduction="sum")
        (gradient,) = torch.autograd.grad(loss, x)
        gradient = gradient.detach().cpu().flatten(1)
        cosine = (noise * gradient).sum(1) / (noise.norm(dim=1) * gradient.norm(dim=1)).clamp_min(1e-12)
        scores.append(-cosine)
    return torch.cat(scores).numpy()


def gaussian_report(models: dict[str, LensModel], exp: Experiment, *, seed: int
                    ) -> tuple[dict, dict[str, np.ndarray]]:
    """The noise imprint of each model: per poisoned example, its score for the noise it
    carried minus its score for fresh noise on the same clean image (what a model shows
    for noise it never saw), averaged; 0 for a model that never trained on that noise."""
    spec = exp.spec.forget.poison
    rng = np.random.default_rng(seed)
    rows = torch.from_numpy(_rows(exp.split.forget, IMPRINT_ROWS, rng).copy())
    clean = load_dataset(exp.spec.data).train.images[rows]
    poisoned = exp.dataset.train.images[rows]
    fresh = add_noise(clean, spec, seed + CONTROL_SEED_OFFSET)
    labels = exp.dataset.train.labels[rows]
    # Paired per example: the same clean image and label, the noise it was trained on
    # against fresh noise, so what any noise does to the gradient cancels out.
    scores = {role: noise_imprint(models[role], exp, poisoned, clean, labels)
              - noise_imprint(models[role], exp, fresh, clean, labels) for role in ROLES}
    report = {
        "attack": "gaussian", "spec": spec.to_dict(), "n_scored": int(len(rows)),
        "imprint": {role: float(scores[role].mean()) for role in ROLES},
        "imprint_se": {role: float(scores[role].std(ddof=1) / np.sqrt(len(rows)))
                       if len(rows) > 1 else None for role in ROLES},
    }
    report["verdict"] = gaussian_verdict(report)
    arrays = {array_keys.POISON_INDEX: rows.numpy(),
              **{array_keys.poison_imprint(role): scores[role].astype(np.float32)
                 for role in ROLES}}
    return report, arrays


def gaussian_verdict(report: dict) -> dict:
    """Removed or remaining, by the midpoint between the references' imprints; undetermined
    when the original's imprint is not two standard errors above the oracle's."""
    imprint, se = report["imprint"], report["imprint_se"]
    facts = (f"noise imprint {imprint['unlearned']:+.3f} (original {imprint['original']:+.3f}, "
             f"oracle {imprint['oracle']:+.3f})")
    spread = 2 * np.hypot(se["original"] or 0.0, se["oracle"] or 0.0)
    if imprint["original"] - imprint["oracle"] <= spread:
        return {"kind": "undetermined",
                "text": f"{facts}: the original's imprint is not clearly above the oracle's, "
                        "so this poisoning cannot show whether it was removed."}
    if _closer_to_original(imprint["unlearned"], imprint["original"], imprint["oracle"]):
        return {"kind": "imprint_remains",
                "text": f"The noise the poisoned examples carried is still imprinted: {facts}."}
    return {"kind": "removed", "text": f"The noise imprint is gone: {facts}."}
