"""`python -m unlearn_core bench`: measured times and accuracies, printed as measured.

Suites (docs/benchmarks/README.md says how to run each and what the columns mean):

* quick / timing: the original, the oracle and each method once, in a fresh temporary
  store (nothing cached); "seconds" is the training or unlearning itself, "report
  seconds" is `evaluate()` for the run. `timing` also covers digits and a random forget
  set. Speed targets live here, not in unit tests.
* baselines: every registered method (retrain included, as the sanity row) for class
  forgetting and 10% random forgetting, over setup seeds 0..n-1 (each seed has its own
  original and oracle); mean ± std over seeds of the SalUn-protocol columns.
* sweep: one method over the Cartesian product of a hyperparameter grid, sorted by
  average gap to the oracle.

baselines, sweep and ec share one runner (`run_specs`, over `engine.run_cells`) and
one grouping (`engine.tabulate`), with a table per suite here (`markdown_tables`). Their
runs go to a persistent run store; a run whose (setup, method, params) already finished
there, on the same device type, is reused, so a killed bench continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from .config import (DataSpec, ForgetSpec, MethodSpec, ModelSpec, RunSpec, SetupSpec, TrainSpec,
                     canonical_json)
from .errors import UserError
from .methods import get_method, list_methods
from .pipeline import run_unlearning, train_references
from .runs import RunStore, default_store_root
from .engine import (Cell, Log, ReferenceCosts, RunResult, format_stat as _fmt, grid_specs,
                     method_label, run_cells, run_summary, stat as _stat, tabulate)
from .training import resolve_device
from .vocabulary import format_params

SCENARIOS = ("class", "random", "non_iid", "poison")
DEFAULT_SCENARIOS = ("class", "random")
RANDOM_FRACTION = 0.1
# The DEL paper's non-IID forget set: half the training examples of two classes (its
# CIFAR-10 classes do not carry over; 2 and 5 are an arbitrary pair on the digit sets).
NON_IID_FORGET = ForgetSpec("non_iid", classes=(2, 5), fraction=0.5)


def machine_description(device: str) -> str:
    dev = resolve_device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    return (f"{dev.type} ({name}), {os.cpu_count()} CPU cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def default_bench_store() -> Path:
    """Where baselines and sweeps keep their runs unless told otherwise."""
    return default_store_root() / "bench"


def stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- quick / timing -----------------------------------------------------------------


def _setups(quick: bool, device: str) -> list[SetupSpec]:
    setups = [SetupSpec(device=device)]
    if not quick:
        setups += [SetupSpec(forget=ForgetSpec("random", fraction=RANDOM_FRACTION), device=device),
                   SetupSpec(data=DataSpec("digits"), device=device)]
    return setups


def _timed_rows(setup: SetupSpec, store: RunStore, methods: Sequence[str]) -> list[dict]:
    """The original, the oracle and each method once on `setup`: seconds and accuracies."""
    rows = []
    where = f"{setup.data.name} / {setup.model.name} / {setup.forget.describe()}"
    refs = train_references(setup, store)
    for role, trained in (("original", refs.original), ("oracle", refs.oracle)):
        rows.append({"setup": where, "what": f"train {role}",
                     "seconds": trained.meta["seconds"],
                     "test": trained.meta["test_accuracy"],
                     "forget_train": None, "retain_train": None})
    for name in methods:
        try:
            get_method(name).accept(get_method(name).resolve_params({}), refs.original.model)
        except UserError as refusal:  # a method that does not apply says why, in the table
            rows.append({"setup": where, "what": name, "seconds": None, "test": None,
                         "forget_train": None, "retain_train": None, "refused": str(refusal)})
            continue
        run_id = run_unlearning(RunSpec(setup, MethodSpec(name)), store)
        report = store.get(run_id).report
        acc = report["accuracy"]["unlearned"]
        rows.append({"setup": where, "what": name,
                     "seconds": report["cost"]["seconds"], "test": acc["test"],
                     "forget_train": acc["forget_train"],
                     "retain_train": acc["retain_train"],
                     "evaluate_seconds": report["cost"]["evaluate_seconds"]})
    return rows


def run_bench(quick: bool = True, device: str = "auto") -> dict:
    rows = []
    with tempfile.TemporaryDirectory(prefix="lens-bench-") as root:
        store = RunStore(root)
        for setup in _setups(quick, device):
            rows += _timed_rows(setup, store, [m.name for m in list_methods()])
    machine = machine_description(device)
    return {"machine": machine, "rows": rows, "table": _timing_markdown(rows, machine)}


# The gpu suite: the field's usual comparison, CIFAR-10 with ResNet-18 (torchvision's,
# its stem adapted to 32x32 images), a recipe sized for a GPU.
GPU_MODEL = ModelSpec("torchvision/resnet18", small_stem=True)
GPU_TRAIN = TrainSpec(epochs=30, lr=0.1, batch_size=256, augment="crop_flip")


def gpu_setup(root: str | None, precision: str) -> SetupSpec:
    """The gpu suite's setup, or a UserError (exit 2) naming what is missing: a CUDA
    device, or CIFAR-10 in `root`. Checked before anything trains."""
    if not torch.cuda.is_available():
        raise UserError("--suite gpu: needs a CUDA device; torch sees none on this machine")
    if root is None:
        raise UserError("--suite gpu: needs --root, the folder holding CIFAR-10 (torchvision's "
                        "cifar-10-batches-py)")
    from .data import load_dataset
    data = DataSpec("cifar10", root=root)
    try:
        load_dataset(data)
    except UserError as missing:
        raise UserError(f"--suite gpu: CIFAR-10 is not readable in --root {root} ({missing})") \
            from None
    return SetupSpec(data=data, model=GPU_MODEL,
                     train=dataclasses.replace(GPU_TRAIN, precision=precision), device="cuda")


def gpu_bench(root: str | None, precision: str, methods: Sequence[str] | None = None) -> dict:
    """Times the original, the oracle and every method (or `methods`) on the gpu setup."""
    setup = gpu_setup(root, precision)
    with tempfile.TemporaryDirectory(prefix="lens-bench-gpu-") as store_root:
        rows = _timed_rows(setup, RunStore(store_root),
                           methods or [m.name for m in list_methods()])
    machine = f"{machine_description('cuda')}, precision {precision}"
    return {"machine": machine, "rows": rows, "table": _timing_markdown(rows, machine)}


def _timing_markdown(rows: list[dict], machine: str) -> str:
    def pct(v):
        return "" if v is None else f"{100 * v:.1f}"

    lines = [f"Machine: {machine}", "",
             "| setup | what | seconds | test acc % | forget-train acc % | retain-train acc % "
             "| report seconds |",
             "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['setup']} | {r['what']} | refused: {r['refused']} | | | | |"
              if "refused" in r else
              f"| {r['setup']} | {r['what']} | {r['seconds']:.2f} | {pct(r['test'])} | "
              f"{pct(r['forget_train'])} | {pct(r['retain_train'])} | "
              f"{r['evaluate_seconds']:.2f} |" if "evaluate_seconds" in r else
              f"| {r['setup']} | {r['what']} | {r['seconds']:.2f} | {pct(r['test'])} | | | |"
              for r in rows]
    return "\n".join(lines)


# --- input: scenarios, methods, grids -----------------------------------------------


def _comma_separated(text: str, allowed: Sequence[str], option: str,
                     what: str) -> tuple[str, ...]:
    """Distinct names from a comma-separated option, each one of `allowed`."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in allowed]
    if not names or bad:
        raise UserError(f"{option}: unknown {what} {bad or [text]}; allowed: "
                        f"{', '.join(sorted(allowed))}")
    return tuple(dict.fromkeys(names))


