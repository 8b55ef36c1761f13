"""`python -m unlearn_core ...`: train, unlearn, inspect runs, benchmark.

Bad input exits with code 2 and a one-line message that names the parameter; a run
that fails for another reason exits with code 1 and is recorded as failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .config import DataSpec, ForgetSpec, MethodSpec, ModelSpec, RunSpec, SetupSpec, TrainSpec
from .errors import Cancelled, DivergedError, UserError
from .figures import format_percent
from .progress import Progress

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors go through the same exit path as UserError."""

    def error(self, message: str):
        raise UserError(message)


def _add_setup_args(p: argparse.ArgumentParser) -> None:
    d, t, m = DataSpec(), TrainSpec(), ModelSpec()
    g = p.add_argument_group("setup")
    g.add_argument("--setup-json", type=Path, help="read the whole setup from a JSON file "
                   "(as `runs show` prints it); the options below are then ignored")
    g.add_argument("--dataset", default=d.name, help="dataset name (see `list datasets`)")
    g.add_argument("--root", default=None, help="folder of a torchvision dataset or ImageFolder")
    g.add_argument("--download", action="store_true", help="let torchvision download into --root")
    g.add_argument("--image-size", type=int, default=d.image_size, help="ImageFolder resize")
    g.add_argument("--model", default=m.name, help="model name (see `list models`)")
    g.add_argument("--width", type=float, default=m.width, help="channel width multiplier")
    g.add_argument("--forget-kind", default="classes",
                   choices=("classes", "random", "non_iid", "indices"))
    g.add_argument("--forget-classes", default="0", help="comma-separated class ids")
    g.add_argument("--forget-fraction", type=float, default=0.1,
                   help="fraction for kinds random and non_iid")
    g.add_argument("--forget-indices", type=Path, help="CSV of training-set indices (kind indices)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    g.add_argument("--epochs", type=int, default=t.epochs, help="training epochs of the original")
    g.add_argument("--lr", type=float, default=t.lr)
    g.add_argument("--batch-size", type=int, default=t.batch_size)
    g.add_argument("--augment", default="none", choices=("none", "crop", "crop_flip"),
                   help="training augmentation: crop for digits, crop_flip for natural images")


def _int_list(text: str, name: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{name}: expected comma-separated integers, got {text!r}") from None


def setup_from_args(args: argparse.Namespace) -> SetupSpec:
    if args.setup_json is not None:
        try:
            text = args.setup_json.read_text()
        except OSError as exc:
            raise UserError(f"--setup-json: cannot read {args.setup_json} ({exc.strerror})") from None
        return SetupSpec.from_json(text)
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
                          args.forget_fraction, indices),
        model=ModelSpec(args.model, args.width),
        train=TrainSpec(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                        augment=args.augment),
        seed=args.seed, device=args.device)


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """`key=value` pairs; values are read as JSON (numbers, true/false) or else text."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--param: expected key=value, got {pair!r}")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


class _ConsoleProgress:
    """Progress on stderr: a rewritten line on a terminal, a line per 10% otherwise."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.last_decile = -1

    def __call__(self, fraction: float, message: str) -> None:
        if self.quiet:
            return
        if sys.stderr.isatty():
            print(f"\r[{fraction:6.1%}] {message[:100]:<100}", end="", file=sys.stderr, flush=True)
        elif int(fraction * 10) > self.last_decile:
            self.last_decile = int(fraction * 10)
            print(f"[{fraction:6.1%}] {message}", file=sys.stderr, flush=True)


def _store(args):
    from .runs import RunStore
    return RunStore(args.store)


def _print(obj: Any, as_json: bool, table: str) -> None:
    print(json.dumps(obj, indent=2, default=str) if as_json else table)


def accuracy_table(report: dict) -> str:
    from .metrics.accuracy import ACCURACY_KEYS
    roles = ("unlearned", "original", "oracle")
    rows = [f"{'':14}" + "".join(f"{r:>11}" for r in roles) + f"{'gap':>9}"]
    for key in ACCURACY_KEYS:
        gap = report["gap_to_oracle"][key]
        rows.append(f"{key:14}" + "".join(f"{format_percent(report['accuracy'][r][key]):>11}" for r in roles)
                    + f"{'n/a' if gap is None else f'{100 * gap:+.1f}':>9}")
    cost = report["cost"]
    speed = "n/a" if cost["speedup"] is None else f"{cost['speedup']:.1f}x"
    rows.append(f"time {cost['seconds']:.2f} s (oracle {cost['oracle_seconds']:.2f} s, "
                f"speed-up {speed}) on {cost['device']}")
    return "\n".join(rows)


