"""Every batch of runs goes through the engine's runner (issue 20): each bench suite, the
Tour and its backdoor chapter ask `engine.runner` for their references and runs. The
runner's two training steps are replaced by recorders, and `pipeline.run_unlearning` and
`pipeline.train_references` by an error: a suite that went back to a loop of its own
would train outside the engine and fail here. (The Localization page's budget sweep is
checked the same way in tests/app/test_localization_page.py.)"""

import pytest

from conftest import tiny_setup
from unlearn_core import bench, bench_del, bench_dkvb, bench_poison, pipeline, tour, tour_backdoor
from unlearn_core.engine import runner
from unlearn_core.runs import RunStore


def outside_the_engine(*args, **kwargs):
    raise AssertionError("a batch of runs trained outside the engine's runner")


@pytest.fixture
def recorded(monkeypatch):
    """(setup, method spec) of every run the engine was asked for, and every setup whose
    references it was asked for; nothing trains."""
    calls = {"runs": [], "references": []}

    def references(setup, store, progress=None):
        calls["references"].append(setup)
        return 1.0, 1.0, 0, "cpu"

    def execute(setup, spec, store, progress=None):
        calls["runs"].append((setup, spec))
        return None, "not run in this test", 0.0

    monkeypatch.setattr(runner, "_references", references)
    monkeypatch.setattr(runner, "_execute", execute)
    for module in (pipeline, bench, bench_del, bench_dkvb, bench_poison, tour, tour_backdoor):
        for name in ("run_unlearning", "train_references"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, outside_the_engine)
    return calls


SUITES = {
    "baselines": lambda base, store: bench.baselines(base, store, seeds=1,
                                                     methods=["finetune", "neggrad"]),
    "sweep": lambda base, store: bench.sweep(base, store, "finetune", {"lr": [0.01, 0.1]}),
    "ec": lambda base, store: bench.ec_suite(base, store, bases=("finetune",), seeds=1,
                                             scenarios=("class",)),
    "del": lambda base, store: bench_del.del_suite(base, store, seeds=2, scenarios=("class",)),
    "poison": lambda base, store: bench_poison.poison_suite(base, store, methods=["finetune"],
                                                            seeds=1),
    # Its runs; its interleaved timings time single method calls without evaluation, not a
    # batch of runs (left out here).
    "dkvb": lambda base, store: bench_dkvb.benchmark(store, seeds=1, forget_classes=(0,),
                                                     device="cpu"),
    "tour": lambda base, store: tour.run_tour(store, base=base),
    "tour backdoor": lambda base, store: tour_backdoor.run_backdoor_tour(store, base=base),
}


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_every_suite_runs_through_the_engine(suite, recorded, tmp_path, monkeypatch):
    monkeypatch.setattr(bench_dkvb, "interleaved_timings", lambda *args, **kwargs: {})
    SUITES[suite](tiny_setup(), RunStore(tmp_path / "store"))
    assert recorded["runs"] and recorded["references"]
    assert {setup for setup, _ in recorded["runs"]} <= set(recorded["references"])