def parse_scenarios(text: str) -> tuple[str, ...]:
    return _comma_separated(text, SCENARIOS, "--scenarios", "scenario(s)")


def parse_methods(text: str | None) -> tuple[str, ...]:
    """Comma-separated method names (a plug-in as "<method>+<plug-in>"), each checked
    against the registry; None: every registered method."""
    if text is None:
        return tuple(m.name for m in list_methods())
    names = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not names:
        raise UserError("--methods: expected comma-separated method names")
    for name in names:
        try:
            get_method(name)
        except UserError as exc:
            raise UserError(f"--methods: {exc}") from None
    return names


def scenario_setup(base: SetupSpec, scenario: str, seed: int) -> SetupSpec:
    """The base setup with the scenario's forget set and the given setup seed. Class
    forgetting keeps the base's forget classes (class 0 for the embedded default)."""
    if scenario == "class":
        forget = base.forget if base.forget.kind == "classes" else ForgetSpec()
    elif scenario == "random":
        forget = ForgetSpec("random", fraction=RANDOM_FRACTION)
    elif scenario == "non_iid":
        forget = NON_IID_FORGET
    elif scenario == "poison":
        forget = base.forget if base.forget.kind == "poison" else ForgetSpec("poison")
    else:
        raise UserError(f"scenario: expected one of {', '.join(SCENARIOS)}, got {scenario!r}")
    return dataclasses.replace(base, forget=forget, seed=seed)


