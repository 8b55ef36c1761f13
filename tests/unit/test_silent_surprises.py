"""Flags and fields that used to be ignored without a word are errors naming both;
checkpoints with non-float or non-finite weights are refused at import naming the
tensor; a big sweep says its size and asks before it starts."""

import pytest
import torch

from conftest import TINY_CLI_ARGS
from unlearn_core import cli, io
from unlearn_core.errors import UserError
from unlearn_core.runs import RunStore


def _cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "idx.csv"
    path.write_text("1\n2\n")
    return str(path)


@pytest.mark.parametrize("extra, message", [
    (["--forget-indices", "{csv}"], "--forget-indices: only used with --forget-kind indices, but "
                                    "no --forget-kind (the default is classes) ignores it"),
    (["--forget-fraction", "0.2"], "--forget-fraction: only used with --forget-kind random or "
                                   "non_iid, but no --forget-kind (the default is classes)"),
    (["--forget-kind", "random", "--forget-indices", "{csv}"],
     "--forget-indices: only used with --forget-kind indices, but --forget-kind random ignores it"),
    (["--forget-kind", "indices", "--forget-indices", "{csv}", "--forget-fraction", "0.5"],
     "--forget-fraction: only used with --forget-kind random or non_iid, but --forget-kind indices"),
    (["--root", "/tmp"], "--root: dataset 'digits' is built in (embedded) and reads no folder"),
    (["--download"], "--download: dataset 'digits' is built in"),
    (["--param", "lr=0.1", "--param", "lr=0.2"], "--param lr: given twice"),
    (["--plugin", ""], "--plugin: expected a plug-in name"),
    (["--plugin", "  "], "--plugin: expected a plug-in name"),
])
def test_ignored_or_conflicting_flags_are_errors_naming_them(tmp_path, capsys, csv, extra, message):
    store = RunStore(tmp_path / "store")
    argv = ["--store", str(store.root), "unlearn", "--method", "finetune", *TINY_CLI_ARGS,
            *[a.format(csv=csv) for a in extra]]
    code, _, err = _cli(capsys, *argv)
    assert code == 2 and err.count("\n") == 1, err
    assert message in err
    assert store.list() == [] and list(store.cache_dir.iterdir()) == []  # nothing ran


def test_the_flags_a_kind_uses_still_work(tmp_path, capsys, csv):
    from unlearn_core.cli import build_parser, setup_from_args
    args = build_parser().parse_args(["unlearn", "--method", "finetune", *TINY_CLI_ARGS,
                                      "--forget-kind", "random", "--forget-fraction", "0.3"])
    assert setup_from_args(args).forget.fraction == 0.3
    args = build_parser().parse_args(["unlearn", "--method", "finetune", *TINY_CLI_ARGS,
                                      "--forget-kind", "indices", "--forget-indices", csv])
    assert setup_from_args(args).forget.indices == (1, 2)
    args = build_parser().parse_args(["unlearn", "--method", "finetune", *TINY_CLI_ARGS])
    assert setup_from_args(args).forget.kind == "classes"


def test_an_empty_grid_table_is_an_error(tmp_path, capsys):
    toml = tmp_path / "s.toml"
    toml.write_text('method = "finetune"\nseeds = 1\n[grid]\n')
    code, _, err = _cli(capsys, "--store", str(tmp_path / "store"), "sweep", str(toml))
    assert code == 2 and "grid: the [grid] table is empty" in err


def test_a_big_sweep_says_its_size_and_needs_yes(tmp_path, capsys):
    toml = tmp_path / "s.toml"
    values = ", ".join(str(round(0.001 * (i + 1), 4)) for i in range(101))
    toml.write_text(f'method = "finetune"\nseeds = 2\n[grid]\nlr = [{values}]\n')
    store = RunStore(tmp_path / "store")
    code, _, err = _cli(capsys, "--store", str(store.root), "sweep", str(toml))
    assert code == 2
    assert err == ("error: --yes: this sweep has 202 runs (101 settings x 2 seeds; 0 already "
                   "in the store), more than 200 runs; pass --yes to start it, or shrink the "
                   "grid or the seeds\n")
    assert store.list() == []
    code, _, err = _cli(capsys, "bench", "--suite", "sweep", "--method", "finetune",
                        "--grid", "lr=" + values.replace(" ", ""), "--seeds", "2",
                        "--store", str(store.root))
    assert code == 2 and "--yes: this sweep has 202 runs" in err


def test_a_big_sweep_starts_after_a_yes_on_a_terminal(tmp_path, capsys, monkeypatch):
    toml = tmp_path / "s.toml"
    values = ", ".join(str(round(0.001 * (i + 1), 4)) for i in range(201))
    toml.write_text(f'method = "finetune"\nseeds = 1\n[grid]\nlr = [{values}]\n')
    started = []
    monkeypatch.setattr("unlearn_core.engine.run_sweep",
                        lambda *a, **k: started.append(1) or {"table": "t"})
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    answers = iter(["n", "y"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    code, _, err = _cli(capsys, "--store", str(tmp_path / "store"), "sweep", str(toml))
    assert code == 130 and started == []
    code, _, err = _cli(capsys, "--store", str(tmp_path / "store"), "sweep", str(toml))
    assert code == 0 and started == [1]
    code, _, err = _cli(capsys, "--store", str(tmp_path / "store"), "sweep", str(toml), "--yes")
    assert code == 0 and started == [1, 1]


@pytest.mark.parametrize("change, message", [
    (lambda sd, k: sd.__setitem__(k, sd[k].to(torch.bool)),
     "has dtype bool; the model expects floating-point"),
    (lambda sd, k: sd.__setitem__(k, sd[k].to(torch.int8)),
     "has dtype int8; the model expects floating-point"),
    (lambda sd, k: sd.__setitem__(k, sd[k].to(torch.complex64)), "has dtype complex64"),
    (lambda sd, k: sd[k].view(-1).__setitem__(0, float("nan")), "holds 1 NaN or infinite value(s)"),
    (lambda sd, k: sd[k].view(-1).__setitem__(slice(0, 2), float("inf")), "holds 2 NaN or infinite value(s)"),
])
def test_checkpoints_with_non_float_or_non_finite_weights_are_refused_naming_the_tensor(
        tmp_path, capsys, change, message):
    from conftest import tiny_setup
    from unlearn_core.training import prepare
    exp = prepare(tiny_setup())
    model = exp.new_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    key = next(k for k, v in state.items() if v.is_floating_point() and v.dim() > 1)
    change(state, key)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    with pytest.raises(UserError, match=f"tensor {key} "):
        io.load_into_model(exp.new_model(), state, str(path))
    store = RunStore(tmp_path / "store")
    code, _, err = _cli(capsys, "--store", str(store.root), "train", "--original-checkpoint",
                        str(path), *TINY_CLI_ARGS)
    assert code == 2 and err.count("\n") == 1 and f"tensor {key} " in err and message in err
    assert [p for p in store.cache_dir.iterdir()] == []
