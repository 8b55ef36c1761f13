"""A cold `make run` shows its first page before torch is loaded: the modules app.py
imports for the sidebar, and the store's listing, import no torch, scikit-learn, UMAP or
pandas (a fresh interpreter per check, since this one has imported them all)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "torchvision", "sklearn", "umap", "pandas")


def _heavy_modules_after(code: str, tmp_path) -> list[str]:
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={"LENS_STORE": str(tmp_path / "store"),
                                                         "HOME": str(tmp_path),
                                                         "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return eval(result.stdout.strip().splitlines()[-1])


def test_the_sidebar_modules_import_no_heavy_library(tmp_path):
    assert _heavy_modules_after("import ui.presenter, ui.state, ui.widgets, "
                                "unlearn_core.errors", tmp_path) == []


def test_storing_and_listing_runs_imports_no_heavy_library(tmp_path):
    code = ("from unlearn_core.runs import RunStore\n"
            "store = RunStore()\n"
            "run_id = store.create('unlearn', {'method': {'name': 'x'}})\n"
            "store.finish(run_id, {'accuracy': {}})\n"
            "assert [r.id for r in store.query(status='done', limit=10)] == [run_id]\n"
            "assert store.count() == 1 and store.get(run_id).report == {'accuracy': {}}")
    assert _heavy_modules_after(code, tmp_path) == []