# --- the runner -----------------------------------------------------------------------


def run_specs(base: SetupSpec, scenarios: Sequence[str], seeds: Sequence[int],
              methods: Sequence[MethodSpec], store: RunStore, log: Log | None = None,
              retry_failed: bool = False) -> tuple[list[RunResult], list[ReferenceCosts]]:
    """Run every method spec on every (scenario, seed) of `base` with the sweeps
    runner (`engine.run_cells`: reuses runs the store already has, records failures
    and goes on)."""
    cells = [Cell(scenario, seed, scenario_setup(base, scenario, seed))
             for scenario in scenarios for seed in seeds]
    return run_cells(cells, methods, store, log=log, retry_failed=retry_failed)


# --- markdown -------------------------------------------------------------------------


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _status(row: dict) -> str:
    if not row["failures"]:
        return "ok"
    first = row["failures"][0]["error"]
    n = len(row["seeds"])
    if row["n_ok"] == 0:
        return _cell(f"failed: {first}")
    seeds = ", ".join(str(f["seed"]) for f in row["failures"])
    return _cell(f"{n - row['n_ok']} of {n} seeds failed (seed {seeds}): {first}")


def scenario_title(scenario: str, forget_classes: Sequence[int] | None) -> str:
    if scenario == "class":
        which = ", ".join(map(str, forget_classes)) if forget_classes else "0"
        return f"Class forgetting (class {which})"
    if scenario == "non_iid":
        return f"Non-IID forgetting ({NON_IID_FORGET.describe()})"
    if scenario == "poison":
        return f"Poisoned data ({ForgetSpec('poison').describe()} by default)"
    return f"Random forgetting ({RANDOM_FRACTION:.0%} of the training set)"


