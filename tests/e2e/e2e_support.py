"""Starting the app as a real server for the tests in this folder."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]
SERVER_START_S = 90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, log: Path, poll_s: float) -> float:
    """When (time.perf_counter) the health check first answered, polled every `poll_s`."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"streamlit exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return time.perf_counter()
        except OSError:
            pass
        time.sleep(poll_s)
    raise AssertionError(f"streamlit did not answer within {SERVER_START_S} s:\n{log.read_text()}")


@contextlib.contextmanager
def running_app(folder: Path, store: Path, *options: str) -> Iterator[tuple[str, Path]]:
    """`streamlit run app.py` on a free port with the run store `store` and `options`;
    yields (url, server log) once it answers, and stops it afterwards."""
    with started_app(folder, store, *options) as (url, log, _):
        yield url, log


@contextlib.contextmanager
def started_app(folder: Path, store: Path, *options: str, poll_s: float = 0.5
                ) -> Iterator[tuple[str, Path, float]]:
    """`running_app`, also yielding when its health check first answered (polled every
    `poll_s`): where scripts/time_pages.py starts its clock."""
    port = free_port()
    url = f"http://localhost:{port}"
    log = folder / "streamlit.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.headless", "true",
             # Nothing edits the sources during a test: no file watcher to feed.
             "--server.fileWatcherType", "none", *options],
            cwd=ROOT, env={**os.environ, "LENS_STORE": str(store)}, stdout=out,
            stderr=subprocess.STDOUT)
    try:
        answered = _wait_healthy(url, server, log, poll_s)
        yield url, log, answered
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
