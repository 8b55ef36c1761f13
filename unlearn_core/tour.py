"""The guided tour: superficial vs core forgetting on the embedded default, in one click.

`run_tour` runs the preset with one progress bar: the original and the retrain oracle of
the embedded default (mnist5k, small_cnn, forget class 0, seed 0), one run each of
Finetune, Random Label, LAU, EC and DEL at their defaults, then DKVB via Activations on a
"dkvb" model built on that small_cnn's trunk (its original and oracle are trained on top
of the small_cnn ones). It goes through the bench runner (`engine.run_cells`), so a run
the store already has for the same spec is reused: a second launch trains nothing.

`tour_story` tells the story in six steps, every number read from the stored reports and
arrays, never typed in. A step whose run is missing, failed, or not registered in this
version says so in its text ("not available yet: ...") instead of failing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go

from .config import MethodSpec, ModelSpec, SetupSpec
from .errors import UserError
from .figures import format_percent as pct
from .figures import mia_efficacy_bars, probe_accuracy_per_layer
from .figures import ec as ec_figures
from .figures import keys as key_figures
from .figures import localization as localization_figures
from .figures.tour import forget_accuracy_by_run
from .methods import get_method
from .metrics.layers import NOT_FORGOTTEN_MARGIN
from .progress import Progress
from .runs import RunStore
from .engine import Cell, Log, RunResult, run_cells, stored_results

# The preset: methods on the base setup, then the key-masking method on the dkvb model.
BASE_METHODS = ("finetune", "random_label", "lau", "ec", "del")
KEY_METHOD = "dkvb_activations"
SHORT_NAMES = {"finetune": "Finetune", "random_label": "Random Label", "lau": "LAU",
               "ec": "EC", "del": "DEL", "dkvb_activations": "DKVB", "scrub": "SCRUB",
               "ssd": "SSD"}
PART = "forget_train"  # the forget part the CKA and excess sentences read
# A probe (or head refit) reading the forget class this much better than the oracle's
# counts as recovering it: a few points are sampling noise on the ~100 held-out examples.
PROBE_MARGIN = 0.05

PAGES = {"results": "app_pages/results.py", "layers": "app_pages/layers.py",
         "privacy": "app_pages/privacy.py", "localization": "app_pages/localization.py",
         "keys": "app_pages/keys.py"}


# --- the preset --------------------------------------------------------------------------


def tour_setups(base: SetupSpec | None = None) -> tuple[SetupSpec, SetupSpec]:
    """The base setup (default: the embedded default) and the same setup with a "dkvb"
    model on the base model's trunk."""
    base = base or SetupSpec()
    dkvb = ModelSpec("dkvb", width=base.model.width, encoder=base.model.name)
    return base, dataclasses.replace(base, model=dkvb)


def _registered(name: str) -> bool:
    try:
        get_method(name)
    except UserError:
        return False
    return True


def tour_plan(base: SetupSpec | None = None) -> list[tuple[Cell, list[MethodSpec]]]:
    """(cell, method specs at their defaults) of the preset. A method this version does
    not register is left out (its step says so); a cell left without methods is dropped."""
    base_setup, dkvb_setup = tour_setups(base)
    plan = [(Cell("tour", base_setup.seed, base_setup), BASE_METHODS),
            (Cell("tour dkvb", dkvb_setup.seed, dkvb_setup), (KEY_METHOD,))]
    return [(cell, [MethodSpec(name) for name in names if _registered(name)])
            for cell, names in plan if any(_registered(name) for name in names)]


