"""The main journey in a real browser: Setup -> train -> Unlearn (Finetune, then LAU) ->
Results, Layers, Privacy, Embeddings, Localization, Keys -> Compare, on `digits` with a
tiny recipe (from the Tour, where the app opens).

The app runs as `streamlit run app.py` on a free localhost port with a temporary run
store; Debian's chromium (/usr/bin/chromium, headless) drives it through the playwright
package, which bundles its driver, so no browser is ever downloaded. Assertions are on
what a person sees: page titles, chart titles, the Results metrics against the report
stored in the run store, and no Streamlit exception box. A screenshot of each page goes
to test-output/e2e/ (kept by CI as artefacts, ignored by git).

Without playwright or chromium the test is skipped here, but fails under CI (env CI
set), where .ci/run installs both.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import warnings
from pathlib import Path

import pytest

from e2e_support import running_app
from unlearn_core.config import DataSpec, ForgetSpec, SetupSpec, TrainSpec
from unlearn_core.data import load_dataset, make_split
from unlearn_core.figures import format_percent
from unlearn_core.runs import RunStore
from unlearn_core.training import reference_key

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "test-output" / "e2e"
# No sandbox: CI runs as root, where chromium's sandbox refuses to start. The rest keep
# the browser off the network and light on 2 cores.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# The recipe the browser enters on the Setup page; the store must then hold its models.
TINY = SetupSpec(data=DataSpec("digits"), train=TrainSpec(epochs=2, batch_size=32),
                 device="cpu")
TRAIN_S = 120     # original + oracle, 2 epochs each on digits: about 10 s here
UNLEARN_S = 120   # one method and its full evaluation: about 15 s here
PAGE_S = 60


def _browser_or_skip():
    """The playwright module; skip without it or chromium, but fail in CI."""
    missing = []
    try:
        from playwright import sync_api
    except ImportError:
        sync_api = None
        missing.append("the playwright package (requirements.txt)")
    if not CHROMIUM.is_file():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if missing:
        reason = "the browser journey needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; .ci/run installs both in CI")
        pytest.skip(reason)
    return sync_api


@pytest.fixture
def app_server(tmp_path):
    """(playwright module, url, store root, server log) of the app running on a free
    localhost port."""
    sync_api = _browser_or_skip()
    store = tmp_path / "store"
    with running_app(tmp_path, store, "--server.address", "localhost") as (url, log):
        try:
            yield sync_api, url, store, log
        finally:
            SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, SHOTS / "streamlit.log")


class Journey:
    """A page of the app with the few gestures the journey needs."""

    def __init__(self, page, expect):
        self.page, self.expect = page, expect
        self.shots = 0

    def choose(self, key: str, option: str) -> None:
        """Open the select box with widget key `key` and pick the option matching the
        regular expression `option`."""
        self.page.locator(f".st-key-{key} input").click()
        self.page.get_by_role("option", name=re.compile(option)).click()

    def number(self, key: str, value: int) -> None:
        field = self.page.locator(f".st-key-{key} input")
        field.fill(str(value))
        field.press("Tab")  # a number input commits its value when it loses focus
        self.expect(field).to_have_value(str(value))

    def go(self, title: str) -> None:
        self.page.locator("[data-testid='stSidebarNav'] a", has_text=title).first.click()

    def has_page(self, title: str) -> bool:
        nav = self.page.locator("[data-testid='stSidebarNav']")
        self.expect(nav).to_be_visible()  # count() does not wait for the page to draw it
        return nav.locator("a", has_text=title).count() > 0

    def heading(self, text: str) -> None:
        self.expect(self.page.get_by_role("heading", name=text, exact=True).first).to_be_visible(
            timeout=PAGE_S * 1000)

    def chart(self, title: str) -> None:
        """A plotly chart whose title contains `title` is drawn."""
        self.expect(self.page.locator("[data-testid='stPlotlyChart'] .gtitle",
                                      has_text=title).first).to_be_visible(timeout=PAGE_S * 1000)

    def text(self, text: str, timeout_s: float = PAGE_S):
        locator = self.page.get_by_text(text).first
        self.expect(locator).to_be_visible(timeout=timeout_s * 1000)
        return locator

    def metric(self, label: str) -> str:
        box = self.page.locator("[data-testid='stMetric']").filter(
            has=self.page.locator("[data-testid='stMetricLabel']", has_text=label)).first
        return box.locator("[data-testid='stMetricValue']").inner_text().strip()

    def no_exception(self, name: str) -> None:
        """No exception box anywhere, then a screenshot of the page as it is."""
        self.expect(self.page.locator("[data-testid='stException']")).to_have_count(0)
        self.shots += 1
        self.page.screenshot(path=SHOTS / f"{self.shots:02d}-{name}.png", full_page=True)


def _stored_run(store_root: Path, known: set[str], timeout_s: float):
    """The one finished unlearning run not in `known`, waiting for it to appear."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = [r for r in RunStore(store_root).list(kind="unlearn") if r.id not in known]
        failed = [r for r in done if r.status in ("failed", "cancelled")]
        assert not failed, f"run failed in the app: {failed[0].error}"
        if done and done[0].status == "done":
            return done[0]
        time.sleep(1)
    raise AssertionError(f"no new finished run within {timeout_s} s")


