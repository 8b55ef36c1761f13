"""The Ray test cluster's worker setup hook (tests/unit/test_sweeps_ray.py).

Every worker process of the test cluster runs `setup_worker` before its first task:

* it moves to $HOME, which the test points at a fresh folder, so neither the working
  directory nor HOME holds a run store;
* an audit hook (sys.addaudithook) writes a marker whenever the process opens, lists,
  creates, renames or removes anything under $LENS_TEST_FORBIDDEN (the folder the test's
  stores live in) or connects to any SQLite file: the test asserts there is none;
* it swaps in the light evaluation (conftest.accuracy_and_mia_only);
* it wraps the run task's first step (`ray_executor.resolve_run`) so each attempt of a run
  writes a marker naming its method, parameters, seed and pid, and, when the run's
  parameters equal those in the markers folder's pause.json, waits a moment first so
  the test can kill the worker mid-task.
"""

import json
import os
import sys
import time
import uuid
from pathlib import Path

from conftest import use_light_evaluate

_WATCHED_EVENTS = ("open", "os.listdir", "os.scandir", "os.mkdir", "os.rename", "os.replace",
                   "os.remove", "os.rmdir", "shutil.rmtree")


def _marker(name: str, text: str) -> None:
    folder = Path(os.environ["LENS_TEST_MARKERS"])
    (folder / f"{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}").write_text(text)


def _watch_store(forbidden: str) -> None:
    busy = False

    def hook(event: str, args: tuple) -> None:
        nonlocal busy
        if busy or not (event in _WATCHED_EVENTS or event == "sqlite3.connect"):
            return
        paths = [os.fsdecode(a) for a in args if isinstance(a, (str, bytes, os.PathLike))]
        if event == "sqlite3.connect" or any(p.startswith(forbidden) for p in paths):
            busy = True  # writing the marker opens a file too
            try:
                _marker("store_touched", f"{event} {paths}")
            finally:
                busy = False

    sys.addaudithook(hook)


def _count_attempts() -> None:
    from unlearn_core.engine import ray_executor
    resolve = ray_executor.resolve_run
    pause_file = Path(os.environ["LENS_TEST_MARKERS"]) / "pause.json"

    def counted(run_spec):
        params = run_spec.method.params
        _marker("attempt", json.dumps({"method": run_spec.method.name, "params": params,
                                       "seed": run_spec.setup.seed, "pid": os.getpid()}))
        if pause_file.exists() and params == json.loads(pause_file.read_text()):
            time.sleep(3.0)  # long enough for the test to find the marker and kill us
        return resolve(run_spec)

    ray_executor.resolve_run = counted


def setup_worker() -> None:
    os.chdir(os.environ["HOME"])
    _watch_store(os.environ["LENS_TEST_FORBIDDEN"])
    use_light_evaluate()
    _count_attempts()
    import unlearn_core
    _marker("worker", json.dumps({"cwd": os.getcwd(), "home": os.environ["HOME"],
                                  "package": unlearn_core.__file__}))
