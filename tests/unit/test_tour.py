"""The tour: its story is generated from the stored numbers (fabricated runs, see
tests/tour_fixtures.py), changes when they change, and says plainly what is not available;
`run_tour` runs the preset once with one progress and reuses it afterwards (tiny digits)."""

import pytest

from conftest import accuracy_and_mia_only, tiny_setup
from tour_fixtures import (ORACLE, ORACLE_CKA, ORIGINAL, numbers, run_spec, store_tour,
                           store_tour_run)
from unlearn_core import tour
from unlearn_core.errors import Cancelled
from unlearn_core.figures import format_percent as pct
from unlearn_core.methods import registry
from unlearn_core.progress import Progress
from unlearn_core.runs import RunStore

BASE = tiny_setup()
ALL = (*tour.BASE_METHODS, tour.KEY_METHOD)


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "store")


def story(store) -> dict[int, tour.Step]:
    return {step.number: step for step in tour.tour_story(store, BASE)}


def label(name: str) -> str:
    return tour.SHORT_NAMES[name]


def test_every_step_quotes_the_stored_numbers(store):
    store_tour(store, BASE)
    steps = story(store)
    assert list(steps) == [1, 2, 3, 4, 5, 6]
    assert all(step.available and step.figures and step.links for step in steps.values())

    first = steps[1].text
    assert f"the original {pct(ORIGINAL['forget'])}" in first
    assert f"the retrain oracle {pct(ORACLE['forget'])}" in first
    for name in ALL:
        assert f"{label(name)} {pct(numbers(name)['forget'])}" in first
    assert f"All {len(ALL)} are within" in first

    second = steps[2].text
    assert f"the retrain oracle {ORACLE_CKA[3]:.3f}" in second
    for name in ALL:
        assert f"{label(name)} {numbers(name)['cka'][3]:.3f}" in second
    assert ("superficial (only the last layers moved): LAU (significantly closer to the "
            "original than the oracle at block1, block2, block3 and embedding)") in second
    assert "core (the representation moved like the oracle's): Finetune, Random Label" in second

    third = steps[3].text
    assert f"original {pct(ORIGINAL['probe'])}, retrain oracle {pct(ORACLE['probe'])}" in third
    for name in ALL:
        assert f"{label(name)} {pct(numbers(name)['probe'])}" in third
    assert "recover the forgotten class from LAU more than 5 points better" in third
    assert f"LAU {pct(numbers('lau')['refit'])}" in third
    assert "The chart shows LAU's probes." in third

    fourth, ec, finetune = steps[4].text, numbers("ec"), numbers("finetune")
    assert "EC " + " / ".join(f"{v:.3f}" for v in ec["cka"][:-1]) in fourth
    assert "Finetune " + " / ".join(f"{v:.3f}" for v in finetune["cka"][:-1]) in fourth
    assert "EC moved further from the original at 4 of 4 layers" in fourth
    assert f"EC {pct(ec['test_retain'])}, Finetune {pct(finetune['test_retain'])}" in fourth

    fifth = steps[5].text
    assert ("block1 12.0%, block2 25.0%, block3 41.0%, embedding 33.0%; the largest share "
            "in block3") in fifth
    assert f"masked {numbers(tour.KEY_METHOD)['pairs_masked']:,} of its {64 * 512:,}" in fifth
    assert "with 0 gradient steps" in fifth
    assert [link.page for link in steps[5].links] == ["app_pages/localization.py",
                                                      "app_pages/keys.py"]

    sixth = steps[6].text
    assert f"The target is what the retrain oracle scores, {pct(ORACLE['mia'])}" in sixth
    gap = 100 * (numbers("lau")["mia"] - ORACLE["mia"])
    assert f"LAU {pct(numbers('lau')['mia'])} ({gap:+.1f} points)" in sixth
    assert "Farthest from the oracle: LAU" in sixth
    for name in ALL:
        assert f"{label(name)} {numbers(name)['privacy']:.3f}" in sixth
    assert "The chart shows LAU, farthest from the oracle." in sixth