@pytest.mark.timeout(300)  # the budget for the whole journey on 2 cores
def test_main_journey_in_a_real_browser(app_server):
    sync_api, url, store_root, log = app_server
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    split = make_split(load_dataset(TINY.data), ForgetSpec(), TINY.seed).sizes()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(PAGE_S * 1000)
        sync_api.expect.set_options(timeout=PAGE_S * 1000)
        j = Journey(page, sync_api.expect)
        try:
            page.goto(url)
            if j.has_page("Tour"):  # the app opens on the Tour where it has one
                j.heading("Tour: is the forgetting only skin-deep?")
                j.no_exception("tour")
            j.go("Setup")
            j.heading("Setup")
            j.choose("dataset", "^digits")
            # The split of the core's own make_split, as the page shows it.
            j.expect(page.locator("[data-testid='stMetric']", has_text="Forget (train)")
                     ).to_contain_text(f"{split['forget']:,}")
            j.choose("device", "^cpu$")
            page.get_by_text("Training recipe (original and oracle)").click()
            j.number("epochs", TINY.train.epochs)
            j.number("batch_size", TINY.train.batch_size)
            j.text("not trained yet")
            j.no_exception("setup")
            page.locator(".st-key-train button").click()
            j.text("Both models are ready", TRAIN_S)
            store = RunStore(store_root)
            # The browser's choices reached the core: these exact models are cached.
            assert all(store.cache_has(reference_key(TINY, role))
                       for role in ("original", "oracle"))
            j.no_exception("setup-trained")

            runs = {}
            for name, title, params in (("finetune", "^Finetune$", {"epochs": 1}),
                                        ("lau", "^LAU", {"epochs": 2, "pgd_steps": 2})):
                j.go("Unlearn")
                j.heading("Unlearn")
                j.choose("method", title)
                for param, value in params.items():
                    j.number(f"param-{name}-{param}", value)
                page.locator("[data-testid='stFormSubmitButton'] button").click()
                record = _stored_run(store_root, {r.id for r in runs.values()}, UNLEARN_S)
                runs[name] = record
                j.text(f"Run {record.id} is stored")
                assert record.spec["method"]["name"] == name
                assert all(record.spec["method"]["params"][k] == v for k, v in params.items())
                j.no_exception(f"unlearn-{name}")

            j.go("Results")
            j.heading("Results")
            lau = runs["lau"].report
            j.expect(page.locator(".st-key-picked_run input")).to_have_value(
                re.compile(re.escape(runs["lau"].id)))
            for label, key in (("Forget (train)", "forget_train"), ("Test", "test"),
                               ("Retain (train)", "retain_train")):
                j.expect(page.locator("[data-testid='stMetric']").filter(
                    has=page.locator("[data-testid='stMetricLabel']", has_text=re.compile(
                        f"^{re.escape(label)}$"))).first.locator(
                    "[data-testid='stMetricValue']")).to_have_text(
                    format_percent(lau["accuracy"]["unlearned"][key]))
            j.chart("Accuracy: unlearned vs original vs retrain oracle")
            j.chart("Test accuracy per class")
            j.text("LAU: where the forget samples went")
            j.chart("Forget samples still classified correctly")
            j.no_exception("results")

            j.go("Layers")
            j.heading("Inside the layers")
            j.chart("Linear CKA per layer")
            j.no_exception("layers")

            j.go("Privacy")
            j.heading("Privacy")
            j.chart("MIA efficacy per attack feature")
            j.no_exception("privacy")

            j.go("Embeddings")
            j.heading("Embeddings")
            j.chart("one joint PCA map")
            j.no_exception("embeddings")

            j.go("Localization")
            j.heading("Localization")
            j.text("No localized run yet")
            j.no_exception("localization")

            j.go("Keys")
            j.heading("Keys of the bottleneck")
            j.text("This run masked no keys")
            j.no_exception("keys")

            if j.has_page("Compare"):
                j.go("Compare")
                j.heading("Compare runs")
                j.chart("Trade-off: closeness to the oracle vs test accuracy")
                j.expect(page.locator(".st-key-compare-a input")).to_have_value(
                    re.compile(re.escape(runs["lau"].id)))
                j.expect(page.locator(".st-key-compare-b input")).to_have_value(
                    re.compile(re.escape(runs["finetune"].id)))
                j.no_exception("compare")
            else:
                warnings.warn("the Compare page is not registered in app.py yet; the "
                              "journey skipped it", stacklevel=2)
        except BaseException:
            page.screenshot(path=SHOTS / "failure.png", full_page=True)
            raise
        finally:
            browser.close()

    assert "Traceback" not in log.read_text(), log.read_text()
    # Both runs and the references are intact in the store after the whole journey.
    reopened = RunStore(store_root)
    assert {r.id for r in reopened.list(kind="unlearn", status="done")} == {
        r.id for r in runs.values()}
    assert all(reopened.load_weights(r.id) for r in runs.values())
