# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)
PORT ?= 8501

.PHONY: run test test-fast lint bench clean-venv

$(STAMP): requirements.txt
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip check
	touch $@

run: $(STAMP)
	$(VENV)/bin/streamlit run app.py --server.address localhost --server.port $(PORT)

# Style and likely bugs (ruff), and the layering of docs/architecture.md (import-linter).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# Every test, one worker per core with one BLAS/torch thread each (as test-fast): the
# whole suite took 498 s in one process on 2 cores, 258 s in two.
test: lint
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -n auto

# The edit-test loop: everything but the slow, browser and claims tests (see README), one
# worker per core. One BLAS/torch thread per worker: with two each, 2 workers on 2 cores
# were no faster than one process (111 s against 106 s); with one, 47 s.
test-fast: lint
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -n auto -m "not slow and not e2e and not claims"

bench: $(STAMP)
	$(PY) -m unlearn_core bench --quick

clean-venv:
	rm -rf $(VENV)