def markdown_tables(rows: Sequence[dict]) -> str:
    """One table per scenario (class forgetting has test accuracy split into retain and
    forget classes; random forgetting one test column)."""
    out: list[str] = []
    for scenario in dict.fromkeys(r["scenario"] for r in rows):
        mine = [r for r in rows if r["scenario"] == scenario]
        ranked = any("rank" in r for r in mine)
        with_params = any(r["params"] for r in mine)
        test_cols = (("test_retain", "test retain-classes %"), ("test_forget", "test forget-classes %")) \
            if scenario == "class" else (("test", "test %"),)
        cols = ((["rank"] if ranked else []) + ["method"] + (["params"] if with_params else [])
                + ["forget %", "retain %"] + [c for _, c in test_cols]
                + ["MIA-conf. %", "avg gap (pp)", "unlearn s", "speed-up ×", "seeds ok", "status"])
        seeds = max(len(r["seeds"]) for r in mine)
        out += [f"### {scenario_title(scenario, mine[0]['forget_classes'])}, "
                f"{seeds} seed{'s' if seeds != 1 else ''}", "",
                "| " + " | ".join(cols) + " |",
                "|" + "|".join("---" if c in ("rank", "method", "params", "status") else "---:"
                               for c in cols) + "|"]
        for r in mine:
            m = r["metrics"]
            reference = r["kind"] != "method"
            cells = []
            if ranked:
                cells.append("" if reference else "**1 (best)**" if r.get("best")
                             else str(r.get("rank") or "–"))
            cells.append(f"*{r['label']}*" if reference else
                         (f"**{r['method']}**" if r.get("best") else r["method"]))
            if with_params:
                cells.append(format_params(r["params"]))
            cells += [_fmt(m["forget_train"]), _fmt(m["retain_train"])]
            cells += [_fmt(m[k]) for k, _ in test_cols]
            cells += [_fmt(m["mia"]), _fmt(m["avg_gap"], digits=2),
                      _fmt(m["seconds"], scale=1.0, digits=2),
                      _fmt(m["speedup"], scale=1.0, digits=1),
                      f"{r['n_ok']}/{len(r['seeds'])}",
                      "reference (retrained from scratch; unlearn s = its training time)"
                      if r["kind"] == "oracle" else "reference (before unlearning)"
                      if reference else _status(r)]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out).rstrip()


LEGEND = (
    "Columns: accuracies of the unlearned model in % (forget = forget-train, retain = "
    "retain-train, test on the test set; for class forgetting split into the retain "
    "classes and the forgotten classes); MIA-conf. = SalUn MIA efficacy with the "
    "confidence feature (share of forget examples called non-member; ideal = the oracle's "
    "value, not 100); avg gap = mean |unlearned − oracle| over forget, retain, test accuracy "
    "and MIA-conf., in percentage points, computed per seed; unlearn s = wall time of the "
    "unlearning itself (not evaluation); speed-up = oracle training seconds / unlearn s. "
    "Mean ± sample std over seeds. See docs/benchmarks/README.md.")


def describe_setup(base: SetupSpec, seeds: Sequence[int]) -> str:
    t = base.train
    return (f"{base.data.name} / {base.model.name} (width {base.model.width:g}) / trained "
            f"{t.epochs} epochs, lr {t.lr:g}, batch {t.batch_size}, augment {t.augment}; "
            f"setup seeds {', '.join(map(str, seeds))}")


def render(title: str, header: Sequence[str], rows: Sequence[dict]) -> str:
    return "\n".join([f"# {title}", "", *(f"{line}  " for line in header), "",
                      markdown_tables(rows), "", LEGEND, ""])


# --- suites ---------------------------------------------------------------------------


def suite_header(base: SetupSpec, seeds: Sequence[int], store: RunStore, summary: dict,
                 wall: float, command: str | None) -> list[str]:
    """The lines above a suite's tables: how to rerun it, where, what it ran."""
    return ([f"Command: `{command}`"] if command else []) + [
        f"Machine: {machine_description(base.device)}",
        f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"torch: {torch.__version__}",
        f"Setup: {describe_setup(base, seeds)}",
        f"Run store: {store.root}",
        f"This invocation: {summary['runs']} runs ({summary['reused']} reused from the store, "
        f"{summary['failed']} failed), {summary['reference_models_trained']} reference models "
        f"(originals, oracles) trained, {wall:.0f} s wall time"]


