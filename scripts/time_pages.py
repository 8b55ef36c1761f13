"""Time the app in a real browser (Debian's chromium through playwright), as issue 22 asks.

    .venv/bin/python scripts/time_pages.py pages STORE [REPEATS]
    .venv/bin/python scripts/time_pages.py tour

`pages`: starts `streamlit run app.py` on STORE (a free port), measures the cold start
(the server's health check answering -> the first page's title visible in the browser,
then -> that page finished, -> its figure drawn), then switches REPEATS times (default 3)
through Compare, Results and Layers by clicking the sidebar: click -> the page's title
visible, -> its main figure visible (Compare: the runs table; Results, Layers: the first
plotly figure's SVG; outside the elements Streamlit marks stale, so the new page's), -> the
page's script finished (Streamlit's "script finished" message: every element sent; the
browser may still be drawing), and -> the main figure drawn once the script has finished
(the whole page's run, then the browser). `tour`: the same start on a new,
empty store, then a click on "Start the tour" -> the last step visible, with the job's
progress line printed each time it changes.

Prints tables with the load average before and after (the machine may be shared).
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import sync_playwright  # noqa: E402
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: E402

from tests.e2e.e2e_support import started_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TOUR_TITLE = "Tour: is the forgetting only skin-deep?"
# Sidebar entry -> the page's title and its main figure (Compare: the table of runs; a
# plotly figure counts once plotly has drawn its SVG).
MAIN = "[data-testid='stMain'] "
PLOTLY_DRAWN = ".js-plotly-plot .main-svg"
# Streamlit marks the elements a rerun has not yet redrawn as stale (the last page's).
FRESH = "[data-testid='stElementContainer']:not([data-stale='true']) "
PAGES = {"Compare": ("Compare runs", "[data-testid='stDataFrame'] canvas"),
         "Results": ("Results", PLOTLY_DRAWN),
         "Layers": ("Inside the layers", PLOTLY_DRAWN)}
POLL_S = 0.05
SERVER_OPTIONS = ("--browser.gatherUsageStats", "false")
PAGE_TIMEOUT_S = 120
TOUR_TIMEOUT_S = 900


def load() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def heading(page, title: str):
    return page.locator("[data-testid='stMain'] h1", has_text=re.compile(f"^{re.escape(title)}"))


def wait_until(condition, what: str, timeout_s: float = PAGE_TIMEOUT_S) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return time.perf_counter()
        time.sleep(POLL_S)
    raise SystemExit(f"timed out after {timeout_s} s waiting for {what}")


class ScriptRuns:
    """When the app's script runs ended, from Streamlit's own "script finished" messages
    on the page's websocket (toolbarMode minimal hides the running indicator). Playwright
    hands them over while the page is being polled, so a time is late by one poll at
    most."""

    def __init__(self, page):
        self.finished: list[float] = []
        page.on("websocket", lambda socket: socket.on("framereceived", self._frame))

    def _frame(self, payload) -> None:
        if not isinstance(payload, bytes):
            return
        try:
            message = ForwardMsg.FromString(payload)
        except Exception:  # not a ForwardMsg: nothing to time
            return
        if (message.WhichOneof("type") == "script_finished"
                and message.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY):
            self.finished.append(time.perf_counter())

    def wait_after(self, page, since: float, what: str) -> float:
        """The end of the first whole script run that ended after `since`."""
        def ended():
            page.locator("body").count()  # lets playwright deliver the frames
            return any(t > since for t in self.finished)
        wait_until(ended, what)
        return next(t for t in self.finished if t > since)


def open_browser(playwright):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=CHROMIUM_ARGS)
    return browser, browser.new_page(viewport={"width": 1400, "height": 1000})


def time_pages(store: Path, repeats: int) -> None:
    load_before = load()
    with (tempfile.TemporaryDirectory() as scratch, sync_playwright() as playwright,
          started_app(Path(scratch), store, *SERVER_OPTIONS, poll_s=POLL_S)
          as (url, _, answered)):
        browser, page = open_browser(playwright)
        runs = ScriptRuns(page)
        page.goto(url)
        title = wait_until(lambda: heading(page, TOUR_TITLE).count() > 0, "the Tour title")
        done = runs.wait_after(page, answered, "the Tour page to finish")
        drawn = wait_until(lambda: page.locator(MAIN + PLOTLY_DRAWN).count() > 0,
                           "the Tour's figure (the data, shown before the tour has run)")
        print(f"cold start: health answered -> Tour title {title - answered:.2f} s, "
              f"-> Tour page finished {done - answered:.2f} s, -> its figure drawn "
              f"{drawn - answered:.2f} s", flush=True)
        times: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in PAGES}
        for _ in range(repeats):
            for name, (page_title, figure) in PAGES.items():
                link = page.locator("[data-testid='stSidebarNav'] a", has_text=name).first
                clicked = time.perf_counter()
                link.click()
                shown = wait_until(lambda t=page_title: heading(page, t).count() > 0,
                                   f"the {name} title")
                # Once the title is there the new page's run has started, so a figure
                # outside a stale element container is this page's.
                seen = wait_until(lambda f=figure: page.locator(MAIN + FRESH + f).count() > 0,
                                  f"{name}'s main figure, while the page runs")
                settled = runs.wait_after(page, clicked, f"{name} to finish")
                # Looked for once the run has ended: the last page's stale figures are
                # gone by then.
                drawn = wait_until(lambda f=figure: page.locator(MAIN + f).count() > 0,
                                   f"{name}'s main figure")
                times[name].append((shown - clicked, seen - clicked, settled - clicked,
                                    drawn - clicked))
                print(f"{name}: title {shown - clicked:.2f} s, main figure visible "
                      f"{seen - clicked:.2f} s, script finished {settled - clicked:.2f} s, "
                      f"main figure after the finish {drawn - clicked:.2f} s", flush=True)
                if page.locator("[data-testid='stException']").count():
                    raise SystemExit(f"{name} shows an exception box")
        browser.close()
    print(f"\nstore: {store}; load average (1/5/15 min) before {load_before}, after {load()}")
    print("| page | first: title / main figure visible / script finished / main figure "
          "after the finish (s) | median of later (s) |")
    print("|---|---|---|")
    for name, rounds in times.items():
        later = rounds[1:] or rounds
        medians = [statistics.median(r[i] for r in later) for i in range(4)]
        print(f"| {name} | {' / '.join(f'{t:.2f}' for t in rounds[0])} | "
              f"{' / '.join(f'{t:.2f}' for t in medians)} |")


def sidebar_progress(page) -> str:
    bar = page.locator("[data-testid='stSidebar'] [data-testid='stProgress']")
    try:
        return bar.first.inner_text(timeout=1000).strip() if bar.count() else ""
    except Exception:  # the bar was redrawn between count and read: read it next time
        return ""


def time_tour() -> None:
    load_before = load()
    with (tempfile.TemporaryDirectory() as scratch, sync_playwright() as playwright,
          started_app(Path(scratch), Path(scratch) / "store", *SERVER_OPTIONS, poll_s=POLL_S)
          as (url, _, answered)):
        browser, page = open_browser(playwright)
        runs = ScriptRuns(page)
        page.goto(url)
        wait_until(lambda: heading(page, TOUR_TITLE).count() > 0, "the Tour title")
        runs.wait_after(page, answered, "the Tour page to finish")
        clicked = time.perf_counter()
        page.get_by_role("button", name="Start the tour").first.click()
        last_step = page.locator("[data-testid='stMain'] h3", has_text=re.compile(r"^6\. "))
        line, deadline = "", time.monotonic() + TOUR_TIMEOUT_S
        while last_step.count() == 0:
            if time.monotonic() > deadline:
                raise SystemExit(f"the tour did not finish within {TOUR_TIMEOUT_S} s")
            current = sidebar_progress(page)
            if current and current != line:
                line = current
                print(f"{time.perf_counter() - clicked:7.1f} s  {line}", flush=True)
            time.sleep(0.25)
        shown = time.perf_counter()
        print(f"\nthe Tour: click -> last step visible {shown - clicked:.1f} s; load "
              f"average (1/5/15 min) before {load_before}, after {load()}")
        browser.close()


def main(argv: list[str]) -> int:
    if argv[:1] == ["pages"] and len(argv) in (2, 3):
        repeats = int(argv[2]) if len(argv) == 3 and argv[2].isdigit() else 3
        if len(argv) == 3 and not argv[2].isdigit() or repeats < 1:
            print(f"REPEATS: expected a whole number >= 1, got {argv[2]!r}", file=sys.stderr)
            return 2
        if not Path(argv[1]).is_dir():
            print(f"STORE: {argv[1]!r} is not a folder (make one with "
                  "scripts/make_store.py)", file=sys.stderr)
            return 2
        time_pages(Path(argv[1]), repeats)
        return 0
    if argv == ["tour"]:
        time_tour()
        return 0
    print("usage: time_pages.py pages STORE [REPEATS] | time_pages.py tour", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
