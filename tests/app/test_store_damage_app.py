"""The app with a damaged store: a damaged run is listed with its reason on the Results
page (no exception), and a damaged index shows one error naming `runs repair`."""

from pathlib import Path

import torch
from streamlit.testing.v1 import AppTest

from unlearn_core.runs import RunStore

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def _texts(at) -> str:
    return "\n".join(str(e.value) for e in [*at.markdown, *at.error, *at.info])


def test_a_damaged_run_is_listed_with_its_reason(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "store")
    run_id = store.create("unlearn", {"i": 1}, label="Finetune · class 0")
    store.finish(run_id, {"x": 1}, weights={"w": torch.ones(2)}, arrays={"a": torch.ones(2).numpy()})
    (store.run_dir(run_id) / "report.json").write_text('{"x": ')
    monkeypatch.setenv("LENS_STORE", str(store.root))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("app_pages/results.py").run()
    assert not at.exception, at.exception
    assert "1 failed, cancelled or damaged run(s)" in [e.label for e in at.expander]
    assert f"({run_id}): damaged — report.json is unreadable" in _texts(at)
    assert "No finished runs yet" in _texts(at)


def test_a_damaged_index_names_the_repair_command(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "store")
    store.db_path.write_bytes(b"not a database" * 500)
    for side in ("index.sqlite-wal", "index.sqlite-shm"):
        (store.root / side).unlink(missing_ok=True)
    monkeypatch.setenv("LENS_STORE", str(store.root))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert any("python -m unlearn_core runs repair" in e.value for e in at.error)
