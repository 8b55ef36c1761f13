"""Bad inputs through the CLI and the library, the cases no other test file covers (see
docs/robustness.md for the whole catalogue and the tests already elsewhere).

CLI: exit code 2, a one-line message naming the parameter, no traceback. Library: a
UserError with the same message. After each, the run stored before still loads.
"""

import os

import pytest

from conftest import (TINY_CLI_ARGS, assert_run_intact, imagefolder_with_corrupt_images,
                      store_with_one_run, tiny_setup)
from unlearn_core import runs
from unlearn_core.cli import main
from unlearn_core.config import DataSpec, ForgetSpec, TrainSpec
from unlearn_core.data import load_dataset
from unlearn_core.errors import UserError
from unlearn_core.io import save_state_dict
from unlearn_core.methods import get_method
from unlearn_core.runs import RunStore
from unlearn_core.training import import_original


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    return store_with_one_run(tmp_path_factory.mktemp("bad-inputs") / "store")


def assert_nothing_lost(stored) -> None:
    assert [r.id for r in stored[0].list()] == [stored[1]]
    assert_run_intact(*stored)


def cli(capsys, store: RunStore, *args: str) -> tuple[int, str]:
    code = main(["--store", str(store.root), "--quiet", *args])
    return code, capsys.readouterr().err


CLI_CASES = [
    # (arguments, what the message must say)
    (["unlearn", "--method", "finetune", "--forget-classes", ","],
     "forget.classes: kind 'classes' needs at least one class"),
    (["unlearn", "--method", "finetune", "--param", "lr=NaN"],
     "method.params.lr: expected a finite number, got nan"),
    (["unlearn", "--method", "finetune", "--param", "lr=-Infinity"],
     "method.params.lr: expected a finite number, got -inf"),
    (["unlearn", "--method", "finetune", "--lr", "nan"], "train.lr: expected a number in (0, 10]"),
    (["train", "--lr", "inf"], "train.lr: expected a number in (0, 10], got inf"),
    (["train", "--width", "nan"], "model.width: expected a number in (0, 8]"),
    (["train", "--forget-kind", "random", "--forget-fraction", "nan"],
     "forget.fraction: expected a number in (0, 1), got nan"),
    (["unlearn", "--method", "finetune", "--forget-kind", "random", "--forget-fraction", "1"],
     "forget.fraction: expected a number in (0, 1)"),
    (["train", "--forget-classes", "-1"], "forget.classes: expected non-negative integers"),
    # Found by the fuzzing of CLI flags (test_fuzz_inputs): the message named method.name.
    (["unlearn", "--method", "finetune", "--plugin", "nope"],
     "--plugin: expected a plug-in name (ec), got 'nope'"),
    (["runs", "show", "../../etc"], "run_id: expected a run id"),
    (["runs", "delete", "../index.sqlite"], "run_id: expected a run id"),
]


