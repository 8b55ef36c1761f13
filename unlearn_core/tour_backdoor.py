"""The Tour's seventh chapter, "The backdoor that survives": the poison scenario on the
embedded default, told from stored runs like the first six steps.

The original is trained on mnist5k with the default backdoor (PoisonSpec); each method
of the chapter then unlearns the poisoned examples. The chapter reads every number from
the stored reports: whether the trigger still fires, whether it only left the output
(a head refit or a layer readout brings it back) or whether it is gone. It has its own
start button, so the first story stays as quick as it is.
"""

from __future__ import annotations

import dataclasses

from .config import ForgetSpec, MethodSpec, SetupSpec
from .figures import format_percent as pct
from .figures.poison import asr_by_run
from .progress import Progress
from .runs import RunStore
from .engine import Cell, Log, RunResult, run_cells
from .tour import PAGES, Link, Step, TourRun, _joined, _unavailable, stored_tour_runs

# Methods that answer differently on this scenario (a baseline that keeps training, one
# that relabels, a distillation, a training-free dampening) and two methods of the papers.
BACKDOOR_METHODS = ("finetune", "random_label", "scrub", "ssd", "ec", "lau")
NUMBER = 7
TITLE = "The backdoor that survives"
KIND_WORDS = {"trigger_fires": "the trigger still fires",
              "hidden": "the output forgot it but the trunk keeps it (hidden, not removed)",
              "removed": "removed", "undetermined": "undetermined"}


def backdoor_setup(base: SetupSpec | None = None) -> SetupSpec:
    """The base setup (default: the embedded default) with the default backdoor."""
    return dataclasses.replace(base or SetupSpec(), forget=ForgetSpec("poison"))


def _cell(base: SetupSpec | None) -> Cell:
    setup = backdoor_setup(base)
    return Cell("tour backdoor", setup.seed, setup)


def run_backdoor_tour(store: RunStore, progress: Progress | None = None,
                      base: SetupSpec | None = None, log: Log | None = None) -> list[RunResult]:
    """The chapter's runs into `store`, reusing what it already has."""
    progress = progress or Progress()
    results = run_cells([_cell(base)], [MethodSpec(m) for m in BACKDOOR_METHODS], store,
                        log=log, progress=progress)[0]
    progress.update(1.0, "the backdoor chapter is ready")
    return results


def backdoor_runs(store: RunStore, base: SetupSpec | None = None) -> dict[str, TourRun]:
    cell = _cell(base)
    return stored_tour_runs(store, [(name, cell) for name in BACKDOOR_METHODS],
                            "start the backdoor chapter")


def backdoor_step(store: RunStore, base: SetupSpec | None = None) -> Step:
    """The chapter: ASR of the original, the oracle and each method, what a head refit
    brings back, and each run's backdoor verdict."""
    runs = list(backdoor_runs(store, base).values())
    ok = [run for run in runs if not run.lacks("poison")]
    if not ok:
        return Step(NUMBER, TITLE, _unavailable(runs, "poison"))
    first = ok[0].report
    poison, accuracy = first["poison"], first["accuracy"]
    target = first["classes"][poison["target"]]
    text = (f"The original was trained with {poison['spec']['fraction']:.0%} of its training "
            f"images carrying a {poison['spec']['patch_size']}x{poison['spec']['patch_size']} "
            f"patch and the label {target}. On triggered test images of the other classes it "
            f"answers {target} {pct(poison['asr']['original'])} of the time (clean test "
            f"accuracy {pct(accuracy['original']['test'])}); the retrain oracle, which never "
            f"saw a trigger, {pct(poison['asr']['oracle'])} (clean "
            f"{pct(accuracy['oracle']['test'])}). A new linear head fitted on poisoned data "
            f"over the frozen trunk learns the trigger to {pct(poison['asr_head_refit']['oracle'])} "
            f"on the oracle's trunk and {pct(poison['asr_head_refit']['original'])} on the "
            f"original's. After unlearning the poisoned examples: "
            + ", ".join(f"{run.label} ASR {pct(run.report['poison']['asr']['unlearned'])}, "
                        f"after a head refit {pct(run.report['poison']['asr_head_refit']['unlearned'])}"
                        for run in ok) + ". ")
    groups: dict[str, list[str]] = {}
    for run in ok:
        groups.setdefault(run.report["poison"]["verdict"]["kind"], []).append(run.label)
    text += "Verdicts: " + "; ".join(f"{KIND_WORDS[kind]}: {_joined(labels)}"
                                     for kind, labels in groups.items()) + "."
    missing = [run.lacks("poison") for run in runs if run.lacks("poison")]
    if missing:
        text += " Not available yet: " + "; ".join(missing) + "."
    # The run to open: a hidden backdoor if there is one, it is what this chapter is about.
    showcase = next((run for kind in ("hidden", "trigger_fires", "removed", "undetermined")
                     for run in ok if run.report["poison"]["verdict"]["kind"] == kind), ok[0])
    return Step(NUMBER, TITLE, text, [asr_by_run({run.label: run.report for run in ok})],
                [Link(PAGES["layers"], f"Layers ({showcase.label})", showcase.run_id)])
