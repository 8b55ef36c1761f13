"""`python -m unlearn_core ...`: train, unlearn, inspect runs, benchmark, sweep.

Bad input exits with code 2 and a one-line message that names the parameter; a run
that fails for another reason exits with code 1 and is recorded as failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .config import (DEFAULT_ENCODER, ENCODER_MODELS, FORGET_KINDS, ORACLE_INITS, PAPER_SCALE,
                     POISON_ATTACKS, POISON_POSITIONS, PRECISIONS, USER_MODULE, BottleneckSpec,
                     DataSpec, ForgetSpec, MethodSpec, ModelSpec, PoisonSpec, RunSpec, SetupSpec,
                     TrainSpec)
from .errors import Cancelled, DivergedError, UserError
from .figures import format_percent
from .progress import ConsoleProgress, Progress
from .vocabulary import ROLES

if TYPE_CHECKING:
    from .runs import RunStore

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors go through the same exit path as UserError."""

    def error(self, message: str):
        raise UserError(message)


def _path_type(flag: str):
    """argparse type for a path flag: the shared validator (empty, NUL, `~` without
    HOME, characters the file system refuses) with its message, not argparse's."""
    def parse(text: str) -> Path:
        from .validate import user_path
        try:
            return user_path(text, flag)
        except UserError as exc:
            raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None
    parse.__name__ = "path"
    return parse


def _add_setup_args(p: argparse.ArgumentParser) -> None:
    d, t, m = DataSpec(), TrainSpec(), ModelSpec()
    g = p.add_argument_group("setup")
    g.add_argument("--setup-json", type=_path_type("--setup-json"),
                   help="read the whole setup from a JSON file (as `runs show` prints it); "
                        "the options below are then ignored")
    g.add_argument("--dataset", default=d.name, help="dataset name (see `list datasets`)")
    g.add_argument("--root", default=None, help="folder of a torchvision dataset or ImageFolder")
    g.add_argument("--download", action="store_true", help="let torchvision download into --root")
    g.add_argument("--image-size", type=int, default=d.image_size, help="ImageFolder resize")
    g.add_argument("--model", default=m.name, help="model name (see `list models`)")
    g.add_argument("--width", type=float, default=m.width, help="channel width multiplier")
    g.add_argument("--encoder", default=None, help=f"models {' and '.join(ENCODER_MODELS)}: the "
                   f"model whose trained original lends its frozen trunk (default "
                   f"{DEFAULT_ENCODER})")
    b = BottleneckSpec()
    g.add_argument("--codebooks", type=int, default=None,
                   help=f"model dkvb: number of codebooks C (default {b.codebooks})")
    g.add_argument("--keys", type=int, default=None,
                   help=f"model dkvb: keys per codebook P (default {b.keys})")
    g.add_argument("--key-dim", type=int, default=None,
                   help=f"model dkvb: dimension of a key (default {b.key_dim})")
    g.add_argument("--paper-scale", action="store_true",
                   help="model dkvb: the paper's bottleneck, " + " x ".join(
                       f"{k} {v}" for k, v in PAPER_SCALE.items()))
    g.add_argument("--entry-point", default=None, metavar="MODULE:FUNCTION",
                   help=f"model {USER_MODULE}: the function returning your nn.Module classifier "
                        "(a module on the Python path or path/to/file.py)")
    g.add_argument("--probe-layers", default=None, metavar="A,B,...",
                   help="adapted models (user_module, torchvision/..., timm/...): module names "
                        "whose outputs the lens reads, each ending a stage (default: the "
                        "model's blocks)")
    g.add_argument("--head", default=None,
                   help="adapted models: the nn.Linear classifier's module name (default: the "
                        "one producing the output)")
    g.add_argument("--small-stem", action="store_true",
                   help="torchvision/... models: adapt the ImageNet stem to small images "
                        "(3x3 stride-1 first convolution, no max-pool; small ViT patches)")
    g.add_argument("--weights", type=_path_type("--weights"), default=None, metavar="PATH",
                   help="torchvision/... models: start from this weights file (.safetensors "
                        "or a weights-only .pt/.pth)")
    g.add_argument("--forget-kind", default=None, choices=FORGET_KINDS, help="default: classes")
    g.add_argument("--forget-classes", default="0", help="comma-separated class ids")
    g.add_argument("--forget-fraction", type=float, default=None,
                   help="fraction for kinds random and non_iid (default 0.1)")
    g.add_argument("--forget-indices", type=_path_type("--forget-indices"),
                   help="CSV of training-set indices (kind indices)")
    poison = PoisonSpec()
    g.add_argument("--poison-fraction", type=float, default=None,
                   help=f"kind poison: share of the training set that gets the trigger and the "
                        f"target label (default {poison.fraction:g})")
    g.add_argument("--poison-target", type=int, default=None,
                   help=f"kind poison: the class a triggered image is sent to (default "
                        f"{poison.target})")
    g.add_argument("--poison-patch-size", type=int, default=None,
                   help=f"kind poison: side of the square trigger in pixels (default "
                        f"{poison.patch_size})")
    g.add_argument("--poison-value", type=int, default=None,
                   help=f"kind poison: pixel value of the trigger, 0-255 (default {poison.value})")
    g.add_argument("--poison-position", default=None, choices=POISON_POSITIONS,
                   help=f"kind poison: corner of the trigger (default {poison.position})")
    g.add_argument("--poison-attack", default=None, choices=POISON_ATTACKS,
                   help="kind poison: backdoor (a patch and a target label, the default) or "
                        "gaussian (noise on the images, labels kept; read back by its "
                        "imprint on the input gradients)")
    g.add_argument("--poison-noise-std", type=float, default=None,
                   help=f"kind poison, attack gaussian: noise standard deviation as a share of "
                        f"the pixel range (default {poison.noise_std:g})")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--oracle-init", default="same", choices=ORACLE_INITS,
                   help="the retrain oracle's initialisation: 'same' as the original (the "
                        "difference is the forget data's alone) or 'independent' (another "
                        "seed, like a retrain from scratch; a twin original trained with that "
                        "seed then measures seed noise, drawn as a band on the Layers page)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    g.add_argument("--epochs", type=int, default=t.epochs, help="training epochs of the original")
    g.add_argument("--lr", type=float, default=t.lr)
    g.add_argument("--batch-size", type=int, default=t.batch_size)
    g.add_argument("--augment", default="none", choices=("none", "crop", "crop_flip"),
                   help="training augmentation: crop for digits, crop_flip for natural images")
    g.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="training arithmetic: fp32, or bf16/fp16 mixed precision (CUDA only)")


