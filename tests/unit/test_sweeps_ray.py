"""The Ray executor against the local one: a tiny digits sweep run both ways gives the
same runs (same run specs, same seeds) and the same numbers (reports and weights), with
two Ray tasks writing into one run store at a time.

Ray is optional (requirements-ray.txt): without it this file is skipped. Both executors
use the light evaluation from conftest; in the Ray workers it is installed by their
setup hook."""

import os
from pathlib import Path

import pytest
import torch

from conftest import accuracy_and_mia_only
from unlearn_core import pipeline, sweeps
from unlearn_core.errors import UserError
from unlearn_core.runs import RunStore

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_ray():
    # Workers import unlearn_core and conftest from this checkout, wherever pytest runs.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(
                              [str(ROOT), str(ROOT / "tests")])},
                          "worker_process_setup_hook": "conftest.use_light_evaluate"})
    yield
    ray.shutdown()


@pytest.fixture
def torch_threads():
    """Set this process's torch thread count for one test, then restore it."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_ray_sweep_gives_the_same_runs_and_numbers_as_the_local_one(local_ray, tmp_path,
                                                                    monkeypatch, torch_threads):
    monkeypatch.setattr(pipeline, "evaluate", accuracy_and_mia_only)
    # One thread per run, both ways: the two Ray CPUs then run two tasks at a time.
    torch_threads(1)
    config = sweeps.SweepConfig.from_dict({
        "method": "finetune", "seeds": 2, "grid": {"lr": [0.05, 0.2], "epochs": [1]},
        "setup": {"device": "cpu", "data": {"name": "digits"},
                  "train": {"epochs": 3, "batch_size": 32}}})
    local_store, ray_store = RunStore(tmp_path / "local"), RunStore(tmp_path / "ray")
    local = sweeps.run_sweep(config, local_store)
    lines = []
    remote = sweeps.run_sweep(config, ray_store, ray_address="auto", log=lines.append)
    assert remote["summary"]["runs"] == 4 and remote["summary"]["failed"] == 0
    assert remote["summary"]["reference_models_trained"] == 4  # 2 seeds x (original, oracle)
    assert any(line.startswith("ray: 4 runs submitted") for line in lines)

    def runs(store):
        return {(r.spec["method"]["params"]["lr"], r.spec["setup"]["seed"]): r
                for r in store.list(kind="unlearn", status="done")}

    local_runs, ray_runs = runs(local_store), runs(ray_store)
    assert sorted(ray_runs) == sorted(local_runs) == [(0.05, 0), (0.05, 1), (0.2, 0), (0.2, 1)]
    for key, here in local_runs.items():
        there = ray_runs[key]
        assert there.spec == here.spec
        assert "layers" not in there.report  # the workers' setup hook did run
        assert there.report["cost"]["torch_threads"] == here.report["cost"]["torch_threads"] == 1
        for section in ("accuracy", "gap_to_oracle", "mia", "run_spec_hash"):
            assert there.report[section] == here.report[section], (key, section)
        mine, theirs = local_store.load_weights(here.id), ray_store.load_weights(there.id)
        assert all(torch.equal(mine[name], theirs[name]) for name in mine), key
    strip = ("seconds", "speedup")  # wall times differ between the executors
    for a, b in zip(local["rows"], remote["rows"]):
        assert a["params"] == b["params"]
        assert {k: v for k, v in a["metrics"].items() if k not in strip} == \
            {k: v for k, v in b["metrics"].items() if k not in strip}

    again = sweeps.run_sweep(config, ray_store, ray_address="auto")
    assert again["summary"]["reused"] == 4  # a second Ray sweep finds them in the store


def test_ray_tasks_run_with_this_process_thread_count_or_refuse_it(local_ray, tmp_path,
                                                                   torch_threads):
    # Ray alone would give a one-CPU task one thread, while the local executor runs with
    # this process's count: on mnist5k that changed the numbers (issue 9's note).
    config = sweeps.SweepConfig.from_dict({
        "method": "finetune", "seeds": 1, "grid": {"epochs": [1]},
        "setup": {"device": "cpu", "data": {"name": "digits"}, "train": {"epochs": 1}}})
    torch_threads(2)
    sweeps.run_sweep(config, RunStore(tmp_path / "two"), ray_address="auto")
    [run] = RunStore(tmp_path / "two").list(kind="unlearn", status="done")
    assert run.report["cost"]["torch_threads"] == 2
    # Ray would queue a task needing more CPUs than a node has forever: refused instead.
    torch_threads(3)
    with pytest.raises(UserError, match="each run uses 3 torch threads .*OMP_NUM_THREADS.* "
                                        "the largest Ray node has 2 CPUs"):
        sweeps.run_sweep(config, RunStore(tmp_path / "three"), ray_address="auto")
    assert RunStore(tmp_path / "three").list() == []