def test_changing_a_stored_run_changes_its_sentences(store):
    ids = store_tour(store, BASE)
    before = story(store)
    # LAU run again with other numbers: forgetting fails, the attacker is fooled less.
    store.delete(ids["lau"])
    store_tour_run(store, "lau", BASE, forget=0.64, mia=0.93, cka=[0.5, 0.6, 0.7, 0.123, 0.2])
    after = story(store)

    assert f"LAU {pct(numbers('lau')['forget'])}" in before[1].text
    assert "LAU 64.0%" in after[1].text
    assert f"{len(ALL) - 1} of {len(ALL)} are within 20 points of the oracle's; LAU not" \
        in after[1].text
    assert "LAU 0.123" in after[2].text and "LAU 0.123" not in before[2].text
    assert "LAU 93.0% (-2.0 points)" in after[6].text
    # The farthest from the oracle is now DKVB, and so is the chart.
    assert "Farthest from the oracle: LAU" in before[6].text
    assert "Farthest from the oracle: DKVB; closest: Finetune." in after[6].text
    assert "The chart shows DKVB, farthest from the oracle." in after[6].text
    assert after[6].links[0].run_id == ids[tour.KEY_METHOD]
    for step in (3, 4, 5):
        assert after[step].text == before[step].text
    # DEL's per-layer shares come from its stored arrays.
    store.delete(ids["del"])
    store_tour_run(store, "del", BASE, del_shares=[0.5, 0.05, 0.05, 0.05])
    assert "block1 50.0%, block2 5.0%" in story(store)[5].text
    assert "the largest share in block1" in story(store)[5].text


def test_a_missing_or_failed_method_is_said_plainly(store, monkeypatch):
    store_tour(store, BASE, skip=("ec", "lau", tour.KEY_METHOD))
    failed = store.create("unlearn", run_spec("lau", BASE).to_dict(), "lau")
    store.fail(failed, "DivergedError: the run diverged")
    steps = story(store)

    # The runs that are there are told; the others listed with the reason.
    assert f"DEL {pct(numbers('del')['forget'])}" in steps[1].text
    assert steps[1].text.endswith(
        "Not available yet: the LAU run failed: DivergedError: the run diverged; EC has not "
        "run yet: start the tour; DKVB has not run yet: start the tour.")
    assert not steps[4].available
    assert steps[4].text == "Not available yet: EC has not run yet: start the tour."
    assert steps[5].available  # DEL is there
    assert "DKVB: not available yet: DKVB has not run yet: start the tour." in steps[5].text
    assert len(steps[5].figures) == 1
    runs = tour.tour_runs(store, BASE)
    assert (runs["lau"].status, runs["ec"].status, runs["del"].status) == (
        "failed", "not_run", "done")

    # A method this version does not register: its steps say so, the preset leaves it out.
    monkeypatch.delitem(registry._REGISTRY, "ec")
    steps = story(store)
    assert steps[4].text == "Not available yet: EC (ec) is not part of this version yet."
    assert "ec" not in [spec.name for _, specs in tour.tour_plan(BASE) for spec in specs]


def test_an_empty_store_has_no_story_yet(store):
    steps = story(store)
    assert not any(step.available for step in steps.values())
    assert all(step.text.startswith("Not available yet:") and not step.figures
               for step in steps.values())


@pytest.mark.slow
def test_run_tour_runs_once_with_one_progress_and_reuses(store, monkeypatch):
    """Two cheap methods and DKVB on tiny digits, with the light evaluation."""
    from unlearn_core import pipeline
    monkeypatch.setattr(pipeline, "evaluate", accuracy_and_mia_only)
    monkeypatch.setattr(tour, "BASE_METHODS", ("finetune", "lau"))
    seen = []
    results = tour.run_tour(store, Progress(lambda f, m: seen.append(f)), BASE)

    assert [(r.spec.name, r.error, r.reused) for r in results] == [
        ("finetune", None, False), ("lau", None, False), (tour.KEY_METHOD, None, False)]
    assert seen == sorted(seen) and seen[-1] == 1.0
    runs = tour.tour_runs(store, BASE)
    assert [runs[name].run_id for name in ("finetune", "lau", tour.KEY_METHOD)] == [
        r.run_id for r in results]
    assert "has no layers metrics" in runs["lau"].lacks("layers")  # the light evaluation

    again = tour.run_tour(store, Progress(), BASE)
    assert all(r.reused for r in again)
    assert len(store.list(kind="unlearn")) == 3

    cancelled = Progress()
    cancelled.cancel()
    with pytest.raises(Cancelled):
        tour.run_tour(store, cancelled, BASE)


def test_when_the_attack_sees_no_gap_the_chart_shows_the_most_distinguishable(store):
    ids = {name: store_tour_run(store, name, BASE, mia=ORACLE["mia"]) for name in ALL}
    sixth = story(store)[6]
    assert "Every method is equally far from the oracle by this attack." in sixth.text
    lowest = min(ALL, key=lambda name: numbers(name)["privacy"])
    assert (f"The chart shows {label(lowest)}, the most distinguishable from the oracle."
            in sixth.text)
    assert sixth.links[0].run_id == ids[lowest]
