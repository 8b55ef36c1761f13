"""`bench --suite del` on the tiny digits setup (light evaluation): the setting chosen per
(strategy, ρ) is the tuning run closest to seed 0's oracle, only that setting runs on the
held-out seeds, and the claims table is read from those runs alone."""

import pytest

from conftest import accuracy_and_mia_only, tiny_setup
from unlearn_core import pipeline
from unlearn_core.bench_del import chosen_settings, del_suite
from unlearn_core.errors import UserError
from unlearn_core.metrics.report import average_gap
from unlearn_core.methods.del_localized import TUNING_GRID, grid_settings
from unlearn_core.runs import RunStore

# Several seconds or more on 2 cores: left out of `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "evaluate", accuracy_and_mia_only)
        store = RunStore(tmp_path_factory.mktemp("del-bench"))
        return del_suite(tiny_setup(), store, seeds=2, strategies=("del", "random"),
                         rhos=(0.3,)), store


def test_tuning_runs_every_grid_setting_on_seed_0_only(suite):
    result, store = suite
    settings = len(grid_settings(TUNING_GRID))
    tuning = [r for r in store.list(kind="unlearn") if r.spec["setup"]["seed"] == 0]
    held_out = [r for r in store.list(kind="unlearn") if r.spec["setup"]["seed"] == 1]
    assert len(tuning) == 2 * settings  # two strategies, one ρ
    assert len(held_out) == 2  # the chosen setting of each strategy, nothing else
    for key, params in result["chosen"].items():
        strategy = key.split("/")[1]
        candidates = [r.report for r in tuning if r.spec["method"]["params"]["strategy"] == strategy]
        best = min(candidates, key=average_gap)
        assert {k: best["method"]["params"][k] for k in ("lr", "epochs")} == \
               {k: params[k] for k in ("lr", "epochs")}
        assert any(r.spec["method"]["params"]["strategy"] == strategy and
                   r.spec["method"]["params"]["lr"] == params["lr"] and
                   r.spec["method"]["params"]["epochs"] == params["epochs"] for r in held_out)


def test_claims_table_reads_the_held_out_seed(suite):
    result, store = suite
    table = result["table"]
    assert "### Claims, tuned per budget" in table
    assert "| 0.3 | del | lr " in table and "| 0.3 | random | lr " in table
    assert "DEL closer than the random control" in table
    assert "| 0.3 | 1 of 1 |" in table or "| 0.3 | 0 of 1 |" in table


def test_a_failed_tuning_run_cannot_be_chosen():
    from unlearn_core.config import MethodSpec
    from unlearn_core.engine import RunResult
    spec = MethodSpec("localized", {"strategy": "del", "rho": 0.3, "lr": 0.1, "epochs": 3})
    failed = RunResult("non_iid", 0, spec, None, None, "boom", False, 0.0)
    assert chosen_settings([failed]) == {}


def test_the_suite_needs_a_held_out_seed(tmp_path):
    with pytest.raises(UserError, match="--seeds"):
        del_suite(tiny_setup(), RunStore(tmp_path), seeds=1)
