"""Property-based tests (Hypothesis) of every input the lens reads: CLI flags and
`--param` values, setup JSON, sweep TOML, index CSV and checkpoint files.

The property, for every generated input: the command succeeds (here: reaches the point
where training or the sweep would start, which is stubbed out to keep the file fast) or
exits with code 2 and ONE line `error: ...` that names the field; never a traceback.
And the run stored before the fuzzing still loads with the same report and weights
after every example.

Bounded: a few dozen examples per test (settings below), deadline off, so the file
runs in well under a minute on 2 cores. Inputs that once failed are kept as @example
regression cases. The number of inputs tried is printed at the end of the module
(`fuzzed inputs: ...`, visible with `pytest -s` or in the terminal summary) and written to
test-output/fuzz-count.json.
"""

from __future__ import annotations

import contextlib
import io as _io
import json
import os
import string
from collections import Counter
from pathlib import Path
from unittest import mock

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import TINY_CLI_ARGS, tiny_setup
from unlearn_core import cli
from unlearn_core.runs import RunStore

# Several seconds or more on 2 cores: left out of `make test-fast`.
pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=int(os.environ.get("LENS_FUZZ_EXAMPLES", "40")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.filter_too_much],
                database=None)
TRIED: Counter = Counter()
REPORT = {"accuracy": {"forget_train": 0.25, "test": 0.875}, "mia": [0.5, None]}
WEIGHTS = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}