@pytest.mark.parametrize("args, message", CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_cli_bad_input_exits_2_names_the_parameter_and_loses_nothing(stored, capsys, args,
                                                                     message):
    tiny = TINY_CLI_ARGS if args[0] in ("train", "unlearn") else []
    code, err = cli(capsys, stored[0], *args, *tiny)
    assert code == 2 and message in err and "Traceback" not in err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert_nothing_lost(stored)


def test_cli_index_csv_out_of_range_or_empty(stored, capsys, tmp_path):
    for text, message in (("3\n99999\n", "forget.indices: index 99999 is out of range"),
                          ("", "forget.indices: the file holds no indices"),
                          ("index\n1;2\n", "forget.indices: line 2")):
        csv = tmp_path / "forget.csv"
        csv.write_text(text)
        code, err = cli(capsys, stored[0], "train", *TINY_CLI_ARGS, "--forget-kind", "indices",
                        "--forget-indices", str(csv))
        assert code == 2 and message in err and "Traceback" not in err
    code, err = cli(capsys, stored[0], "train", *TINY_CLI_ARGS, "--forget-kind", "indices",
                    "--forget-indices", str(tmp_path / "absent.csv"))
    assert code == 2 and "--forget-indices: cannot read" in err
    assert_nothing_lost(stored)


def test_cli_checkpoint_that_is_a_folder_or_missing(stored, capsys, tmp_path):
    code, err = cli(capsys, stored[0], "train", *TINY_CLI_ARGS, "--original-checkpoint",
                    str(tmp_path))
    assert code == 2 and "is a folder; expected a weights file (.safetensors" in err
    code, err = cli(capsys, stored[0], "train", *TINY_CLI_ARGS, "--original-checkpoint",
                    str(tmp_path / "absent.pt"))
    assert code == 2 and "file not found" in err
    assert_nothing_lost(stored)


def test_cli_run_store_on_a_read_only_path(stored, capsys, monkeypatch, tmp_path):
    # Root ignores permission bits, so read-only is what os.access reports.
    monkeypatch.setattr(runs.os, "access", lambda path, mode: False)
    code = main(["--store", str(tmp_path / "read-only"), "runs", "list"])
    err = capsys.readouterr().err
    assert code == 2 and "not writable; choose a writable folder with LENS_STORE" in err
    monkeypatch.undo()
    assert_nothing_lost(stored)


def test_cli_run_store_path_that_is_a_file(capsys, tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    code = main(["--store", str(blocker), "runs", "list"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot create it" in err and "LENS_STORE" in err
    assert blocker.read_text() == "a file, not a folder"


def test_imagefolder_corrupt_images_are_skipped_with_a_count_shown(tmp_path, capsys):
    root = imagefolder_with_corrupt_images(tmp_path / "images")
    data = load_dataset(DataSpec("imagefolder", str(root), image_size=8))
    assert data.classes == ("dark", "light") and len(data.train) + len(data.test) == 24
    assert data.notes[0].startswith("skipped 3 unreadable image(s)")
    assert "ignored 1 class folder(s) without images: ['broken']" in data.notes[1]
    code = main(["--store", str(tmp_path / "store"), "--quiet", "train", "--dataset",
                 "imagefolder", "--root", str(root), "--image-size", "8", "--epochs", "1",
                 "--batch-size", "8", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0 and "note: skipped 3 unreadable image(s)" in err


def test_library_non_finite_numbers_are_user_errors():
    nan, inf = float("nan"), float("inf")
    for make, message in ((lambda: TrainSpec(lr=nan), "train.lr"),
                          (lambda: TrainSpec(lr=inf), "train.lr"),
                          (lambda: ForgetSpec("random", fraction=nan), "forget.fraction"),
                          (lambda: get_method("lau").resolve_params({"epsilon": nan}),
                           "method.params.epsilon"),
                          (lambda: get_method("neggrad_plus").resolve_params({"alpha": inf}),
                           "method.params.alpha")):
        with pytest.raises(UserError, match=message):
            make()


def test_typed_paths_are_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    resolved = str((tmp_path / "data").resolve())
    # Relative, home-relative, through "..", through a symlink: one folder, one spec hash.
    specs = [DataSpec("imagefolder", root) for root in ("data", "~/data", "data/../data", "link")]
    assert {s.root for s in specs} == {resolved} and len({s.hash for s in specs}) == 1
    assert DataSpec("imagefolder", "").root == "" and DataSpec().root is None
    assert RunStore("store").root == (tmp_path / "store").resolve()
    assert RunStore("~/other").root == (tmp_path / "other").resolve()


def test_run_ids_never_act_as_paths(stored, tmp_path):
    store = stored[0]
    outside = store.root.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "keep.txt").write_text("kept")
    for bad in ("../outside", "..", "/etc", f"..{os.sep}outside", ".hidden", ""):
        for action in (store.get, store.delete, store.load_weights, store.load_arrays):
            with pytest.raises(UserError, match="run_id: expected a run id"):
                action(bad)
    assert (outside / "keep.txt").read_text() == "kept"
    assert_nothing_lost(stored)


def test_checkpoint_import_only_reads_the_typed_file(tmp_path, monkeypatch, tiny_refs):
    folder = tmp_path / "mine"
    folder.mkdir()
    save_state_dict(folder / "model.safetensors", tiny_refs.original.model.state_dict())
    before = sorted(folder.iterdir())
    monkeypatch.setenv("HOME", str(tmp_path))
    store = RunStore(tmp_path / "store")
    imported = import_original(tiny_setup(), store, "~/mine/../mine/model.safetensors")
    [entry] = store.cache_dir.iterdir()
    assert sorted(folder.iterdir()) == before  # nothing written beside the checkpoint
    assert imported.original.startswith("imported:")
    meta = store.cache_get(entry.name)[1]
    assert meta["imported_from"] == str((folder / "model.safetensors").resolve())
