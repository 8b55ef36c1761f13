"""The Ray sweep's cost against the local executor (docs/benchmarks/ray-sweep-mnist5k.md;
dev tool, not part of the app).

Usage: OMP_NUM_THREADS=1 python scripts/bench_ray_sweep.py OUT_DIR [--lrs 0.02,0.05,...]
       [--seeds 3] [--ray-cpus 2]

1. a sweep of finetune over `--lrs` x `--seeds` on mnist5k through a local Ray instance
   (`ray.init(num_cpus=...)`, the package shipped by py_modules as the CLI does) into a
   fresh store: wall time, the driver's store writes, bytes through the object store;
2. the same sweep with the local executor into a second store that starts with a copy of
   the first one's reference cache (the references the Ray tasks trained), so only the
   runs are recomputed;
3. run by run: the same spec, report sections and weights?
Writes OUT_DIR/result.json and the two sweep logs.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unlearn_core import engine  # noqa: E402
from unlearn_core.engine import ray_executor  # noqa: E402
from unlearn_core.runs import RunStore  # noqa: E402


def runs_by_key(store: RunStore) -> dict:
    return {(r.spec["method"]["params"]["lr"], r.spec["setup"]["seed"]): r
            for r in store.list(kind="unlearn")}


def compare(ray_store: RunStore, local_store: RunStore) -> dict:
    theirs, mine = runs_by_key(ray_store), runs_by_key(local_store)
    differing = []
    for key, here in mine.items():
        there = theirs.get(key)
        same = (there is not None and there.spec == here.spec and there.status == here.status
                and all(there.report.get(s) == here.report.get(s)
                        for s in ("accuracy", "gap_to_oracle", "mia", "layers", "run_spec_hash"))
                and all(torch.equal(a, ray_store.load_weights(there.id)[n])
                        for n, a in local_store.load_weights(here.id).items()))
        if not same:
            differing.append(list(key))
    return {"local_runs": len(mine), "ray_runs": len(theirs),
            "same_keys": sorted(mine) == sorted(theirs), "differing": differing}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--lrs", default="0.02,0.05,0.08,0.1,0.15,0.2,0.25,0.3,0.4")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--ray-cpus", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    config = engine.SweepConfig.from_dict({
        "method": "finetune", "seeds": args.seeds,
        "grid": {"lr": [float(v) for v in args.lrs.split(",")]},
        "setup": {"device": "cpu", "data": {"name": "mnist5k"}}})
    result = {"config": engine.describe_config(config), "torch_threads": torch.get_num_threads()}

    import ray
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False,
             runtime_env=ray_executor.runtime_env())
    ray_store = RunStore(args.out / "ray-store")
    with open(args.out / "ray.log", "w") as log:
        started = time.perf_counter()
        remote = engine.run_sweep(config, ray_store, ray_address="local",
                                  log=lambda line: print(line, file=log, flush=True))
        result["ray"] = {"wall_seconds": time.perf_counter() - started, **remote["summary"]}
    ray.shutdown()
    (args.out / "result.json").write_text(json.dumps(result, indent=2))

    local_store = RunStore(args.out / "local-store")
    shutil.copytree(ray_store.cache_dir, local_store.cache_dir, dirs_exist_ok=True)
    with open(args.out / "local.log", "w") as log:
        started = time.perf_counter()
        local = engine.run_sweep(config, local_store,
                                 log=lambda line: print(line, file=log, flush=True))
        result["local"] = {"wall_seconds": time.perf_counter() - started, **local["summary"]}
    result["comparison"] = compare(ray_store, local_store)
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    (args.out / "table.md").write_text(remote["table"])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
