"""The layering of docs/architecture.md, enforced by import-linter (pyproject.toml): the
contracts hold on this tree, and each fails on a copy that breaks it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_the_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("file, line, broken", [
    ("unlearn_core/methods/ssd.py", "from ..engine import run_cells",
     "Methods never import the engine"),
    ("unlearn_core/metrics/cka.py", "import streamlit", "The core never imports Streamlit"),
    ("app_pages/privacy.py", "import torch", "Pages and their helpers never import torch"),
    ("unlearn_core/models/base.py", "from ..training import Experiment", "The core's layers"),
])
def test_each_contract_fails_when_broken(tmp_path, file, line, broken):
    for folder in ("unlearn_core", "ui", "app_pages"):
        shutil.copytree(ROOT / folder, tmp_path / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / file
    target.write_text(target.read_text() + f"\n{line}\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    broken_section = result.stdout.split("Broken contracts", 1)[1]
    assert broken in broken_section