def run_tour(store: RunStore, progress: Progress | None = None, base: SetupSpec | None = None,
             log: Log | None = None) -> list[RunResult]:
    """Run the preset into `store`, reusing what it already has; one overall progress,
    each cell's references and each run one equal share of it. Cancel stops it at the
    next step (`Cancelled`); a failing method is recorded and the others go on."""
    progress = progress or Progress()
    plan = tour_plan(base)
    shares = [1 + len(methods) for _, methods in plan]  # the references, then each run
    total, done = sum(shares), 0
    results: list[RunResult] = []
    for (cell, methods), share in zip(plan, shares):
        stage = progress.stage(done / total, (done + share) / total)
        results += run_cells([cell], methods, store, log=log, progress=stage)[0]
        done += share
    progress.update(1.0, "the tour is ready")
    return results


# --- what the store holds -------------------------------------------------------------


@dataclass
class TourRun:
    """One method of the preset as the store holds it: a finished run's report, or why
    there is none (`missing`). `status`: "done", "failed" (kept: `run_tour` does not
    retry it), "not_run" (`run_tour` would run it) or "not_registered"."""

    name: str
    label: str
    status: str
    run_id: str | None = None
    report: dict | None = None
    missing: str | None = None

    def lacks(self, section: str) -> str | None:
        """Why this run cannot serve a step that reads `section` of the report, or None."""
        if self.missing:
            return self.missing
        if section not in self.report:
            return (f"the stored {self.label} run ({self.run_id}) has no {section} metrics; "
                    "run it again")
        return None


def tour_runs(store: RunStore, base: SetupSpec | None = None) -> dict[str, TourRun]:
    """The preset's methods by name, each with its stored run (the one `run_tour` would
    reuse) or the reason it is not available."""
    base_setup, dkvb_setup = tour_setups(base)
    wanted = [(name, Cell("tour", base_setup.seed, base_setup)) for name in BASE_METHODS]
    wanted.append((KEY_METHOD, Cell("tour dkvb", dkvb_setup.seed, dkvb_setup)))
    return stored_tour_runs(store, wanted, "start the tour")


def stored_tour_runs(store: RunStore, wanted: list[tuple[str, Cell]],
                     start_hint: str) -> dict[str, TourRun]:
    """(method name, cell) -> the stored run `run_cells` would reuse, or why there is none
    (`start_hint` says what runs it)."""
    registered = [(name, cell) for name, cell in wanted if _registered(name)]
    found = dict(zip((name for name, _ in registered),
                     stored_results(store, [(cell, MethodSpec(name)) for name, cell in registered])))
    runs = {}
    for name, _ in wanted:
        label, result = SHORT_NAMES[name], found.get(name)
        if name not in found:
            run = TourRun(name, label, "not_registered",
                          missing=f"{label} ({name}) is not part of this version yet")
        elif result is None:
            run = TourRun(name, label, "not_run", missing=f"{label} has not run yet: {start_hint}")
        elif result.error:
            run = TourRun(name, label, "failed", run_id=result.run_id,
                          missing=f"the {label} run failed: {result.error}")
        else:
            run = TourRun(name, label, "done", run_id=result.run_id, report=result.report)
        runs[name] = run
    return runs


# --- the story ----------------------------------------------------------------------------


@dataclass
class Link:
    page: str
    label: str
    run_id: str | None  # the run to open there


@dataclass
class Step:
    """One step of the story: its sentences (from the stored numbers), the figures that
    prove them, and the pages to open for the full picture."""

    number: int
    title: str
    text: str
    figures: list[go.Figure] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)

    @property
    def available(self) -> bool:
        return not self.text.startswith("Not available yet")


def _unavailable(runs: list[TourRun], section: str) -> str:
    reasons = [run.lacks(section) for run in runs if run.lacks(section)]
    return "Not available yet: " + "; ".join(reasons) + "."


def _missing_note(runs: list[TourRun], section: str) -> str:
    reasons = [run.lacks(section) for run in runs if run.lacks(section)]
    return (" Not available yet: " + "; ".join(reasons) + ".") if reasons else ""


def _forget_key(report: dict) -> str:
    """The forget accuracy the verdict reads: on the forget class's test examples when the
    setup has them (class forgetting), else on the forget training examples."""
    return "test_forget" if report["accuracy"]["unlearned"]["test_forget"] is not None \
        else "forget_train"


