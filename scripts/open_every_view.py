"""Open every finished run of a store on the app's analysis pages (Streamlit AppTest, one
session per page and run) and print, per run, how many figures each page drew or the
exception it raised. Exit status 1 when any page raised.

    .venv/bin/python scripts/open_every_view.py STORE
"""
import json
import os
import sys
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ui.state import SELECTED_RUN_KEY  # noqa: E402
from unlearn_core.runs import RunStore  # noqa: E402

PAGES = ("results", "layers", "privacy", "embeddings", "localization")


def open_page(run_id: str, page: str) -> str:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.session_state[SELECTED_RUN_KEY] = run_id
    at.run()
    at.switch_page(f"app_pages/{page}.py").run()
    if at.exception:
        return f"{page}: EXCEPTION {at.exception[0].value[:200]}"
    figures = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return f"{page}: {len(figures)} figures"


def main(store_root: str) -> int:
    os.environ["LENS_STORE"] = store_root
    raised = 0
    for record in RunStore(store_root).list(kind="unlearn", status="done"):
        results = [open_page(record.id, page) for page in PAGES]
        raised += sum("EXCEPTION" in result for result in results)
        print(f"{record.label} ({record.id}) | " + "; ".join(results), flush=True)
    print(f"pages that raised: {raised}")
    return 1 if raised else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: scripts/open_every_view.py STORE")
    sys.exit(main(sys.argv[1]))
