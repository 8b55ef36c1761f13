"""The relearning test: how fast does forgotten knowledge come back?

A few SGD steps of fine-tuning on `k` forget-train examples, applied to a deep copy of a
model; after every step (and before the first) a score is measured on HELD-OUT forget
examples: the forget accuracy by default, or any `score(model) -> float` the caller
gives (e.g. the attack success rate of a backdoor). Knowledge that comes back to the
unlearned model much faster than it comes to the retrain oracle (the same steps from
the same seed) was hidden, not removed.

Choices, each for a stated reason:

* Every step is one full batch of the same `k` forget examples plus `k` retain examples
  drawn afresh for that step (seeded). Forget examples alone would teach "everything is
  the forget class" (class forgetting has a single label there), and any model,
  the oracle included, would "relearn" in a couple of steps by collapsing onto it;
  mixed with retain data the step must learn the class, not a constant answer.
* Plain SGD with momentum 0.9 at a constant learning rate (no schedule, no weight
  decay): a few steps are too few for a schedule to mean anything.
* The model stays in eval mode while it is fine-tuned, so BatchNorm statistics are not
  re-estimated from batches of 2k examples and dropout is off: the test measures how
  fast the weights bring the class back, and is deterministic for a seed.
* Held-out forget examples are the forget part of the test set (test_forget); when
  there is none (random forgetting), the forget-train examples not used for the
  fine-tuning.

Pure functions, no Streamlit; `relearn_report` runs the test on several models (the
unlearned one, the oracle, optionally the original) with the same examples and steps.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ..data import TensorLoader
from ..errors import UserError
from ..training import Experiment, sgd
from ..vocabulary import ROLES

DEFAULT_K, DEFAULT_STEPS, DEFAULT_LR = 32, 10, 0.01
MAX_K, MAX_STEPS = 4096, 1000
# Without an original to compare with, "relearned" means reaching this score.
DEFAULT_TARGET = 0.5
_EVAL_BATCH = 512

Score = Callable[[torch.nn.Module], float]


def check_relearn_params(k, steps, lr) -> tuple[int, int, float]:
    """(k, steps, lr) checked, or a UserError naming the parameter."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
        raise UserError(f"relearn.k: expected an integer from 1 to {MAX_K} (forget examples "
                        f"to fine-tune on), got {k!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) \
            or not 1 <= steps <= MAX_STEPS:
        raise UserError(f"relearn.steps: expected an integer from 1 to {MAX_STEPS}, got "
                        f"{steps!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating)) \
            or not math.isfinite(float(lr)) or not 0 < float(lr) <= 10:
        raise UserError(f"relearn.lr: expected a learning rate in (0, 10], got {lr!r}")
    return int(k), int(steps), float(lr)


def _loader(exp: Experiment, set_name: str, indices: np.ndarray) -> TensorLoader:
    images = getattr(exp.dataset, set_name)
    return TensorLoader(images, indices, mean=exp.dataset.mean, std=exp.dataset.std,
                        batch_size=_EVAL_BATCH, device=exp.device)


def _batch(exp: Experiment, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of training-set examples at `indices`, in that order."""
    loader = TensorLoader(exp.dataset.train, indices, mean=exp.dataset.mean,
                          std=exp.dataset.std, batch_size=max(1, len(indices)),
                          device=exp.device)
    return next(iter(loader))


def relearn_examples(exp: Experiment, k: int, seed: int) -> dict:
    """The forget examples fine-tuned on and the held-out examples scored, for a seed:
    {"forget": (k,) train indices, "held_out_set": "test" or "train", "held_out": indices}.
    The same for every model given the same experiment, k and seed."""
    forget = np.asarray(exp.split.forget)
    if len(forget) == 0:
        raise UserError("relearn: the forget set is empty; nothing to relearn")
    if k > len(forget):
        raise UserError(f"relearn.k: the forget set has {len(forget)} examples, fewer than "
                        f"k={k}")
    if len(exp.split.retain) == 0:
        raise UserError("relearn: the retain set is empty; the fine-tuning mixes in retain "
                        "examples")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(forget, size=k, replace=False))
    if len(exp.split.test_forget):
        return {"forget": chosen, "held_out_set": "test",
                "held_out": np.asarray(exp.split.test_forget)}
    rest = np.setdiff1d(forget, chosen)
    if len(rest) == 0:
        raise UserError(f"relearn.k: k={k} uses every forget example and the test set has "
                        "no forget examples: nothing is left to score on; lower k")
    return {"forget": chosen, "held_out_set": "train", "held_out": rest}


@torch.no_grad()
def _accuracy(model: torch.nn.Module, loader: TensorLoader) -> float:
    model.eval()
    correct = total = 0
    for x, y in loader:
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return correct / max(total, 1)


def relearn_curve(model: torch.nn.Module, exp: Experiment, *, k: int = DEFAULT_K,
                  steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR, seed: int = 0,
                  score: Score | None = None, score_name: str = "caller's score") -> dict:
    """Fine-tune a deep copy of `model` for `steps` SGD steps on `k` forget-train
    examples (each step mixed with `k` fresh retain examples, see the module docstring)
    and return the score before and after each step:

    {"scores": [step 0, ..., step `steps`], "score_name", "k", "steps", "lr", "seed",
     "n_scored": held-out examples (None for a caller's score), "forget_indices"}.

    `model` itself is never changed (nor its mode or requires_grad flags)."""
    k, steps, lr = check_relearn_params(k, steps, lr)
    examples = relearn_examples(exp, k, seed)
    tuned = copy.deepcopy(model).to(exp.device)
    tuned.eval()
    for p in tuned.parameters():
        p.requires_grad_(True)
    if score is None:
        held_out = _loader(exp, examples["held_out_set"], examples["held_out"])

        def measure(m):
            return _accuracy(m, held_out)
        score_name, n_scored = "forget accuracy (held-out)", len(examples["held_out"])
    else:
        def measure(m):
            m.eval()
            with torch.no_grad():
                return float(score(m))
        n_scored = None
    rng = np.random.default_rng([seed, 1])
    retain = np.asarray(exp.split.retain)
    optimizer = sgd(tuned.parameters(), lr=lr, momentum=0.9)
    x_forget, y_forget = _batch(exp, examples["forget"])
    scores = [measure(tuned)]
    for _ in range(steps):
        drawn = rng.choice(retain, size=min(k, len(retain)), replace=False)
        x_retain, y_retain = _batch(exp, drawn)
        tuned.eval()
        loss = F.cross_entropy(tuned(torch.cat([x_forget, x_retain])),
                               torch.cat([y_forget, y_retain]))
        if not torch.isfinite(loss):
            raise UserError(f"relearn.lr: the loss became {loss.item()} at lr {lr:g}; "
                            "lower it")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scores.append(measure(tuned))
    return {"scores": [float(s) for s in scores], "score_name": score_name, "k": k,
            "steps": steps, "lr": lr, "seed": int(seed), "n_scored": n_scored,
            "forget_indices": examples["forget"].tolist()}


def steps_to_reach(scores: list[float], target: float) -> int | None:
    """The first step whose score is at least `target` (0: already before any step),
    None when no step reaches it."""
    return next((step for step, value in enumerate(scores) if value >= target), None)


def relearn_report(models: Mapping[str, torch.nn.Module], exp: Experiment, *,
                   k: int = DEFAULT_K, steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR,
                   seed: int = 0, score: Score | None = None,
                   score_name: str = "caller's score", target: float | None = None) -> dict:
    """The relearning test on "unlearned" and "oracle" (required) and "original"
    (optional), same examples, steps and seed for each:

    {"curves": {role: relearn_curve(...)}, "target": the level that counts as relearned,
     "target_from": how it was chosen, "steps_to_target": {role: int or None},
     "faster_by": oracle's steps - unlearned's steps (a never-reaching model counts as
     steps + 1; None when neither reaches the target), "params": {k, steps, lr, seed}}.

    `target` defaults to the original's score before any step, capped at 50% (a score
    of 50% is already "back"), or 50% without an original."""
    k, steps, lr = check_relearn_params(k, steps, lr)
    missing = [role for role in ("unlearned", "oracle") if role not in models]
    unknown = [role for role in models if role not in ROLES]
    if missing or unknown:
        raise ValueError(f"models: expected roles unlearned, oracle and optionally original; "
                         f"missing {missing}, unknown {unknown}")
    curves = {role: relearn_curve(models[role], exp, k=k, steps=steps, lr=lr, seed=seed,
                                  score=score, score_name=score_name)
              for role in ROLES if role in models}
    if target is not None:
        target_from = "given"
    elif "original" in curves:
        target = min(curves["original"]["scores"][0], DEFAULT_TARGET)
        target_from = ("the original's score" if target < DEFAULT_TARGET
                       else "50% (the original starts above it)")
    else:
        target, target_from = DEFAULT_TARGET, "50% (no original given)"
    reached = {role: steps_to_reach(curve["scores"], target) for role, curve in curves.items()}
    u, o = reached["unlearned"], reached["oracle"]
    faster_by = None if u is None and o is None else \
        (steps + 1 if o is None else o) - (steps + 1 if u is None else u)
    return {"curves": curves, "target": float(target), "target_from": target_from,
            "steps_to_target": reached, "faster_by": faster_by,
            "params": {"k": k, "steps": steps, "lr": lr, "seed": int(seed)}}


def relearn_sentence(report: dict) -> str:
    """One sentence reading a `relearn_report`."""
    steps = report["params"]["steps"]
    target = f"{report['target']:.0%}"
    reached = report["steps_to_target"]

    def when(role):
        n = reached.get(role)
        return f"not within {steps} steps" if n is None else \
            ("from the start" if n == 0 else f"after {n} step{'s' if n != 1 else ''}")

    name = next(iter(report.get("curves", {}).values()), {}).get("score_name",
                                                                 "held-out forget score")
    facts = (f"{name[0].upper()}{name[1:]} back at {target}: unlearned model {when('unlearned')}, "
             f"oracle {when('oracle')}")
    faster = report["faster_by"]
    if faster is None:
        return f"{facts}: neither relearns it within {steps} steps."
    if faster > 0:
        bound = " at least" if reached["oracle"] is None else ""
        return (f"{facts}: it comes back{bound} {faster} step{'s' if faster != 1 else ''} "
                "faster than to the oracle: hidden, not removed.")
    slower = "" if faster == 0 else " (it comes back more slowly)"
    return f"{facts}: it comes back no faster than to the oracle{slower}."