def _own_reference(value: float | None, reference: float | None, fmt=pct) -> str:
    """" (its own oracle: 12.3%)" where a run's oracle value differs from the one the
    sentence quotes (the DKVB run has its own original and oracle)."""
    return "" if value == reference else f" (its own oracle: {fmt(value)})"


def _joined(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _step_forget_accuracy(runs: list[TourRun]) -> Step:
    title = "Every method forgets the class"
    ok = [run for run in runs if not run.lacks("accuracy")]
    if not ok:
        return Step(1, title, _unavailable(runs, "accuracy"))
    first = ok[0].report
    key = _forget_key(first)
    where = "test examples of" if key == "test_forget" else "training examples of"
    classes = _joined([first["classes"][c] for c in first["forget_classes"]]) \
        if first.get("forget_classes") else "the forget set"
    original, oracle = first["accuracy"]["original"][key], first["accuracy"]["oracle"][key]
    parts = [f"{run.label} {pct(run.report['accuracy']['unlearned'][key])}"
             + _own_reference(run.report["accuracy"]["oracle"][key], oracle)
             for run in ok]
    forgotten = [run.label for run in ok if run.report["accuracy"]["unlearned"][key]
                 <= run.report["accuracy"]["oracle"][key] + NOT_FORGOTTEN_MARGIN]
    margin = f"{100 * NOT_FORGOTTEN_MARGIN:.0f} points"
    if len(forgotten) == len(ok):
        verdict = (f"All {len(ok)} are within {margin} of the oracle's forget accuracy: by "
                   "this number alone they look alike.")
    else:
        behind = [run.label for run in ok if run.label not in forgotten]
        verdict = (f"{len(forgotten)} of {len(ok)} are within {margin} of the oracle's; "
                   f"{_joined(behind)} not (the forget class is still recognised).")
    text = (f"Accuracy on the {where} class {classes}: the original {pct(original)}, the "
            f"retrain oracle {pct(oracle)}; after unlearning {', '.join(parts)}. {verdict}"
            + _missing_note(runs, "accuracy"))
    return Step(1, title, text, [forget_accuracy_by_run({r.label: r.report for r in ok})],
                [Link(PAGES["results"], "Results", ok[0].run_id)])


def _significant_layers(report: dict) -> list[str]:
    """Feature layers where CKA(unlearned, original) stayed significantly above the
    oracle's (the paired 95% interval of the difference lies above 0)."""
    layers = report["layers"]
    excess = layers.get("cka_excess", {}).get(PART)
    if excess is None:
        return []
    return [name for name, low in zip(layers["names"][:-1], excess["low"])
            if low is not None and low > 0]


def _cka(report: dict, pair: str, layer: str) -> float | None:
    layers = report["layers"]
    return layers["cka"][pair][PART][layers["names"].index(layer)]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _step_cka(runs: list[TourRun]) -> Step:
    title = "Yet inside, some only moved the last layers"
    ok = [run for run in runs if not run.lacks("layers")]
    if not ok:
        return Step(2, title, _unavailable(runs, "layers"))
    first = ok[0].report
    layer = first["layers"]["names"][-2]  # the deepest feature layer, before the logits
    oracle = _cka(first, "oracle_vs_original", layer)
    values = []
    for run in ok:
        own_layer = run.report["layers"]["names"][-2]
        values.append(f"{run.label} {_fmt(_cka(run.report, 'unlearned_vs_original', own_layer))}"
                      + ("" if own_layer == layer else f" (at its {own_layer})")
                      + _own_reference(_cka(run.report, "oracle_vs_original", own_layer),
                                       oracle, _fmt))
    groups: dict[str, list[str]] = {}
    for run in ok:
        close = _significant_layers(run.report)
        groups.setdefault(run.report["layers"]["verdict"]["kind"], []).append(
            run.label + (f" (significantly closer to the original than the oracle at "
                         f"{_joined(close)})" if close else ""))
    kinds = {"superficial": "superficial (only the last layers moved)",
             "core": "core (the representation moved like the oracle's)",
             "partial": "partly at the core", "not_forgotten": "not forgotten",
             "undetermined": "undetermined"}
    verdicts = "; ".join(f"{kinds[kind]}: {_joined(labels)}" for kind, labels in groups.items())
    text = (f"Linear CKA to the original on forget training examples at {layer}, the deepest "
            f"feature layer (1 = unchanged): the retrain oracle {_fmt(oracle)}, "
            f"{', '.join(values)}. The stored verdicts: {verdicts}."
            + _missing_note(runs, "layers"))
    # One overlay needs one set of layers: the runs of the first run's model.
    same = {run.label: run.report for run in ok
            if run.report["layers"]["names"] == first["layers"]["names"]}
    return Step(2, title, text, [ec_figures.cka_overlay(same, PART)],
                [Link(PAGES["layers"], "Layers", ok[0].run_id)])


def _step_probes(runs: list[TourRun]) -> Step:
    title = "Linear probes and a new head read what is left"
    ok = [run for run in runs if not run.lacks("layers") and run.report["layers"]["probes"]]
    if not ok:
        if any(run.lacks("layers") for run in runs):
            return Step(3, title, _unavailable(runs, "layers"))
        return Step(3, title, "Not available yet: no tour run has held-out forget examples "
                              "to fit probes on.")
    first = ok[0].report["layers"]
    layer = first["probe_layers"][-1]
    original, oracle = first["probes"]["original"][-1], first["probes"]["oracle"][-1]
    probes = {run.label: run.report["layers"]["probes"]["unlearned"][-1] for run in ok}
    text = (f"A linear probe fitted on frozen {layer} activations recognises held-out forget "
            f"examples: original {pct(original)}, retrain oracle {pct(oracle)}, "
            + ", ".join(f"{label} {pct(value)}" for label, value in probes.items()) + ". ")

    def beats_oracle(value: float | None) -> bool:
        return value is not None and oracle is not None and value > oracle + PROBE_MARGIN

    recovered = [label for label, value in probes.items() if beats_oracle(value)]
    if recovered:
        text += (f"The probes recover the forgotten class from {_joined(recovered)} more than "
                 f"{100 * PROBE_MARGIN:.0f} points better than from the oracle. ")
    else:
        text += (f"No probe beats the oracle's by more than {100 * PROBE_MARGIN:.0f} points: "
                 "the oracle never saw these examples and still separates them, so on this "
                 "data a probe alone cannot tell superficial from core forgetting. ")
    refits = {run.label: run.report["layers"]["head_refit"]["forget_accuracy_after"]
              for run in ok if run.report["layers"]["head_refit"]}
    # The chart: the superficial runs' probes if there are any, the most recoverable first.
    superficial = [run for run in ok if run.report["layers"]["verdict"]["kind"] == "superficial"]
    candidates = superficial or ok
    showcase = max(candidates, key=lambda run: refits.get(run.label) or 0.0)
    if refits:
        text += ("Refitting only the classifier on each unlearned trunk, forget data included, "
                 "brings forget accuracy back to: "
                 + ", ".join(f"{label} {pct(value)}" for label, value in refits.items()) + ".")
        if not any(beats_oracle(value) for value in refits.values()):
            text += (" None is more than that margin above the oracle's probe: the class is "
                     "still linearly readable from every trunk here, the oracle's included.")
    text += f" The chart shows {showcase.label}'s probes." + _missing_note(runs, "layers")
    return Step(3, title, text, [probe_accuracy_per_layer(showcase.report)],
                [Link(PAGES["layers"], "Layers", showcase.run_id)])


def _step_ec(ec: TourRun, finetune: TourRun) -> Step:
    title = "What EC changes"
    if ec.lacks("layers") or finetune.lacks("layers"):
        return Step(4, title, _unavailable([ec, finetune], "layers"))
    names = ec.report["layers"]["names"][:-1]
    mine = ec.report["layers"]["cka"]["unlearned_vs_original"][PART][:-1]
    base = finetune.report["layers"]["cka"]["unlearned_vs_original"][PART][:-1]
    lower = [name for name, e, f in zip(names, mine, base)
             if e is not None and f is not None and e < f]
    acc = {run.label: run.report["accuracy"]["unlearned"] for run in (ec, finetune)}
    key = _forget_key(ec.report)
    text = (f"EC adds a contrastive unlearning loss and deep supervision at every layer "
            f"(auxiliary heads, discarded afterwards). CKA to the original on forget training "
            f"examples, layer by layer ({', '.join(names)}): EC "
            f"{' / '.join(_fmt(v) for v in mine)}, Finetune {' / '.join(_fmt(v) for v in base)}"
            f"; EC moved further from the original at {len(lower)} of {len(names)} layers"
            + (f" ({_joined(lower)})" if lower else "") + ". "
            f"Forget accuracy EC {pct(acc['EC'][key])}, Finetune {pct(acc['Finetune'][key])}; "
            f"test accuracy on the other classes EC {pct(acc['EC']['test_retain'])}, Finetune "
            f"{pct(acc['Finetune']['test_retain'])}; unlearning took EC "
            f"{ec.report['cost']['seconds']:.1f} s, Finetune "
            f"{finetune.report['cost']['seconds']:.1f} s. Verdicts: EC "
            f"{ec.report['layers']['verdict']['kind']}, Finetune "
            f"{finetune.report['layers']['verdict']['kind']}.")
    return Step(4, title, text,
                [ec_figures.cka_overlay({"Finetune": finetune.report, "EC": ec.report}, PART)],
                [Link(PAGES["layers"], "Layers", ec.run_id)])


def _del_sentence(run: TourRun, store: RunStore) -> tuple[str, go.Figure]:
    info = run.report["method"]["info"]["localization"]
    arrays = store.load_arrays(run.run_id)
    shares = arrays["mask/stage_parameter_fraction"]
    acc = run.report["accuracy"]
    widest = info["layers"][int(np.argmax(shares))]
    text = (f"DEL scored every parameter by |weight × gradient| on the forget set, reset "
            f"{pct(info['selected_fraction'])} of the parameters (budget ρ = {info['rho']:g}) "
            f"and finetuned them on the retain set. Share of each layer's parameters reset: "
            + ", ".join(f"{layer} {pct(float(s))}" for layer, s in zip(info["layers"], shares))
            + f"; the largest share in {widest}. Forget accuracy "
            f"{pct(acc['unlearned'][_forget_key(run.report)])}, "
            f"test accuracy on the other classes {pct(acc['unlearned']['test_retain'])} "
            f"(original {pct(acc['original']['test_retain'])}).")
    figure = localization_figures.selected_fraction_bars([("DEL", run.report, arrays)])
    return text, figure


def _dkvb_sentence(run: TourRun, store: RunStore) -> tuple[str, go.Figure]:
    info = run.report["method"]["info"]
    acc = run.report["accuracy"]
    key = _forget_key(run.report)
    steps = info["gradient_steps"]
    text = (f"DKVB froze the trained encoder behind a key-value bottleneck; to forget, it "
            f"masked {info['pairs_masked']:,} of its {info['pairs_total']:,} (codebook, key) "
            f"pairs, those the forget set selects most, with {steps:,} gradient "
            f"step{'' if steps == 1 else 's'} in {info['unlearning_seconds']:.2f} s. Forget "
            f"accuracy {pct(acc['original'][key])} before, {pct(acc['unlearned'][key])} after; "
            f"test accuracy on the other classes {pct(acc['original']['test_retain'])} before, "
            f"{pct(acc['unlearned']['test_retain'])} after.")
    return text, key_figures.codebook_overview(store.load_arrays(run.run_id))


def _step_where(del_run: TourRun, dkvb: TourRun, store: RunStore) -> Step:
    title = "Where DEL acted, and how DKVB forgot without a gradient step"
    texts, figures, links = [], [], []
    for run, sentence, page, label in ((del_run, _del_sentence, "localization", "Localization"),
                                       (dkvb, _dkvb_sentence, "keys", "Keys")):
        if run.lacks("method"):
            texts.append(f"{run.label}: not available yet: {run.lacks('method')}.")
            continue
        text, figure = sentence(run, store)
        texts.append(text)
        figures.append(figure)
        links.append(Link(PAGES[page], label, run.run_id))
    text = " ".join(texts)
    if not figures:
        text = _unavailable([del_run, dkvb], "method")
    return Step(5, title, text, figures, links)


def _step_mia(runs: list[TourRun]) -> Step:
    title = "What an attacker still sees"
    ok = [run for run in runs if not run.lacks("mia")]
    if not ok:
        return Step(6, title, _unavailable(runs, "mia"))
    first = ok[0].report["mia"]
    feature = first["headline"]
    oracle, original = first["efficacy"]["oracle"][feature], first["efficacy"]["original"][feature]
    gaps, scores, parts = {}, {}, []
    for run in ok:
        mia = run.report["mia"]
        value, own = mia["efficacy"]["unlearned"][feature], mia["efficacy"]["oracle"][feature]
        gaps[run.label] = None if value is None or own is None else value - own
        scores[run.label] = mia["distinguishability"].get(feature, {}).get("privacy_score")
        parts.append(f"{run.label} {pct(value)}"
                     + ("" if gaps[run.label] is None else f" ({100 * gaps[run.label]:+.1f} points)")
                     + _own_reference(own, oracle))
    text = (f"A membership-inference attacker ({feature} feature, SalUn protocol) calls a share "
            f"of the forget examples non-members. The target is what the retrain oracle "
            f"scores, {pct(oracle)} (the original: {pct(original)}); after unlearning "
            f"{', '.join(parts)}.")
    known = {label: abs(gap) for label, gap in gaps.items() if gap is not None}
    if known and max(known.values()) > min(known.values()):
        text += (f" Farthest from the oracle: {max(known, key=known.get)}; closest: "
                 f"{min(known, key=known.get)}.")
    elif known:
        text += " Every method is equally far from the oracle by this attack."
    scored = {label: score for label, score in scores.items() if score is not None}
    if scored:
        text += (" Telling each model from the oracle example by example (privacy score "
                 "2^-ε, 1 = indistinguishable): "
                 + ", ".join(f"{label} {score:.3f}" for label, score in scored.items()) + ".")
    # The chart: the run farthest from the oracle; on a tie, the most distinguishable one.
    shown = max(ok, key=lambda run: (known.get(run.label, 0.0), -scored.get(run.label, 1.0)))
    why = ("farthest from the oracle" if known and max(known.values()) > min(known.values())
           else "the most distinguishable from the oracle")
    text += f" The chart shows {shown.label}, {why}." + _missing_note(runs, "mia")
    return Step(6, title, text, [mia_efficacy_bars(shown.report)],
                [Link(PAGES["privacy"], "Privacy", shown.run_id)])


def tour_story(store: RunStore, base: SetupSpec | None = None) -> list[Step]:
    """The six steps of the tour, from the runs `run_tour` left in `store`."""
    runs = tour_runs(store, base)
    every = list(runs.values())
    return [_step_forget_accuracy(every), _step_cka(every), _step_probes(every),
            _step_ec(runs["ec"], runs["finetune"]),
            _step_where(runs["del"], runs[KEY_METHOD], store), _step_mia(every)]
