"""What the AppTest files share: where the app is, how long a script run may take, and how
to read texts and plotly figures off a page."""

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def chart_specs(at: AppTest) -> list[dict]:
    """The page's plotly figures (their JSON specs), in page order."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def charts(at: AppTest) -> dict[str, dict]:
    """The page's plotly figures by title as read (the line breaks of a title wrapped to
    fit beside another chart read as spaces; of several with one title, the last)."""
    return {spec["layout"]["title"]["text"].replace("<br>", " "): spec
            for spec in chart_specs(at)}


def chart(at: AppTest, title_start: str) -> dict:
    return next(spec for title, spec in charts(at).items() if title.startswith(title_start))


def trace(spec: dict, name: str) -> dict:
    return next(t for t in spec["data"] if t.get("name") == name)


def open_setup_page(store_root, monkeypatch) -> AppTest:
    """The app on a store, switched to the Setup page by name (it opens on the Tour)."""
    monkeypatch.setenv("LENS_STORE", str(store_root))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    at.switch_page("app_pages/setup.py").run()
    assert not at.exception, at.exception
    return at