def cmd_train(args) -> int:
    from .pipeline import train_references
    from .training import import_original
    spec = setup_from_args(args)
    store = _store(args)
    if args.original_checkpoint is not None:
        spec = import_original(spec, store, str(args.original_checkpoint))
    refs = train_references(spec, store, Progress(_ConsoleProgress(args.quiet)))
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
    store = _store(args)
    spec = RunSpec(setup_from_args(args), MethodSpec(args.method, parse_params(args.param)))
    run_id = run_unlearning(spec, store, Progress(_ConsoleProgress(args.quiet)))
    record = store.get(run_id)
    _print({"id": run_id, "report": record.report}, args.json,
           f"run {run_id}: {record.label}\n{accuracy_table(record.report)}")
    return 0


def _record_dict(r) -> dict:
    return {"id": r.id, "kind": r.kind, "status": r.status, "label": r.label,
            "created": r.created, "finished": r.finished, "error": r.error}


def cmd_runs(args) -> int:
    store = _store(args)
    if args.action == "list":
        records = store.list(status=args.status)
        lines = [f"{r.id:28} {r.status:9} {time.strftime('%Y-%m-%d %H:%M', time.localtime(r.created))}  "
                 f"{r.label}" for r in records] or ["no runs"]
        _print([_record_dict(r) for r in records], args.json, "\n".join(lines))
    elif args.action == "show":
        r = store.get(args.run_id)
        body = accuracy_table(r.report) if r.report else f"error: {r.error}"
        _print({**_record_dict(r), "spec": r.spec, "report": r.report}, args.json,
               f"run {r.id} ({r.status}): {r.label}\n{body}")
    else:
        store.get(args.run_id)
        store.delete(args.run_id)
        _print({"deleted": args.run_id}, args.json, f"deleted {args.run_id}")
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
        from .methods import list_methods
        items = [{"name": m.name, "title": m.title, "summary": m.summary,
                  "params": [{"name": p.name, "default": p.default, "allowed": p.allowed(),
                              "help": p.help} for p in m.params]} for m in list_methods()]
    table = "\n".join(f"{i['name']:16} {i.get('description') or i.get('summary')}" for i in items)
    _print(items, args.json, table)
    return 0


def cmd_bench(args) -> int:
    from .bench import run_bench
    result = run_bench(quick=args.quick, device=args.device)
    print(json.dumps(result, indent=2) if args.json else result["table"])
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
    p.add_argument("--original-checkpoint", type=Path, metavar="PATH",
                   help="use these weights (.safetensors, or .pt saved weights-only) as the "
                        "original instead of training it")
    _add_setup_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("unlearn", help="run an unlearning method and store the run")
    p.add_argument("--method", required=True, help="method name (see `list methods`)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a hyperparameter, repeatable (see `list methods`)")
    _add_setup_args(p)
    p.set_defaults(func=cmd_unlearn)

    p = sub.add_parser("runs", help="list, show or delete stored runs")
    runs = p.add_subparsers(dest="action", required=True, parser_class=_Parser)
    q = runs.add_parser("list", help="every stored run, newest first")
    q.add_argument("--status", choices=("running", "done", "failed", "cancelled"))
    for action in ("show", "delete"):
        q = runs.add_parser(action, help=f"{action} one run")
        q.add_argument("run_id")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("list", help="list datasets, models or methods")
    p.add_argument("what", choices=("datasets", "models", "methods"))
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("bench", help="time training and unlearning on the embedded default")
    p.add_argument("--quick", action="store_true", help="the original, the oracle and each "
                   "method once (otherwise also digits and a random forget set)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DivergedError as exc:
        print(f"\nfailed: {exc}", file=sys.stderr)
        return 1
    except (Cancelled, KeyboardInterrupt):
        print("\ncancelled", file=sys.stderr)
        return 130
