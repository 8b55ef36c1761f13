"""The Tour's backdoor chapter, told from runs of the real pipeline on the tiny digits
setup: every number in it is a stored one, and it says plainly what has not run."""

import pytest

from tests.conftest import tiny_setup
from unlearn_core.figures import format_percent as pct
from unlearn_core.runs import RunStore
from unlearn_core.tour_backdoor import (BACKDOOR_METHODS, backdoor_runs, backdoor_step,
                                        run_backdoor_tour)


# Several seconds each on 2 cores: left out of `make test-fast`.
pytestmark = pytest.mark.slow

def accuracy_mia_and_poison(models, exp, **kwargs):
    """The light evaluation of the suite plus the real backdoor section: the chapter reads
    nothing else, and CKA bands and probes would triple the time of this module."""
    from tests.conftest import accuracy_and_mia_only
    from unlearn_core.metrics.poison import poison_report
    report, arrays = accuracy_and_mia_only(models, exp, **kwargs)
    layers = list(models["unlearned"].probe_layers)
    report["poison"], poison_arrays = poison_report(models, exp, layers, seed=exp.spec.seed)
    report["classes"] = list(exp.dataset.classes)
    return report, {**arrays, **poison_arrays}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from unlearn_core import pipeline
    store = RunStore(tmp_path_factory.mktemp("backdoor-tour"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "evaluate", accuracy_mia_and_poison)
        run_backdoor_tour(store, base=tiny_setup())
    return store


def test_an_empty_store_says_the_chapter_has_not_run(tmp_path):
    step = backdoor_step(RunStore(tmp_path), base=tiny_setup())
    assert not step.available
    assert "start the backdoor chapter" in step.text


def test_the_chapter_quotes_every_stored_number(store):
    runs = backdoor_runs(store, base=tiny_setup())
    assert [run.status for run in runs.values()] == ["done"] * len(BACKDOOR_METHODS)
    step = backdoor_step(store, base=tiny_setup())
    assert step.available and step.number == 7
    first = next(iter(runs.values())).report["poison"]
    assert f"answers 0 {pct(first['asr']['original'])} of the time" in step.text
    for run in runs.values():
        poison = run.report["poison"]
        assert (f"{run.label} ASR {pct(poison['asr']['unlearned'])}, after a head refit "
                f"{pct(poison['asr_head_refit']['unlearned'])}") in step.text
    bars = {trace.name: list(trace.y) for trace in step.figures[0].data}
    assert bars["ASR"] == pytest.approx(
        [100 * run.report["poison"]["asr"]["unlearned"] for run in runs.values()])


def test_a_second_start_reuses_every_run(store):
    results = run_backdoor_tour(store, base=tiny_setup())
    assert all(result.reused for result in results)