def _int_list(text: str, name: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{name}: expected comma-separated integers, got {text!r}") from None


def _model_from_args(args: argparse.Namespace) -> ModelSpec:
    sizes = {"codebooks": args.codebooks, "keys": args.keys, "key_dim": args.key_dim}
    given = {k: v for k, v in sizes.items() if v is not None}
    if args.model != "dkvb" and (given or args.paper_scale):
        flag = "--paper-scale" if args.paper_scale else "--" + next(iter(given)).replace("_", "-")
        raise UserError(f"{flag}: only model dkvb has a bottleneck, not {args.model!r}")
    adapted = {"entry_point": args.entry_point, "head": args.head,
               "probe_layers": tuple(p.strip() for p in (args.probe_layers or "").split(",")
                                     if p.strip()),
               "small_stem": args.small_stem,
               "weights": None if args.weights is None else str(args.weights)}
    if args.model != "dkvb":
        return ModelSpec(args.model, args.width, encoder=args.encoder, **adapted)
    bottleneck = {**(PAPER_SCALE if args.paper_scale else {}), **given}
    return ModelSpec(args.model, args.width, encoder=args.encoder,
                     bottleneck=BottleneckSpec(**bottleneck), **adapted)


def _poison_from_args(args: argparse.Namespace) -> PoisonSpec | None:
    given = {field: getattr(args, f"poison_{field}") for field in
             ("fraction", "target", "patch_size", "value", "position", "attack", "noise_std")}
    given = {field: value for field, value in given.items() if value is not None}
    if args.forget_kind != "poison":
        if given:
            flag = "--poison-" + next(iter(given)).replace("_", "-")
            raise UserError(f"{flag}: only --forget-kind poison plants a backdoor, not "
                            f"--forget-kind {args.forget_kind}")
        return None
    return PoisonSpec(**given)


# Forget kinds that read --forget-fraction and --forget-indices; any other kind ignores
# them, so giving one there is an error rather than a silent surprise.
FRACTION_KINDS = ("random", "non_iid")
INDICES_KINDS = ("indices",)


def _check_forget_flags(args: argparse.Namespace) -> None:
    """--forget-fraction / --forget-indices only with a kind that uses them; --root only
    for a dataset read from a folder. Fills in the default kind."""
    given_kind = args.forget_kind
    kind = given_kind or "classes"
    for flag, value, kinds in (("--forget-indices", args.forget_indices, INDICES_KINDS),
                               ("--forget-fraction", args.forget_fraction, FRACTION_KINDS)):
        if value is not None and kind not in kinds:
            told = (f"--forget-kind {kind}" if given_kind else
                    f"no --forget-kind (the default is {kind})")
            raise UserError(f"{flag}: only used with --forget-kind {' or '.join(kinds)}, but "
                            f"{told} ignores it; add --forget-kind {kinds[0]} or drop {flag}")
    args.forget_kind = kind
    if args.root is not None or args.download:
        from .data import list_datasets
        embedded = {d.name for d in list_datasets() if d.embedded}
        if args.dataset in embedded:
            flag = "--root" if args.root is not None else "--download"
            raise UserError(f"{flag}: dataset {args.dataset!r} is built in (embedded) and "
                            f"reads no folder; drop {flag} or choose a folder dataset "
                            "(see `list datasets`)")


def setup_from_args(args: argparse.Namespace) -> SetupSpec:
    if args.setup_json is not None:
        from .validate import load_json_text, setup_from_raw
        try:
            data = args.setup_json.read_bytes()
        except OSError as exc:
            raise UserError(f"--setup-json: cannot read {args.setup_json} "
                            f"({exc.strerror or exc})") from None
        return setup_from_raw(load_json_text(data, "--setup-json"), "--setup-json")
    _check_forget_flags(args)
    indices: tuple[int, ...] = ()
    if args.forget_kind == "indices":
        from .data import read_index_csv
        if args.forget_indices is None:
            raise UserError("--forget-indices: kind 'indices' needs a CSV file of indices")
        try:
            indices = read_index_csv(args.forget_indices.read_bytes())
        except OSError as exc:
            raise UserError(f"--forget-indices: cannot read {args.forget_indices} "
                            f"({exc.strerror})") from None
    return SetupSpec(
        data=DataSpec(args.dataset, args.root, args.download, args.image_size),
        forget=ForgetSpec(args.forget_kind, _int_list(args.forget_classes, "forget.classes"),
                          0.1 if args.forget_fraction is None else args.forget_fraction, indices,
                          poison=_poison_from_args(args)),
        model=_model_from_args(args),
        train=TrainSpec(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                        augment=args.augment, precision=args.precision),
        seed=args.seed, device=args.device, oracle_init=args.oracle_init)


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """`key=value` pairs; values are read as JSON (numbers, true/false) or else text."""
    from .validate import parse_value
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--param: expected key=value, got {pair[:60]!r}")
        if key in params:
            raise UserError(f"--param {key}: given twice ({key}={params[key]!r} and "
                            f"{pair[:60]!r}); give each hyperparameter once")
        params[key] = parse_value(raw, f"--param {key[:40]}")
    return params


def _store(args):
    from .runs import RunStore
    return RunStore(args.store)


def _out_path(value, store_root: Path | None, name: str = "--out") -> Path:
    """An output file of a command: a valid path, not a folder, and never inside the
    run store (only the store writes there: a report written over index.sqlite or a
    run's report.json would destroy runs)."""
    from .runs import default_store_root
    from .validate import user_path
    path = user_path(value, name)
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:
        raise UserError(f"{name}: cannot resolve {str(path)!r} ({exc})") from None
    roots = [store_root] if store_root is not None else []
    try:
        roots.append(default_store_root().resolve())
    except UserError:
        pass
    for root in roots:
        if resolved == root or root in resolved.parents:
            raise UserError(f"{name}: {resolved} is inside the run store {root}; only the "
                            "store writes there; choose a path outside it")
    if resolved.is_dir():
        raise UserError(f"{name}: {resolved} is a folder; expected a file name")
    if not resolved.parent.is_dir():  # a mistyped folder is not created behind the user
        raise UserError(f"{name}: cannot write {resolved}: the folder {resolved.parent} "
                        "does not exist")
    return resolved


def _write_out(path: Path, text: str, name: str = "--out") -> None:
    """Atomic: a temporary file in the same folder, then os.replace; on a full disk the
    old file is left whole."""
    from . import io
    try:
        io.atomic_write_text(path, text)
    except OSError as exc:
        raise UserError(f"{name}: cannot write {path} ({exc.strerror or exc})") from None


def _print(obj: Any, as_json: bool, table: str) -> None:
    print(json.dumps(obj, indent=2, default=str) if as_json else table)


def accuracy_table(report: dict) -> str:
    from .metrics.accuracy import ACCURACY_KEYS
    roles = ROLES
    rows = [f"{'':14}" + "".join(f"{r:>11}" for r in roles) + f"{'gap':>9}"]
    for key in ACCURACY_KEYS:
        gap = report["gap_to_oracle"][key]
        rows.append(f"{key:14}" + "".join(f"{format_percent(report['accuracy'][r][key]):>11}" for r in roles)
                    + f"{'n/a' if gap is None else f'{100 * gap:+.1f}':>9}")
    cost = report["cost"]
    speed = "n/a" if cost["speedup"] is None else f"{cost['speedup']:.1f}x"
    oracle = "n/a" if cost["oracle_seconds"] is None else f"{cost['oracle_seconds']:.2f} s"
    rows.append(f"time {cost['seconds']:.2f} s (oracle {oracle}, "
                f"speed-up {speed}) on {cost['device']}")
    return "\n".join(rows)


def _with_imported_references(spec: SetupSpec, store: RunStore, args) -> SetupSpec:
    """The setup with --original-checkpoint and --oracle-checkpoint imported, if given."""
    from .training import import_reference
    for role in ("original", "oracle"):
        path = getattr(args, f"{role}_checkpoint")
        if path is not None:
            spec = import_reference(spec, store, str(path), role)
    return spec


def _add_checkpoint_args(p, original_help: str) -> None:
    p.add_argument("--original-checkpoint", type=_path_type("--original-checkpoint"),
                   metavar="PATH", help=original_help)
    p.add_argument("--oracle-checkpoint", type=_path_type("--oracle-checkpoint"),
                   metavar="PATH", help="use these weights as the retrain oracle instead of "
                   "training it: a model of the setup's architecture trained without the "
                   "forget set, elsewhere (.safetensors, or .pt saved weights-only)")


def cmd_train(args) -> int:
    from .pipeline import train_references
    spec = _with_imported_references(setup_from_args(args), store := _store(args), args)
    refs = train_references(spec, store, Progress(ConsoleProgress(args.quiet)))
    for note in refs.experiment.dataset.notes:  # e.g. unreadable images that were skipped
        print(f"note: {note}", file=sys.stderr)
    out = {"setup": spec.to_dict(), "split": refs.experiment.split.sizes(),
           "original": refs.original.meta, "oracle": refs.oracle.meta}
    table = "\n".join(f"{role:9} test accuracy {format_percent(t.meta['test_accuracy'])}, " + (
        f"imported from {t.meta['imported_from']}" if t.meta.get("imported_from")
        else f"trained in {t.meta['seconds']:.1f} s on {t.meta['device']}")
        for role, t in (("original", refs.original), ("oracle", refs.oracle)))
    _print(out, args.json, f"split {refs.experiment.split.sizes()}\n{table}")
    return 0


def cmd_unlearn(args) -> int:
    from .pipeline import run_unlearning
    if args.plugin is not None:
        from .methods import list_plugins
        if args.plugin not in list_plugins():
            got = repr(args.plugin) if args.plugin.strip() else "an empty string"
            raise UserError(f"--plugin: expected a plug-in name ({', '.join(list_plugins())}), "
                            f"got {got}; drop --plugin to run the method alone")
    store = _store(args)
    name = f"{args.method}+{args.plugin}" if args.plugin else args.method
    spec = RunSpec(setup_from_args(args), MethodSpec(name, parse_params(args.param)))
    run_id = run_unlearning(spec, store, Progress(ConsoleProgress(args.quiet)))
    record = store.get(run_id)
    _print({"id": run_id, "report": record.report}, args.json,
           f"run {run_id}: {record.label}\n{accuracy_table(record.report)}")
    return 0


def cmd_import_run(args) -> int:
    from .pipeline import import_run
    spec = _with_imported_references(setup_from_args(args), store := _store(args), args)
    run_id = import_run(spec, args.checkpoint, store, Progress(ConsoleProgress(args.quiet)),
                        seconds=args.seconds)
    record = store.get(run_id)
    _print({"id": run_id, "report": record.report}, args.json,
           f"run {run_id}: {record.label}\n{accuracy_table(record.report)}")
    return 0


def _record_dict(r) -> dict:
    return {"id": r.id, "kind": r.kind, "status": r.status, "label": r.label,
            "created": r.created, "finished": r.finished, "error": r.error,
            "damage": r.damage}


def cmd_runs(args) -> int:
    if args.action == "repair":
        from .runs import repair
        result = repair(args.store)
        lines = [f"index of {result['root']} rebuilt from its run folders: "
                 f"{len(result['added'])} run(s) added"]
        if result["set_aside"]:
            lines.append(f"the damaged index was set aside as {result['set_aside']}")
        if result["damaged"]:
            lines.append(f"{len(result['damaged'])} run(s) are damaged (see `runs list`): "
                         + ", ".join(result["damaged"]))
        _print(result, args.json, "\n".join(lines))
        return 0
    store = _store(args)
    if args.action == "list":
        records = store.list(status=args.status)
        lines = [f"{r.id:28} {r.status:9} {time.strftime('%Y-%m-%d %H:%M', time.localtime(r.created))}  "
                 f"{r.label}" + (f"  [damaged: {r.damage}]" if r.damage else "")
                 for r in records] or ["no runs"]
        _print([_record_dict(r) for r in records], args.json, "\n".join(lines))
    elif args.action == "show":
        r = store.get(args.run_id)
        body = (accuracy_table(r.report) if r.report else
                f"damaged: {r.damage}" if r.damage else f"error: {r.error}")
        _print({**_record_dict(r), "spec": r.spec, "report": r.report}, args.json,
               f"run {r.id} ({r.status}): {r.label}\n{body}")
    else:
        store.get(args.run_id)
        store.delete(args.run_id)
        _print({"deleted": args.run_id}, args.json, f"deleted {args.run_id}")
    return 0


def cmd_report(args) -> int:
    from .export import run_report_html
    store = _store(args)
    record = store.get(args.run_id)
    if record.status != "done" or record.report is None:
        raise UserError(f"run_id: run {record.id} is {record.status}; only a finished run "
                        "has a report")
    out = _out_path(args.out if args.out is not None else f"report-{record.id}.html",
                    store.root)
    text = run_report_html(record, store.load_arrays(record.id))
    _write_out(out, text)
    _print({"id": record.id, "out": str(out), "bytes": len(text.encode())}, args.json,
           f"wrote {out} ({len(text.encode()) / 1e6:.1f} MB): opens offline in any browser")
    return 0


def cmd_relearn(args) -> int:
    from .pipeline import relearn_of_run
    report = relearn_of_run(_store(args), args.run_id, Progress(ConsoleProgress(args.quiet)))
    table = "\n".join(["step      " + " ".join(f"{s:>5}" for s in range(
        report["params"]["steps"] + 1))] + [f"{role:9} " + " ".join(
            f"{100 * v:5.1f}" for v in curve["scores"]) for role, curve in report["curves"].items()]
        + [report["sentence"]])
    _print(report, args.json, table)
    return 0


def cmd_list(args) -> int:
    if args.what == "datasets":
        from .data import list_datasets
        items = [{"name": d.name, "embedded": d.embedded, "needs_root": d.needs_root,
                  "description": d.description} for d in list_datasets()]
    elif args.what == "models":
        from .models import list_models
        items = [{"name": m.name, "description": m.description} for m in list_models()]
    else:
        from .methods import list_methods, list_plugins
        plugins = list_plugins()
        items = [{"name": m.name, "title": m.title, "summary": m.summary,
                  "plugins": plugins if m.plugin_ready else [],
                  "params": [{"name": p.name, "default": p.default, "allowed": p.allowed(),
                              "help": p.help} for p in m.params]} for m in list_methods()]
    table = "\n".join(f"{i['name']:16} {i.get('description') or i.get('summary')}" for i in items)
    _print(items, args.json, table)
    return 0


def _bench_command(args, suite: str, store, base_from_json: bool, methods, seeds, scenarios) -> str:
    """The command line that reproduces this bench, defaults spelled out."""
    import shlex
    parts = ["python", "-m", "unlearn_core", "bench", "--suite", suite]
    if suite == "sweep":
        parts += ["--method", args.method, *[a for g in args.grid for a in ("--grid", g)]]
    elif suite != "del":
        parts += ["--methods", ",".join(methods)]
    if suite != "poison":
        parts += ["--seeds", str(seeds), "--scenarios", ",".join(scenarios)]
    else:
        parts += ["--seeds", str(seeds)]
    if base_from_json:
        parts += ["--setup-json", str(args.setup_json)]
    if args.device is not None:
        parts += ["--device", args.device]
    if args.retry_failed:
        parts.append("--retry-failed")
    parts += ["--store", str(store.root)]
    if args.out is not None:
        parts += ["--out", str(args.out)]
    return shlex.join(parts)


def _dkvb_bench(args) -> dict:
    """Both DKVB methods and the linear-head baselines on the same frozen encoder, forget
    classes 0, 3 and 7 (the setup is fixed: the claim is about the embedded default)."""
    import shlex
    from . import bench
    from .bench_dkvb import benchmark
    from .runs import RunStore
    seeds = 3 if args.seeds is None else args.seeds
    if seeds < 1:
        raise UserError(f"--seeds: expected an integer >= 1, got {seeds}")
    store = RunStore(_bench_store_root(args))
    device = args.device or "auto"
    parts = ["python", "-m", "unlearn_core", "bench", "--suite", "dkvb", "--seeds", str(seeds),
             "--device", device, "--store", str(store.root)]
    if args.out is not None:
        parts += ["--out", str(args.out)]
    return benchmark(store, seeds=seeds, device=device, command=shlex.join(parts),
                     log=None if args.quiet else bench.stderr_log)


def _readouts_bench(args) -> dict:
    """The readouts suite: the embedded default's original and oracle, seeds 0..N-1."""
    import shlex
    from . import bench
    from .bench_readouts import readouts_suite
    from .runs import RunStore
    seeds = 3 if args.seeds is None else args.seeds
    if seeds < 1:
        raise UserError(f"--seeds: expected an integer >= 1, got {seeds}")
    store = RunStore(_bench_store_root(args))
    device = args.device or "auto"
    parts = ["python", "-m", "unlearn_core", "bench", "--suite", "readouts", "--seeds",
             str(seeds), "--device", device, "--store", str(store.root)]
    if args.out is not None:
        parts += ["--out", str(args.out)]
    return readouts_suite(store, seeds=range(seeds), base=SetupSpec(device=device),
                          command=shlex.join(parts),
                          log=None if args.quiet else bench.stderr_log)


def _evaluate_bench(args) -> dict:
    """evaluate() on the embedded default, --runs times per state; the references come
    from the bench store's checkpoint cache (trained there once)."""
    import shlex
    from . import bench
    from .bench_evaluate import evaluate_suite
    from .runs import RunStore
    store = RunStore(_bench_store_root(args))
    device = args.device or "auto"
    runs = 5 if args.runs is None else args.runs
    parts = ["python", "-m", "unlearn_core", "bench", "--suite", "evaluate", "--runs",
             str(runs), "--device", device, "--store", str(store.root)]
    if args.out is not None:
        parts += ["--out", str(args.out)]
    return evaluate_suite(store, runs=runs, device=device, command=shlex.join(parts),
                          machine=bench.machine_description(device),
                          log=None if args.quiet else bench.stderr_log)


def _bench_store_root(args) -> Path:
    from . import bench
    from .runs import checked_store_path
    given = getattr(args, "store", None)
    if given is not None:
        return checked_store_path(given, "--store").resolve()
    return Path(bench.default_bench_store()).resolve()


def cmd_bench(args) -> int:
    from . import bench, engine
    from .bench_del import DEL_SCENARIOS, del_suite
    from .bench_poison import POISON_METHODS, poison_suite
    from .runs import RunStore
    suite = "quick" if args.quick else (args.suite or "timing")
    if args.quick and args.suite not in (None, "quick"):
        raise UserError(f"--quick: same as --suite quick; cannot combine with --suite {args.suite}")
    misplaced = [flag for flag, value, needs in (
        ("--method", args.method, ("sweep",)), ("--grid", args.grid, ("sweep",)),
        ("--methods", args.methods, ("baselines", "ec", "poison", "gpu")),
        ("--seeds", args.seeds, ("baselines", "sweep", "ec", "dkvb", "poison", "readouts", "del")),
        ("--runs", args.runs, ("evaluate",)),
        ("--scenarios", args.scenarios, ("baselines", "sweep", "ec", "del")),
        ("--setup-json", args.setup_json, ("baselines", "sweep", "ec", "poison", "del")),
        ("--root", args.root, ("gpu",)), ("--precision", args.precision, ("gpu",)))
        if value not in (None, []) and suite not in needs]
    if misplaced:
        raise UserError(f"{misplaced[0]}: not an option of --suite {suite}")
    bench_root = None
    if suite == "gpu":
        if args.device not in (None, "auto", "cuda"):
            raise UserError(f"--device: --suite gpu runs on cuda, not {args.device}")
        out = _out_path(args.out, None) if args.out is not None else None
        result = bench.gpu_bench(args.root, args.precision or "bf16",
                                 bench.parse_methods(args.methods) if args.methods else None)
        if out is not None:
            _write_out(out, result["table"] + "\n")
        print(json.dumps(result, indent=2, default=str) if args.json else result["table"])
        return 0
    if suite not in ("quick", "timing"):
        bench_root = _bench_store_root(args)
    out = _out_path(args.out, bench_root) if args.out is not None else None
    if suite in ("quick", "timing"):
        result = bench.run_bench(quick=suite == "quick", device=args.device or "auto")
        table = result["table"]
    elif suite == "dkvb":
        result = _dkvb_bench(args)
        table = result["table"]
    elif suite == "readouts":
        result = _readouts_bench(args)
        table = result["table"]
    elif suite == "evaluate":
        result = _evaluate_bench(args)
        table = result["table"]
    else:
        if suite == "sweep" and not args.method:
            raise UserError("--method: --suite sweep needs the method to sweep")
        grid = engine.parse_grid(args.method, args.grid) if suite == "sweep" else {}
        if suite == "ec":  # --methods names the bases; each runs alone and with EC
            methods = bench.parse_methods(args.methods or ",".join(bench.EC_BASES))
        elif suite == "poison":
            methods = bench.parse_methods(args.methods or ",".join(POISON_METHODS))
        elif suite == "del":
            methods = ("localized",)
        else:
            methods = bench.parse_methods(args.methods) if suite == "baselines" else (args.method,)
        several = suite in ("baselines", "ec", "poison", "del")
        default_scenarios = {"del": DEL_SCENARIOS}.get(suite, bench.DEFAULT_SCENARIOS
                                                       if several else ("class",))
        scenarios = ("poison",) if suite == "poison" else bench.parse_scenarios(
            args.scenarios or ",".join(default_scenarios))
        seeds = args.seeds if args.seeds is not None else (3 if several else 1)
        if seeds < 1:
            raise UserError(f"--seeds: expected an integer >= 1, got {seeds}")
        base = setup_from_args(argparse.Namespace(setup_json=args.setup_json)) \
            if args.setup_json is not None else SetupSpec()
        if args.device is not None:
            base = SetupSpec.from_dict({**base.to_dict(), "device": args.device})
        if suite == "sweep":
            from .engine import grid_specs
            settings = len(grid_specs(args.method, grid))
            runs = settings * seeds * len(scenarios)
            _confirm(args, runs, f"{runs:,} runs ({settings:,} settings x {seeds} seeds x "
                     f"{len(scenarios)} scenarios)")
        store = RunStore(bench_root)
        command = _bench_command(args, suite, store, args.setup_json is not None, methods,
                                 seeds, scenarios)
        log = None if args.quiet else bench.stderr_log
        try:
            if suite == "del":
                result = del_suite(base, store, seeds=seeds, scenarios=scenarios,
                                   command=command, log=log, retry_failed=args.retry_failed)
            elif suite == "poison":
                result = poison_suite(base, store, methods=methods, seeds=seeds, command=command,
                                      log=log, retry_failed=args.retry_failed)
            elif suite == "ec":
                result = bench.ec_suite(base, store, bases=methods, seeds=seeds,
                                        scenarios=scenarios, command=command, log=log,
                                        retry_failed=args.retry_failed)
            elif suite == "baselines":
                result = bench.baselines(base, store, seeds=seeds, methods=methods,
                                         scenarios=scenarios, command=command, log=log,
                                         retry_failed=args.retry_failed)
            else:
                result = bench.sweep(base, store, args.method, grid, seeds=seeds,
                                     scenarios=scenarios, command=command, log=log,
                                     retry_failed=args.retry_failed)
        except KeyboardInterrupt:
            print(f"\ninterrupted; finished runs are kept in {store.root}: run the same "
                  "command again to continue", file=sys.stderr)
            raise
        table = result["table"]
    if args.out is not None:
        _write_out(out, table if table.endswith("\n") else table + "\n")
    print(json.dumps(result, indent=2, default=str) if args.json else table)
    return 0


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def _confirm(args, runs: int, what: str) -> None:
    """Above engine.CONFIRM_ABOVE_RUNS runs: ask on a terminal, refuse elsewhere, unless
    --yes. The size is printed before anything starts."""
    from .engine import CONFIRM_ABOVE_RUNS
    if runs > CONFIRM_ABOVE_RUNS and not args.yes:
        if not (sys.stdin is not None and sys.stdin.isatty()):
            raise UserError(f"--yes: this sweep has {what}, more than {CONFIRM_ABOVE_RUNS} "
                            "runs; pass --yes to start it, or shrink the grid or the seeds")
        answer = input(f"this sweep: {what}; start more than {CONFIRM_ABOVE_RUNS} runs? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise Cancelled("not started")
    elif not args.quiet:
        print(f"this sweep: {what}", file=sys.stderr)


def cmd_sweep(args) -> int:
    from . import bench, engine
    from .engine import ray_executor
    from .runs import RunStore
    config = engine.load_config(args.config)
    if args.ray is not None:
        ray_executor.import_ray()  # before anything runs: without Ray, say what to install
    # --store, then the TOML's, then the default; an empty --store is refused, not skipped
    store = RunStore(args.store if args.store is not None else config.store)
    out = _out_path(args.out, store.root) if args.out is not None else None
    size = engine.estimate(config, store)
    when = ("" if size["seconds"] is None else
            f", about {_duration(size['seconds'])} at the store's median of "
            f"{size['seconds_per_run']:.0f} s per {config.method} run")
    _confirm(args, size["runs"], f"{size['runs']:,} runs ({len(config.specs):,} settings x "
             f"{len(config.seeds)} seeds; {size['reused']:,} already in the store{when})")
    try:
        result = engine.run_sweep(config, store, log=None if args.quiet else bench.stderr_log,
                                  ray_address=args.ray, retry_failed=args.retry_failed)
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished runs are kept in {store.root}: run the same "
              "command again to continue", file=sys.stderr)
        raise
    if args.out is not None:
        _write_out(out, result["table"])
    _print(result, args.json, result["table"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m unlearn_core",
                     description="Unlearning Lens: train, unlearn and inspect from the command line.")
    parser.add_argument("--store", default=None,
                        help="run store folder (default: $LENS_STORE or ~/.unlearning-lens/store)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train (or load) the original and the retrain oracle")
    _add_checkpoint_args(p, "use these weights (.safetensors, or .pt saved weights-only) as "
                            "the original instead of training it")
    _add_setup_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("unlearn", help="run an unlearning method and store the run")
    p.add_argument("--method", required=True, help="method name (see `list methods`), or your "
                   "own as 'module:function' (a module on the Python path or path/to/file.py)")
    p.add_argument("--plugin", default=None, metavar="NAME",
                   help="add a plug-in to the method's training (ec: Erase at the Core; its "
                        "hyperparameters are prefixed ec_, e.g. --param ec_beta=0.3); same "
                        "as --method METHOD+NAME")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a hyperparameter, repeatable (see `list methods`)")
    _add_setup_args(p)
    p.set_defaults(func=cmd_unlearn)

    p = sub.add_parser("import-run", help="evaluate weights unlearned elsewhere as a run of a "
                       "setup, against its original and oracle (trained if missing)")
    p.add_argument("--checkpoint", required=True, type=_path_type("--checkpoint"), metavar="PATH",
                   help="the unlearned model's weights (.safetensors, or .pt/.pth/.bin saved "
                        "weights-only: never unpickled), for the setup's architecture")
    p.add_argument("--seconds", type=float, default=None,
                   help="how long that unlearning took, if known (else no speed-up is claimed)")
    _add_checkpoint_args(p, "the original these weights were unlearned from, if it is not "
                            "the one the setup trains")
    _add_setup_args(p)
    p.set_defaults(func=cmd_import_run)

    p = sub.add_parser("runs", help="list, show, delete stored runs, or repair the index")
    runs = p.add_subparsers(dest="action", required=True, parser_class=_Parser)
    q = runs.add_parser("list", help="every stored run, newest first")
    q.add_argument("--status", choices=("running", "done", "failed", "cancelled", "damaged"))
    for action in ("show", "delete"):
        q = runs.add_parser(action, help=f"{action} one run")
        q.add_argument("run_id")
    runs.add_parser("repair", help="rebuild the store's index from its run folders (after "
                    "the index was damaged); a damaged index is set aside, not deleted")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("report", help="write a self-contained HTML report of a run")
    p.add_argument("run_id")
    p.add_argument("--out", type=_path_type("--out"), default=None, metavar="FILE.html",
                   help="where to write it (default: report-RUN_ID.html here)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("relearn", help="the relearning test of a run (held-out forget accuracy "
                       "per fine-tuning step, unlearned vs oracle vs original); kept with the run")
    p.add_argument("run_id")
    p.set_defaults(func=cmd_relearn)

    p = sub.add_parser("list", help="list datasets, models or methods")
    p.add_argument("what", choices=("datasets", "models", "methods"))
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "bench", help="benchmarks: timing, baselines over seeds, hyperparameter sweeps",
        description="Suites: quick/timing time each method once in a fresh store; baselines "
                    "runs every method (or --methods) for class and 10% random forgetting over "
                    "--seeds setup seeds; sweep runs --method over the product of --grid values. "
                    "baselines and sweep keep their runs in a persistent store and reuse "
                    "finished ones, so an interrupted bench continues where it stopped. "
                    "See docs/benchmarks/README.md.")
    p.add_argument("--suite", choices=("quick", "timing", "baselines", "sweep", "ec", "dkvb",
                                       "poison", "readouts", "del", "gpu", "evaluate"),
                   default=None, help="default: timing (or quick with --quick); ec: EC alone, "
                   "each base method and base + EC, with per-layer tables; dkvb: the two key-"
                   "masking methods and linear-head baselines on the same frozen encoder, "
                   "forget classes 0, 3, 7; poison: every method that applies on the backdoor "
                   "scenario, with ASR, head refit, trigger readout and verdict tables; "
                   "readouts: how far each readout separates the original from the oracle; "
                   "del: DEL, the random control and SalLoc at ρ 0.05, 0.1, 0.3 with lr and "
                   "epochs tuned per budget on seed 0, the claims read on the other seeds; "
                   "gpu: the original, the oracle and every method on CIFAR-10 (--root) with "
                   "torchvision's ResNet-18 on a CUDA device, in --precision; "
                   "evaluate: evaluate() on the embedded default, --runs times, with its "
                   "per-part profile")
    p.add_argument("--root", default=None, metavar="DIR",
                   help="gpu: the folder holding CIFAR-10 (nothing is downloaded)")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="gpu: training arithmetic (default bf16)")
    p.add_argument("--runs", type=int, default=None,
                   help="evaluate: evaluations per state (default: 5)")
    p.add_argument("--quick", action="store_true", help="same as --suite quick: the original, "
                   "the oracle and each method once (timing also adds digits and a random "
                   "forget set)")
    p.add_argument("--seeds", type=int, default=None,
                   help="setup seeds 0..N-1, each with its own original and oracle "
                        "(default: 3 for baselines, ec and dkvb, 1 for sweep)")
    p.add_argument("--methods", default=None, metavar="A,B,...",
                   help="baselines: comma-separated method names, a plug-in as METHOD+NAME "
                        "(default: every registered one); ec: the base methods (default: "
                        "finetune,neggrad_plus,random_label)")
    p.add_argument("--method", default=None, help="sweep: the method to sweep")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="sweep: values of one hyperparameter, repeatable; the sweep runs "
                        "their Cartesian product")
    p.add_argument("--scenarios", default=None, metavar="class,random,non_iid",
                   help="forget scenarios: class (class 0 or the setup's classes), random "
                        "(10%% IID), non_iid (half of classes 2 and 5, as the DEL paper); "
                        "default: class,random for baselines and ec, class for sweep")
    p.add_argument("--setup-json", type=_path_type("--setup-json"), default=None,
                   help="base setup as JSON (default: the embedded default, mnist5k / "
                        "small_cnn); its forget set and seed are set per scenario and seed")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or mps (default: auto)")
    p.add_argument("--store", default=argparse.SUPPRESS, metavar="DIR",
                   help="run store for baselines and sweep (default: <store root>/bench, "
                        "the store root being $LENS_STORE or ~/.unlearning-lens/store)")
    p.add_argument("--retry-failed", action="store_true",
                   help="rerun failed runs found in the store instead of reusing the failure")
    p.add_argument("--out", type=_path_type("--out"), default=None, metavar="FILE.md",
                   help="also write the markdown table to this file")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="print the rows as JSON (same as the global --json)")
    p.add_argument("--yes", action="store_true",
                   help="sweep: start more than 200 runs without asking")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "sweep", help="a method over a grid of hyperparameters and seeds, from a TOML file",
        description="Runs every point of the TOML's grid on every seed (runs already in the "
                    "store are reused), then groups them by setting: mean ± std over seeds, "
                    "a 95%% t-interval of the avg gap, the best setting marked. See "
                    "examples/sweep-finetune-lr.toml and README (Sweeps).")
    p.add_argument("config", type=_path_type("config"),
                   help="sweep TOML: method, [grid], seeds, [setup], store")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run each (setting, seed) as a Ray task on the cluster at ADDRESS "
                        "(HOST:PORT of its head, or 'auto': the one `ray start` joined on "
                        "this machine); this process alone writes the store; needs "
                        "requirements-ray.txt")
    p.add_argument("--retry-failed", action="store_true",
                   help="rerun failed runs found in the store instead of reusing the failure")
    p.add_argument("--out", type=_path_type("--out"), default=None, metavar="FILE.md",
                   help="also write the markdown table to this file")
    p.add_argument("--yes", action="store_true",
                   help="start a sweep of more than 200 runs without asking")
    p.set_defaults(func=cmd_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        for name, value in vars(args).items():
            # argparse turns a value of "--" (as in --setup-json=--) into a list
            if isinstance(value, list) and name not in ("param", "grid"):
                raise UserError(f"--{name.replace('_', '-')}: expected a value, got "
                                f"{' '.join(map(str, value)) or '--'!r}")
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DivergedError as exc:
        print(f"\nfailed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # The machine, not the input: a full disk, a folder that went away. A run that
        # had started is already recorded as failed; no traceback.
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"\nfailed: {exc.strerror or exc}{where}; runs stored earlier are untouched",
              file=sys.stderr)
        return 1
    except (Cancelled, KeyboardInterrupt):
        print("\ncancelled", file=sys.stderr)
        return 130