def run_suite(title: str, base: SetupSpec, methods: Sequence[MethodSpec], *,
              seeds: int, scenarios: Sequence[str], store: RunStore,
              command: str | None = None, log: Log | None = None, rank: bool = False,
              retry_failed: bool = False, by_layer: bool = False) -> dict:
    """Run and tabulate a set of (setup, method spec): the code behind baselines, sweep
    and ec. Returns {"rows", "table" (markdown with header), "header", "summary"}, and
    with `by_layer` also "layer_rows" (see `layer_rows`), their tables appended."""
    if not isinstance(seeds, int) or seeds < 1:
        raise UserError(f"--seeds: expected an integer >= 1, got {seeds!r}")
    seed_list = list(range(seeds))
    started = time.perf_counter()
    results, references = run_specs(base, scenarios, seed_list, methods, store, log,
                                    retry_failed=retry_failed)
    wall = time.perf_counter() - started
    rows = tabulate(results, references, rank=rank)
    summary = run_summary(results, references, wall)
    header = suite_header(base, seed_list, store, summary, wall, command)
    suite = {"suite": title, "header": header, "rows": rows, "summary": summary,
             "table": render(title, header, rows)}
    if by_layer:
        suite["layer_rows"] = layer_rows(results)
        suite["table"] += "\n" + layer_markdown(suite["layer_rows"]) + "\n"
    return suite


def baselines(base: SetupSpec, store: RunStore, *, seeds: int = 3,
              methods: Sequence[str | MethodSpec] | None = None,
              scenarios: Sequence[str] = DEFAULT_SCENARIOS, command: str | None = None,
              log: Log | None = None, retry_failed: bool = False) -> dict:
    """Every registered method (or `methods`: names, or MethodSpecs for non-default
    parameters) with its default parameters."""
    names = methods if methods is not None else [m.name for m in list_methods()]
    specs = [m if isinstance(m, MethodSpec) else MethodSpec(m) for m in names]
    return run_suite("Unlearning baselines", base, specs, seeds=seeds, scenarios=scenarios,
                     store=store, command=command, log=log, retry_failed=retry_failed)


def sweep(base: SetupSpec, store: RunStore, method: str, grid: dict[str, list], *,
          seeds: int = 1, scenarios: Sequence[str] = ("class",), command: str | None = None,
          log: Log | None = None, retry_failed: bool = False) -> dict:
    """`method` over the Cartesian product of `grid` (see `parse_grid`), ranked by
    average gap to the oracle."""
    return run_suite(f"Sweep: {method}", base, grid_specs(method, grid), seeds=seeds,
                     scenarios=scenarios, store=store, command=command, log=log, rank=True,
                     retry_failed=retry_failed)


# --- EC: base methods against base + EC, layer by layer ---------------------------------

EC_BASES = ("finetune", "neggrad_plus", "random_label")
LAYER_PART = "forget_train"


def ec_method_names(bases: Sequence[str] = EC_BASES) -> list[str]:
    """EC alone, then each base followed by base + EC."""
    return ["ec"] + [name for base in bases for name in (base, f"{base}+ec")]


def _layer_values(report: dict, path: Sequence[str]) -> list | None:
    node: Any = report.get("layers")
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def layer_rows(results: Sequence[RunResult]) -> list[dict]:
    """Per scenario and method spec: mean ± std over seeds, per feature layer, of the
    forget-train CKA to the original, the CKA excess over the oracle's, the forgetting
    depth and the probe accuracy on held-out forget examples; the verdicts; plus the
    oracle's CKA and probe rows (from the same reports)."""
    rows: list[dict] = []
    for scenario in dict.fromkeys(r.scenario for r in results):
        mine = [r for r in results if r.scenario == scenario and r.report is not None
                and "layers" in r.report]
        if not mine:
            continue
        names = mine[0].report["layers"]["names"][:-1]
        probe_names = mine[0].report["layers"].get("probe_layers") or []

        def per_layer(reports, path, count):
            columns = [_layer_values(rep, path) for rep in reports]
            return [_stat(col[i] if col is not None else None for col in columns)
                    for i in range(count)]

        first_per_seed = {}
        for r in mine:
            first_per_seed.setdefault(r.seed, r.report)
        oracle_reports = list(first_per_seed.values())
        rows.append({"scenario": scenario, "label": "oracle (reference)", "names": names,
                     "probe_names": probe_names,
                     "cka": per_layer(oracle_reports, ("cka", "oracle_vs_original", LAYER_PART),
                                      len(names)),
                     "excess": None, "depth": None,
                     "probes": per_layer(oracle_reports, ("probes", "oracle"), len(probe_names)),
                     "verdicts": {}})
        for spec_key in dict.fromkeys((r.spec.name, canonical_json(r.spec.params)) for r in mine):
            group = [r.report for r in mine
                     if (r.spec.name, canonical_json(r.spec.params)) == spec_key]
            verdicts: dict[str, int] = {}
            for rep in group:
                kind = rep["layers"]["verdict"]["kind"]
                verdicts[kind] = verdicts.get(kind, 0) + 1
            spec = next(r.spec for r in mine
                        if (r.spec.name, canonical_json(r.spec.params)) == spec_key)
            rows.append({
                "scenario": scenario, "label": method_label(spec), "names": names,
                "probe_names": probe_names,
                "cka": per_layer(group, ("cka", "unlearned_vs_original", LAYER_PART), len(names)),
                "excess": per_layer(group, ("cka_excess", LAYER_PART, "value"), len(names)),
                "depth": per_layer(group, ("depth", LAYER_PART), len(names)),
                "probes": per_layer(group, ("probes", "unlearned"), len(probe_names)),
                "verdicts": verdicts})
    return rows


