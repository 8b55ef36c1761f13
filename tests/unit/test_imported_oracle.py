"""An oracle trained elsewhere, imported as a setup's retrain oracle (issue 21): the runs
of that setup are judged against it. With the lens's own oracle's weights imported into a
fresh store, every number of a run's report equals the one judged against the oracle the
lens trained; bad checkpoints are refused with nothing stored."""

import json

import pytest
import safetensors.torch
import torch

from streamlit.testing.v1 import AppTest

from conftest import TINY_CLI_ARGS, tiny_setup
from tests.app.helpers import ROOT, TIMEOUT
from tests.unit.test_user_models import assert_every_view_opens
from unlearn_core import compare
from unlearn_core.cli import accuracy_table, main
from unlearn_core.figures.compare import tradeoff_scatter
from unlearn_core.config import MethodSpec, ModelSpec, RunSpec, SetupSpec
from unlearn_core.errors import UserError
from unlearn_core.pipeline import run_unlearning, train_references
from unlearn_core.runs import RunStore
from unlearn_core.training import import_reference, reference_key

pytestmark = pytest.mark.slow  # two full runs on digits, a second original trained

METHOD = MethodSpec("finetune", {"epochs": 1})


def saved(state: dict, path) -> str:
    safetensors.torch.save_file({k: v.detach().contiguous() for k, v in state.items()},
                                str(path))
    return str(path)


def test_an_imported_copy_of_the_oracle_gives_the_same_report(tmp_path):
    # Both stores train their original here, back to back, so the originals are the same
    # weights whatever an earlier test did to torch's threads.
    trained_store = RunStore(tmp_path / "trained")
    refs = train_references(tiny_setup(), trained_store)
    path = saved(refs.oracle.model.state_dict(), tmp_path / "oracle.safetensors")
    store = RunStore(tmp_path / "fresh")
    spec = import_reference(tiny_setup(), store, path, "oracle")
    assert spec.oracle.startswith("imported:") and spec.original == "trained"
    assert reference_key(spec, "oracle") != reference_key(tiny_setup(), "oracle")
    assert store.cache_has(reference_key(spec, "oracle"))

    imported = store.get(run_unlearning(RunSpec(spec, METHOD), store)).report
    trained = trained_store.get(run_unlearning(RunSpec(tiny_setup(), METHOD), trained_store)).report
    # Equal, not close: the same weights give the same numbers.
    for section in ("accuracy", "gap_to_oracle", "average_gap"):
        assert imported[section] == trained[section], section
    assert imported["mia"]["efficacy"] == trained["mia"]["efficacy"]
    assert imported["mia"]["gap_to_oracle"] == trained["mia"]["gap_to_oracle"]
    assert imported["layers"]["cka"] == trained["layers"]["cka"]
    assert imported["layers"]["verdict"] == trained["layers"]["verdict"]
    assert imported["oracle"]["key"] == reference_key(spec, "oracle")
    # Its time is unknown: no speed-up is claimed, and every reader copes.
    assert imported["cost"]["oracle_seconds"] is None and imported["cost"]["speedup"] is None
    assert "oracle n/a" in accuracy_table(imported)
    table = compare.run_table(store.list(kind="unlearn", status="done"))
    assert tradeoff_scatter(table).data
    (run,) = store.list(kind="unlearn", status="done")
    assert_every_view_opens(store, run.id, masks=False)
    compare_page = AppTest.from_file(str(ROOT / "app_pages" / "compare.py"), default_timeout=TIMEOUT)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LENS_STORE", str(store.root))
        compare_page.run()
    assert not compare_page.exception


def test_the_cli_trains_with_an_imported_oracle_and_says_so(tmp_path, tiny_refs, capsys):
    path = saved(tiny_refs.oracle.model.state_dict(), tmp_path / "oracle.safetensors")
    store = tmp_path / "cli"
    assert main(["--store", str(store), "--json", "--quiet", "train", *TINY_CLI_ARGS,
                 "--oracle-checkpoint", path]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["setup"]["oracle"].startswith("imported:")
    assert out["oracle"]["imported_from"] == str(tmp_path / "oracle.safetensors")
    assert "imported_from" not in out["original"]


def test_bad_oracle_checkpoints_are_refused_and_nothing_is_stored(tmp_path, tiny_refs):
    store = RunStore(tmp_path / "store")
    foreign = saved({"weight": torch.zeros(3, 3)}, tmp_path / "foreign.safetensors")
    with pytest.raises(UserError, match="foreign.safetensors"):
        import_reference(tiny_setup(), store, foreign, "oracle")
    own = saved(tiny_refs.oracle.model.state_dict(), tmp_path / "oracle.safetensors")
    with pytest.raises(UserError, match="--oracle-checkpoint: an imported oracle has its own "
                                        "initialisation"):
        import_reference(tiny_setup(oracle_init="independent"), store, own, "oracle")
    dkvb = tiny_setup(model=ModelSpec("dkvb", encoder="small_cnn"))
    with pytest.raises(UserError, match="--oracle-checkpoint: a 'dkvb' model's oracle"):
        import_reference(dkvb, store, own, "oracle")
    assert store.list() == [] and not any((store.root / "cache").glob("*"))


def test_a_setup_refuses_an_independent_init_for_an_imported_oracle():
    with pytest.raises(UserError, match="oracle_init: 'independent' retrains the oracle"):
        SetupSpec(oracle="imported:" + "0" * 16, oracle_init="independent")
    with pytest.raises(UserError, match="oracle: expected 'trained' or 'imported:<16 hex"):
        SetupSpec(oracle="mine")
