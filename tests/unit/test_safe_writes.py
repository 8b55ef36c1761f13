"""No write destroys a run: --out inside the store is refused, --out is written
atomically, the store is never "" or "/" by accident, Ctrl-C records "cancelled"."""

import errno

import pytest
import torch

from unlearn_core import cli, io
from unlearn_core.runs import RunStore


def _cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def store_with_run(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "store")
    run_id = store.create("unlearn", {"i": 1}, label="one")
    store.finish(run_id, {"x": 1.5}, weights={"w": torch.ones(3)},
                 arrays={"a": torch.arange(3).numpy()})
    monkeypatch.setattr("unlearn_core.export.run_report_html",
                        lambda record, arrays: "<html>report</html>")
    return store, run_id


def _unchanged(store, run_id):
    again = RunStore(store.root)
    assert again.get(run_id).report == {"x": 1.5}
    assert torch.equal(again.load_weights(run_id)["w"], torch.ones(3))


@pytest.mark.parametrize("target", ["index.sqlite", "runs/{id}/report.json", "runs/{id}",
                                    "cache/new.html", ".", "runs/../index.sqlite"])
def test_report_out_inside_the_store_is_refused(store_with_run, capsys, target):
    store, run_id = store_with_run
    before = store.db_path.read_bytes()
    out = str(store.root / target.format(id=run_id))
    code, _, err = _cli(capsys, "--store", str(store.root), "report", run_id, "--out", out)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: --out:") and "inside the run store" in err
    assert store.db_path.read_bytes() == before
    _unchanged(store, run_id)


def test_report_out_through_a_symlink_into_the_store_is_refused(store_with_run, capsys, tmp_path):
    store, run_id = store_with_run
    (tmp_path / "link").symlink_to(store.run_dir(run_id))
    code, _, err = _cli(capsys, "--store", str(store.root), "report", run_id,
                        "--out", str(tmp_path / "link" / "report.json"))
    assert code == 2 and "inside the run store" in err
    _unchanged(store, run_id)


def test_report_out_is_written_atomically(store_with_run, capsys, tmp_path, monkeypatch):
    store, run_id = store_with_run
    out = tmp_path / "report.html"
    out.write_text("OLD REPORT")

    def full_disk(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io, "_fsync_file", full_disk)
    code, _, err = _cli(capsys, "--store", str(store.root), "report", run_id, "--out", str(out))
    assert code == 2 and "--out: cannot write" in err and "No space left" in err
    assert out.read_text() == "OLD REPORT"  # the old file is whole
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    monkeypatch.undo()
    monkeypatch.setattr("unlearn_core.export.run_report_html", lambda r, a: "<html>new</html>")
    code, _, err = _cli(capsys, "--store", str(store.root), "report", run_id, "--out", str(out))
    assert code == 0, err
    assert out.read_text() == "<html>new</html>"


def test_sweep_and_bench_out_inside_the_store_are_refused_before_running(tmp_path, capsys):
    store = RunStore(tmp_path / "store")
    toml = tmp_path / "s.toml"
    toml.write_text('method = "finetune"\nseeds = 1\n[grid]\nlr = [0.01]\n')
    code, _, err = _cli(capsys, "--store", str(store.root), "sweep", str(toml),
                        "--out", str(store.root / "index.sqlite"))
    assert code == 2 and "--out:" in err and "inside the run store" in err
    assert store.list() == []
    code, _, err = _cli(capsys, "bench", "--suite", "sweep", "--method", "finetune",
                        "--grid", "lr=0.01", "--store", str(store.root),
                        "--out", str(store.root / "runs" / "x.md"))
    assert code == 2 and "--out:" in err and "inside the run store" in err
    assert store.list() == []


@pytest.mark.parametrize("value, says", [("", "--store: expected a path, got an empty string"),
                                         ("   ", "--store: expected a path"),
                                         ("/", "--store: the run store cannot be the file-system root"),
                                         ("a\x00b", "--store: the path contains a NUL")])
def test_store_is_never_empty_or_root_by_accident(tmp_path, capsys, monkeypatch, value, says):
    monkeypatch.chdir(tmp_path)
    code, _, err = _cli(capsys, "--store", value, "runs", "list")
    assert code == 2 and says in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # the working directory did not become a store


def test_sweep_store_empty_flag_is_refused_not_skipped(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    toml = tmp_path / "s.toml"
    toml.write_text('method = "finetune"\nseeds = 1\n[grid]\nlr = [0.01]\n')
    code, _, err = _cli(capsys, "--store", "", "sweep", str(toml))
    assert code == 2 and "--store: expected a path" in err


@pytest.mark.parametrize("home", ["", "/", None])
def test_empty_or_missing_home_is_a_clear_message(tmp_path, capsys, monkeypatch, home):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LENS_STORE")
    if home is None:
        monkeypatch.delenv("HOME", raising=False)
        monkeypatch.setattr("pathlib.Path.home", lambda: (_ for _ in ()).throw(RuntimeError()))
    else:
        monkeypatch.setenv("HOME", home)
    code, _, err = _cli(capsys, "runs", "list")
    assert code == 2 and err.count("\n") == 1
    assert "HOME" in err and "LENS_STORE" in err and "--store" in err
    assert list(tmp_path.iterdir()) == []


def test_tilde_without_home_names_the_flag(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HOME", raising=False)
    code, _, err = _cli(capsys, "--store", "~/store", "runs", "list")
    assert code == 2 and "--store:" in err and "HOME is not set" in err


def test_ctrl_c_records_the_run_as_cancelled(shared_store, tiny_refs, capsys, monkeypatch):
    from conftest import TINY_CLI_ARGS

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("unlearn_core.pipeline.evaluate", interrupted)
    code, _, err = _cli(capsys, "--store", str(shared_store.root), "unlearn",
                        "--method", "finetune", "--param", "epochs=1", *TINY_CLI_ARGS)
    assert code == 130 and "cancelled" in err
    record = shared_store.list(kind="unlearn")[0]
    assert record.status == "cancelled"
    assert record.error == "cancelled (interrupted with Ctrl-C)"
