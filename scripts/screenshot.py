"""Screenshots of the running app for the README (dev tool, not part of the app).

Usage: python scripts/screenshot.py URL OUT.png [--click TEXT]...
Needs the `playwright` package and Debian's chromium at /usr/bin/chromium (no browser
download).
"""

import argparse

from playwright.sync_api import sync_playwright

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1500)
    parser.add_argument("--wait-for-chart", action="store_true")
    args = parser.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(args.url)
        page.wait_for_selector("[data-testid='stAppViewContainer']")
        if args.wait_for_chart:
            page.wait_for_selector(".js-plotly-plot", timeout=30_000)
        page.wait_for_timeout(1500)  # let plotly finish its transitions
        page.screenshot(path=args.out, full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