def _stat_cells(stats: Sequence[dict] | None, digits: int) -> list[str]:
    if stats is None:
        return []
    return [_fmt(s, scale=1.0, digits=digits) or "n/a" for s in stats]


def layer_markdown(rows: Sequence[dict]) -> str:
    """Per scenario: CKA to the original per feature layer, its excess over the oracle's,
    forgetting depth, probe accuracy and verdicts."""
    out: list[str] = []
    for scenario in dict.fromkeys(r["scenario"] for r in rows):
        mine = [r for r in rows if r["scenario"] == scenario]
        names, probe_names = mine[0]["names"], mine[0]["probe_names"]
        title = scenario_title(scenario, None) if scenario != "class" else "Class forgetting"
        sections = (
            ("CKA(unlearned, original) on forget-train data", "cka", names, 4),
            ("CKA excess over the oracle: CKA(unlearned, original) − CKA(oracle, original); "
             "> 0 = closer to the original than the oracle (superficial)", "excess", names, 4),
            ("Forgetting depth (n/a where the oracle moved by less than the depth floor)",
             "depth", names, 2),
            ("Linear-probe accuracy on held-out forget examples", "probes", probe_names, 3),
        )
        out.append(f"### {title}: layer by layer")
        out.append("")
        for heading, key, columns, digits in sections:
            shown = [r for r in mine if r[key] is not None]
            out += [f"**{heading}**", "", "| method | " + " | ".join(columns) + " |",
                    "|---|" + "---:|" * len(columns)]
            for r in shown:
                out.append(f"| {r['label']} | " + " | ".join(_stat_cells(r[key], digits)) + " |")
            out.append("")
        out += ["**Verdicts** (runs per verdict)", "", "| method | verdicts |", "|---|---|"]
        for r in mine:
            if r["verdicts"]:
                out.append(f"| {r['label']} | " + ", ".join(
                    f"{kind} {count}" for kind, count in sorted(r["verdicts"].items())) + " |")
        out.append("")
    return "\n".join(out).rstrip()


def ec_suite(base: SetupSpec, store: RunStore, *, bases: Sequence[str] = EC_BASES,
             seeds: int = 3, scenarios: Sequence[str] = DEFAULT_SCENARIOS,
             command: str | None = None, log: Log | None = None,
             retry_failed: bool = False) -> dict:
    """EC, each base method and base + EC: the standard table, then the layer tables."""
    specs = [MethodSpec(name) for name in ec_method_names(bases)]
    return run_suite("EC against its base methods", base, specs, seeds=seeds,
                     scenarios=scenarios, store=store, command=command, log=log,
                     retry_failed=retry_failed, by_layer=True)
