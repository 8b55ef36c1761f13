"""Open every page of the app in a real browser (Debian's chromium through playwright) on
a run store, once per stored unlearning run, and check that none shows an exception box.

    .venv/bin/python scripts/pages_in_browser.py STORE OUT_DIR

For each finished run (newest first) it selects the run on Results, then visits every
page of the navigation, waits for it to settle, fails on an exception box and saves a
full-page screenshot under OUT_DIR. Used for issue 18's one-example deletion check.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.e2e.e2e_support import running_app  # noqa: E402
from unlearn_core.runs import RunStore  # noqa: E402

PAGES = ("Results", "Layers", "Privacy", "Embeddings", "Localization", "Keys", "Compare",
         "Sweeps", "Unlearn", "Setup", "Tour")
SETTLE_S = 60


def settle(page) -> None:
    """Until Streamlit says it is no longer running the script."""
    deadline = time.monotonic() + SETTLE_S
    time.sleep(1.0)
    while time.monotonic() < deadline:
        if page.locator("[data-testid='stStatusWidget']").count() == 0:
            return
        time.sleep(0.5)


def main(store_root: str, out_dir: str) -> int:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = RunStore(store_root).list(kind="unlearn", status="done")
    failures = []
    with running_app(out, Path(store_root)) as (url, _log), sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium")
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        settle(page)
        for record in runs:
            page.locator("[data-testid='stSidebarNav'] a", has_text="Results").first.click()
            settle(page)
            picker = page.locator(".st-key-picked_run input")
            if picker.count():
                picker.click()
                page.get_by_role("option", name=re.compile(re.escape(record.id))).click()
                settle(page)
            for title in PAGES:
                page.locator("[data-testid='stSidebarNav'] a", has_text=title).first.click()
                settle(page)
                shot = out / f"{record.id}-{title.lower()}.png"
                page.screenshot(path=shot, full_page=True)
                errors = page.locator("[data-testid='stException']").count()
                status = "EXCEPTION" if errors else "ok"
                print(f"{record.label} ({record.id}) · {title}: {status}", flush=True)
                if errors:
                    failures.append((record.id, title))
        browser.close()
    print(f"{len(runs)} runs x {len(PAGES)} pages, {len(failures)} with an exception box")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