class Accepted(Exception):
    """Raised where training (or a sweep) would start: the input passed every check."""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store holding one finished run, which every example must leave loadable."""
    root = tmp_path_factory.mktemp("fuzz")
    store = RunStore(root / "store")
    run_id = store.create("unlearn", {"i": 0}, label="stored before")
    store.finish(run_id, REPORT, weights=WEIGHTS, arrays={"a": torch.ones(3).numpy()})
    yield {"root": root, "store": store, "run_id": run_id}
    out = Path(__file__).resolve().parents[2] / "test-output"
    out.mkdir(exist_ok=True)
    (out / "fuzz-count.json").write_text(json.dumps({**TRIED, "total": sum(TRIED.values())},
                                                    indent=2) + "\n")
    print(f"\nfuzzed inputs: {sum(TRIED.values())} ({dict(TRIED)})")


def _stop_at_training(spec, store, progress=None):
    from unlearn_core.training import prepare
    prepare(spec)  # data, split and model checks happen here, before any training
    raise Accepted


def _run_cli(world, argv: list[str]) -> tuple[str, str]:
    """("accepted" | "ok" | "error", message); fails the test on a traceback or on an
    error that is not exactly one line."""
    err, out = _io.StringIO(), _io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), \
            mock.patch("unlearn_core.pipeline.train_references", _stop_at_training), \
            mock.patch("unlearn_core.engine.run_sweep", side_effect=Accepted):
        try:
            code = cli.main(["--quiet", "--store", str(world["store"].root), *argv])
        except Accepted:
            return "accepted", ""
    message = err.getvalue()
    assert code in (0, 2), f"exit {code}: {message}"
    if code == 0:
        return "ok", ""
    assert message.startswith("error: ") and message.endswith("\n"), message
    assert message.count("\n") == 1, f"more than one line: {message!r}"
    assert "Traceback" not in message
    return "error", message[len("error: "):-1]


def _stored_run_unchanged(world) -> None:
    store = RunStore(world["store"].root)
    record = store.get(world["run_id"])
    assert record.status == "done" and record.report == REPORT
    assert torch.equal(store.load_weights(world["run_id"])["w"], WEIGHTS["w"])


def _names(message: str, *fields: str) -> None:
    assert any(f in message for f in fields), f"no field named in {message!r}; expected one of {fields}"


# --- strategies ---------------------------------------------------------------------

HUGE = st.sampled_from(["1" + "0" * 400, "1" + "0" * 5000, "1e400", "-1e400", "9" * 30,
                        "1.7976931348623157e309", "0." + "0" * 400 + "1", "NaN", "-Infinity"])
NASTY_TEXT = st.sampled_from(["", " ", "\x00", "a\x00b", "~", "~/x", "~nosuchuser/x", "\udcff",
                              "é", "\u202e", "[" * 200, "{" * 50, "null", "true", "[]", "{}",
                              "[1, 2]", '"x"', "1,2", "--", "-1", "0", "/", "."])
VALUE_TEXT = st.one_of(HUGE, NASTY_TEXT, st.integers(-10**6, 10**6).map(str),
                       st.floats(allow_nan=True, allow_infinity=True).map(repr),
                       st.text(max_size=12))
METHODS = ("finetune", "neggrad_plus", "salun", "lau", "random_label")


def _param_keys():
    from unlearn_core.methods import get_method
    return sorted({p.name for m in METHODS for p in get_method(m).params})


# --- CLI --param --------------------------------------------------------------------

@FUZZ
@given(method=st.sampled_from(METHODS),
       pairs=st.lists(st.tuples(st.one_of(st.sampled_from(_param_keys()), st.text(max_size=6)),
                                VALUE_TEXT), max_size=3))
@example(method="finetune", pairs=[("lr", "1" + "0" * 5000)])
@example(method="finetune", pairs=[("lr", "1e400")])
@example(method="finetune", pairs=[("lr", "[" * 5000 + "]" * 5000)])
@example(method="finetune", pairs=[("lr", "0.1"), ("lr", "0.2")])
@example(method="lau", pairs=[("layer_weights", "1e400")])
@example(method="finetune", pairs=[("epochs", "-Infinity")])  # int(-inf): OverflowError
def test_cli_param_values(world, method, pairs):
    TRIED["--param"] += 1
    argv = ["unlearn", "--method", method, *TINY_CLI_ARGS]
    for key, value in pairs:
        argv += ["--param", f"{key}={value}"]
    outcome, message = _run_cli(world, argv)
    if outcome == "error":
        _names(message, "--param", "method.params", "method.name", *(k for k, _ in pairs))
    _stored_run_unchanged(world)


# --- CLI flags ------------------------------------------------------------------------

FLAGS = {"--dataset": st.sampled_from(["digits", "mnist5k", "imagefolder", "cifar10", "nope", ""]),
         "--root": VALUE_TEXT, "--image-size": VALUE_TEXT, "--model": st.sampled_from(
             ["small_cnn", "dkvb", "vit", "x", ""]), "--width": VALUE_TEXT,
         "--forget-kind": st.sampled_from(["classes", "random", "non_iid", "indices", "x"]),
         "--forget-classes": st.one_of(VALUE_TEXT, st.sampled_from(["0", "1,2", "0,1,2,3,4,5,6,7,8,9"])),
         "--forget-fraction": VALUE_TEXT, "--forget-indices": VALUE_TEXT, "--seed": VALUE_TEXT,
         "--device": st.sampled_from(["cpu", "auto", "tpu", ""]), "--epochs": VALUE_TEXT,
         "--lr": VALUE_TEXT, "--batch-size": VALUE_TEXT, "--codebooks": VALUE_TEXT,
         "--augment": st.sampled_from(["none", "crop", "x"]), "--setup-json": VALUE_TEXT,
         "--plugin": st.sampled_from(["", " ", "ec", "nope"])}


@FUZZ
@given(command=st.sampled_from(["train", "unlearn"]),
       flags=st.dictionaries(st.sampled_from(sorted(FLAGS)), st.just(None), max_size=4).flatmap(
           lambda chosen: st.fixed_dictionaries({k: FLAGS[k] for k in chosen})),
       switches=st.lists(st.sampled_from(["--download", "--paper-scale"]), max_size=1))
@example(command="train", flags={"--root": "a\x00b", "--dataset": "imagefolder"}, switches=[])
@example(command="train", flags={"--forget-fraction": "0.2"}, switches=[])
@example(command="train", flags={"--root": "/tmp", "--dataset": "digits"}, switches=[])
@example(command="unlearn", flags={"--plugin": ""}, switches=[])
@example(command="train", flags={"--seed": "9" * 30}, switches=[])
@example(command="train", flags={"--setup-json": "--"}, switches=[])
def test_cli_setup_flags(world, command, flags, switches):
    TRIED["CLI flags"] += 1
    argv = [command, *(["--method", "finetune"] if command == "unlearn" else []),
            "--epochs", "1", "--device", "cpu", "--dataset", "digits"]
    for flag, value in flags.items():
        if flag == "--plugin" and command != "unlearn":
            continue
        argv += [f"{flag}={value}"]  # "=": a value starting with "-" stays a value
    argv += switches
    outcome, message = _run_cli(world, argv)
    if outcome == "error":
        _names(message, "--", "argument", "data.", "forget.", "model.", "train.", "seed",
               "device", "run store", "checkpoint")
    _stored_run_unchanged(world)


# --- setup JSON -----------------------------------------------------------------------

SETUP_KEYS = ["data", "forget", "model", "train", "seed", "device", "original", "name", "root",
              "kind", "classes", "fraction", "indices", "epochs", "lr", "batch_size", "width",
              "bottleneck", "image_size", "download", "augment", "x"]
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
                      st.sampled_from(["digits", "classes", "random", "indices", "small_cnn",
                                       "cpu", "a\x00b", "~", "~/x"]))
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(SETUP_KEYS), inner, max_size=3)),
    max_leaves=12)


def _raw_json_mutation(base: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=40),
        st.integers(0, len(base)).map(lambda n: base[:n]),  # truncated
        st.sampled_from([b"\xff\xfe" + base, base.replace(b'"', b"\xe9", 1),
                         '{"seed": 1}'.encode("utf-16"), b"[" * 100_000, b'{"a":' * 40 + b"1" + b"}" * 40,
                         b'{"seed": 1' + b"0" * 5000 + b"}", b'{"train": {"lr": 1e400}}',
                         b'{"train": {"lr": -1e999}}', b'{"seed": NaN}', b"null", b"[]", b'""']))


BASE_SETUP = json.dumps(tiny_setup().to_dict()).encode()


@FUZZ
@given(payload=st.one_of(JSON_VALUE.map(lambda v: json.dumps(v).encode()),
                         st.dictionaries(st.sampled_from(["data", "forget", "model", "train"]),
                                         JSON_VALUE, max_size=2).map(
                             lambda d: json.dumps({**tiny_setup().to_dict(), **d}).encode()),
                         _raw_json_mutation(BASE_SETUP)))
@example(payload=b"[" * 100_000 + b"]" * 100_000)
@example(payload=b'{"seed": 1' + b"0" * 5000 + b"}")
@example(payload=b'{"train": {"lr": 1e400}}')
@example(payload=b'{"data": {"name": "cifar10", "root": "a\\u0000b"}}')
@example(payload=b'{"seed": "\xff"}')
def test_setup_json(world, payload):
    TRIED["setup JSON"] += 1
    path = world["root"] / "setup.json"
    path.write_bytes(payload)
    outcome, message = _run_cli(world, ["train", "--setup-json", str(path)])
    if outcome == "error":
        _names(message, "--setup-json", "data", "forget", "model", "train", "seed", "device",
               "original", "SetupSpec", "Spec")
    _stored_run_unchanged(world)


# --- sweep TOML -----------------------------------------------------------------------

TOML_VALUE = st.one_of(
    st.integers(-10, 10).map(str), st.sampled_from(["1" + "0" * 400, "1e400", "inf", "nan",
                                                    "0.01", "2", '"abc"', "[]", "[[0.1]]",
                                                    "{}", '"a\\u0000b"', "true", "-1", "1" + "0" * 30]),
    st.lists(st.sampled_from(["0.01", "0.1", "1", "2", "1e400", '"x"', "[1]", "1" + "0" * 40]),
             max_size=3).map(lambda v: "[" + ", ".join(v) + "]"))


METHOD_VALUES = ['"finetune"', '"lau"', "5", '"nope"', "[]"]
STORE_VALUES = ['""', '"/"', "5", '"a\\u0000b"', '"~nosuchuser/s"']


@st.composite
def sweep_toml(draw) -> bytes:
    lines = []
    if draw(st.booleans()):
        lines.append("method = " + draw(st.sampled_from(METHOD_VALUES)))
    if draw(st.booleans()):
        lines.append(f"seeds = {draw(TOML_VALUE)}")
    if draw(st.booleans()):
        lines.append("store = " + draw(st.sampled_from(STORE_VALUES)))
    if draw(st.booleans()):
        lines.append("[grid]")
        for key in draw(st.lists(st.sampled_from(["lr", "epochs", "batch_size", "layer_weights", "x"]),
                                 max_size=3, unique=True)):
            lines.append(f"{key} = {draw(TOML_VALUE)}")
    if draw(st.booleans()):
        lines.append("[setup.train]")
        lines.append(f"{draw(st.sampled_from(['lr', 'epochs', 'x']))} = {draw(TOML_VALUE)}")
    text = "\n".join(lines) + "\n"
    data = text.encode()
    mutation = draw(st.sampled_from(["none", "none", "truncate", "latin1", "deep"]))
    if mutation == "truncate":
        data = data[:draw(st.integers(0, len(data)))]
    elif mutation == "latin1":
        data = data.replace(b"=", b"= \xff", 1)
    elif mutation == "deep":
        data += b"deep = " + b"[" * 3000 + b"]" * 3000 + b"\n"
    return data


@FUZZ
@given(data=sweep_toml())
@example(data=b'method = "finetune"\nstore = "a\\u0000b"\n')
@example(data=b'method = "finetune"\nstore = ""\n')
@example(data=b'method = "finetune"\nseeds = 1\n[grid]\n')
@example(data=b'method = "finetune"\nseeds = 1\n[grid]\nlr = [1' + b"0" * 400 + b"]\n")
@example(data=b'method = "finetune"\nseeds = 1\n[grid]\nlr = [1e400]\n')
@example(data=b'method = "finetune"\nx = ' + b"[" * 5000 + b"]" * 5000 + b"\n")
@example(data=b'method = "finetune"\n[' + b".".join([b"a"] * 3000) + b"]\n")
@example(data=b'method = "\xff"\n')
def test_sweep_toml(world, data):
    TRIED["sweep TOML"] += 1
    path = world["root"] / "sweep.toml"
    path.write_bytes(data)
    # No --store: the TOML's own store key is read too (and refused when bad).
    err = _io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(_io.StringIO()), \
            mock.patch("unlearn_core.engine.run_sweep", side_effect=Accepted), \
            mock.patch.dict(os.environ, {"LENS_STORE": str(world["store"].root)}):
        try:
            code = cli.main(["--quiet", "sweep", str(path), "--yes"])
        except Accepted:
            code = None
    message = err.getvalue()
    if code is not None:
        assert code == 2 and message.count("\n") == 1 and message.startswith("error: "), message
        _names(message, "config", "sweep.toml", "method", "grid", "seeds", "store", "setup")
    _stored_run_unchanged(world)


# --- index CSV --------------------------------------------------------------------------

CSV_TOKEN = st.one_of(st.integers(-5, 2000).map(str), HUGE, st.sampled_from(
    ["index", "idx,label", "1.5", "1e3", "", " ", "\ufeff", "\x00", "٣", "0x10", "+1", '"7"']),
    st.text(string.printable, max_size=5))


@FUZZ
@given(data=st.one_of(
    st.lists(st.lists(CSV_TOKEN, min_size=1, max_size=3), max_size=5).map(
        lambda rows: "\n".join(",".join(r) for r in rows).encode()),
    st.binary(max_size=30), st.just(b"\xff\xfe1\n2\n")))
@example(data=b"1" + b"0" * 5000)
@example(data=b"1\n2\n3\n")
def test_index_csv(world, data):
    TRIED["index CSV"] += 1
    path = world["root"] / "indices.csv"
    path.write_bytes(data)
    outcome, message = _run_cli(world, ["train", *TINY_CLI_ARGS, "--forget-kind", "indices",
                                        "--forget-indices", str(path)])
    if outcome == "error":
        _names(message, "forget.indices", "--forget-indices")
    _stored_run_unchanged(world)


# --- checkpoint files ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_state():
    from unlearn_core.training import prepare
    return {k: v.clone() for k, v in prepare(tiny_setup()).new_model().state_dict().items()}


DTYPES = [torch.bool, torch.int8, torch.int64, torch.complex64, torch.float16, torch.float64,
          torch.bfloat16, torch.uint8]


@st.composite
def checkpoint(draw, state):
    state = {k: v.clone() for k, v in state.items()}
    keys = sorted(state)
    for change in draw(st.lists(st.sampled_from(["dtype", "nan", "inf", "shape", "drop",
                                                 "extra", "none"]), max_size=2)):
        key = draw(st.sampled_from(keys))
        if key not in state:
            continue
        if change == "dtype":
            state[key] = state[key].to(draw(st.sampled_from(DTYPES)))
        elif change in ("nan", "inf") and state[key].is_floating_point() and state[key].numel():
            state[key].view(-1)[draw(st.integers(0, state[key].numel() - 1))] = (
                float("nan") if change == "nan" else -float("inf"))
        elif change == "shape":
            state[key] = torch.zeros(*[s + 1 for s in state[key].shape] or [2])
        elif change == "drop":
            del state[key]
        elif change == "extra":
            state["extra.weight"] = torch.zeros(2)
    suffix = draw(st.sampled_from([".safetensors", ".pt", ".bin", ".txt"]))
    buffer = _io.BytesIO()
    if suffix == ".safetensors":
        import safetensors.torch
        data = safetensors.torch.save({k: v.contiguous() for k, v in state.items()})
    else:
        torch.save(state, buffer)
        data = buffer.getvalue()
    cut = draw(st.sampled_from(["whole", "whole", "truncated", "garbage"]))
    if cut == "truncated":
        data = data[:draw(st.integers(0, max(0, len(data) - 1)))]
    elif cut == "garbage":
        data = draw(st.binary(max_size=64))
    return suffix, data


def test_checkpoint_files(world, good_state):
    @FUZZ
    @given(file=checkpoint(good_state))
    @example(file=(".pt", b"q"))  # the unpickler's IndexError was a traceback
    def check(file):
        TRIED["checkpoint"] += 1
        suffix, data = file
        path = world["root"] / f"ckpt{suffix}"
        path.write_bytes(data)
        outcome, message = _run_cli(world, ["train", *TINY_CLI_ARGS, "--original-checkpoint",
                                            str(path)])
        if outcome == "error":
            _names(message, "checkpoint", "--original-checkpoint")
        _stored_run_unchanged(world)

    check()
