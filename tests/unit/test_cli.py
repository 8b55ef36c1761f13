import json
import subprocess
import sys

import pytest
import torch

from unlearn_core.cli import main
from unlearn_core.io import save_state_dict
from unlearn_core.runs import RunStore

TINY = ["--dataset", "digits", "--epochs", "2", "--batch-size", "32", "--device", "cpu"]


@pytest.fixture(scope="module")
def store_with_a_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-store")
    assert main(["--store", str(root), "--quiet", "unlearn", "--method", "finetune",
                 "--param", "epochs=1", *TINY]) == 0
    return root


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("command", [[], ["train"], ["unlearn"], ["runs"], ["runs", "list"],
                                     ["list"], ["bench"]])
def test_every_command_has_help(command):
    result = subprocess.run([sys.executable, "-m", "unlearn_core", *command, "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "usage:" in result.stdout


def test_unlearn_prints_json_and_runs_list_show_delete(store_with_a_run, capsys):
    store = str(store_with_a_run)
    code, out, _ = run_cli(capsys, "--store", store, "--json", "runs", "list")
    runs = json.loads(out)
    assert code == 0 and len(runs) == 1 and runs[0]["status"] == "done"
    code, out, _ = run_cli(capsys, "--store", store, "runs", "show", runs[0]["id"])
    assert code == 0 and "forget_train" in out and "speed-up" in out
    code, out, _ = run_cli(capsys, "--store", store, "--json", "runs", "show", runs[0]["id"])
    assert json.loads(out)["report"]["accuracy"]["unlearned"]["test"] > 0.5


BAD_INPUTS = [
    (["unlearn", "--method", "finetune", "--forget-classes", "12"],
     "forget.classes: class 12 is out of range"),
    (["unlearn", "--method", "finetune", "--forget-classes", "0,1,2,3,4,5,6,7,8,9"],
     "retain set would be empty"),
    (["unlearn", "--method", "finetune", "--forget-kind", "random", "--forget-fraction", "1.5"],
     "forget.fraction: expected a number in (0, 1)"),
    (["unlearn", "--method", "finetune", "--forget-classes", "x"],
     "forget.classes: expected comma-separated integers"),
    (["unlearn", "--method", "magic"], "method.name: unknown method 'magic'"),
    (["unlearn", "--method", "finetune", "--param", "lr=-1"], "method.params.lr"),
    (["unlearn", "--method", "finetune", "--param", "lr"], "--param: expected key=value"),
    (["unlearn", "--method", "finetune", "--dataset", "imagenet"], "data.name: unknown dataset 'imagenet'"),
    (["unlearn", "--method", "finetune", "--model", "vgg99"], "model.name: unknown model 'vgg99'"),
    (["train", "--seed", "-3"], "seed: expected an integer"),
    (["runs", "show", "no-such-run"], "no run with id 'no-such-run'"),
    (["train", "--frobnicate"], "unrecognized arguments"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS)
def test_bad_input_exits_2_with_a_clear_message_and_damages_no_run(args, message, store_with_a_run, capsys):
    store = RunStore(store_with_a_run)
    before = {r.id: r.report for r in store.list()}
    tiny = TINY if args[0] in ("train", "unlearn") and "--dataset" not in args else []
    code, _, err = run_cli(capsys, "--store", str(store_with_a_run), "--quiet", *args, *tiny)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert {r.id: r.report for r in store.list()} == before


def test_missing_dataset_root_and_empty_imagefolder(tmp_path, capsys):
    code, _, err = run_cli(capsys, "--store", str(tmp_path / "s"), "train", "--dataset", "cifar10",
                           "--root", str(tmp_path / "nowhere"))
    assert code == 2 and "data.root" in err and "download" in err
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    code, _, err = run_cli(capsys, "--store", str(tmp_path / "s"), "train", "--dataset", "imagefolder",
                           "--root", str(tmp_path / "empty"))
    assert code == 2 and "data.root" in err


def test_forget_indices_from_a_csv(tmp_path, capsys):
    good = tmp_path / "forget.csv"
    good.write_text("index\n3\n5\n8\n")
    store = str(tmp_path / "s")
    code, out, _ = run_cli(capsys, "--store", store, "--quiet", "--json", "train", *TINY,
                           "--forget-kind", "indices", "--forget-indices", str(good))
    assert code == 0 and json.loads(out)["split"]["forget"] == 3
    bad = tmp_path / "bad.csv"
    bad.write_text("3\nfive\n")
    code, _, err = run_cli(capsys, "--store", store, "train", *TINY, "--forget-kind", "indices",
                           "--forget-indices", str(bad))
    assert code == 2 and "forget.indices" in err and "line 2" in err


def test_corrupt_and_wrong_architecture_checkpoints_are_refused(tmp_path, capsys):
    store = str(tmp_path / "s")
    corrupt = tmp_path / "model.safetensors"
    corrupt.write_text("not a checkpoint")
    code, _, err = run_cli(capsys, "--store", store, "train", *TINY, "--original-checkpoint", str(corrupt))
    assert code == 2 and "not a valid safetensors file" in err
    foreign = tmp_path / "resnet.safetensors"
    save_state_dict(foreign, {"conv.weight": torch.zeros(4, 3, 3, 3)})
    code, _, err = run_cli(capsys, "--store", store, "train", *TINY, "--original-checkpoint", str(foreign))
    assert code == 2 and "does not fit this model" in err
    pickled = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(2), "note": _Unpicklable()}, pickled)
    code, _, err = run_cli(capsys, "--store", store, "train", *TINY, "--original-checkpoint", str(pickled))
    assert code == 2 and "refused" in err


class _Unpicklable:
    """A Python object inside a checkpoint: weights-only loading must refuse it."""
