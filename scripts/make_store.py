"""Build a run store of N finished runs for the page-switching benchmark.

    .venv/bin/python scripts/make_store.py N DIR

A few real runs of the tiny `digits` setup (the test suite's: small_cnn, 3 epochs, forget
class 0, one per method in SOURCE_METHODS, each with a short training) are run first;
the rest are copies of them: the same spec, report, weights and arrays stored again
through the store's API under new ids and labels "<label> · copy k", so their rows,
summaries and folders are what a store of N real runs holds. The numbers of the copies
repeat those of the real runs (docs/benchmarks/instant-lens-cpu-2core.md says so).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unlearn_core.config import (DataSpec, MethodSpec, ModelSpec, RunSpec,  # noqa: E402
                                 SetupSpec, TrainSpec)
from unlearn_core.errors import UserError  # noqa: E402
from unlearn_core.pipeline import run_unlearning  # noqa: E402
from unlearn_core.runs import RunStore  # noqa: E402

SOURCE_METHODS = (("finetune", {"epochs": 1}), ("neggrad_plus", {"epochs": 1}),
                  ("random_label", {"epochs": 1}), ("l1_sparse", {"epochs": 1}))


def tiny_setup() -> SetupSpec:
    return SetupSpec(data=DataSpec("digits"), model=ModelSpec("small_cnn"),
                     train=TrainSpec(epochs=3, batch_size=32), seed=0, device="cpu")


def make_store(count: int, root: Path) -> RunStore:
    store = RunStore(root)
    sources = []
    for name, params in SOURCE_METHODS[:count]:
        started = time.perf_counter()
        sources.append(run_unlearning(RunSpec(tiny_setup(), MethodSpec(name, params)), store))
        print(f"real run {name}: {time.perf_counter() - started:.1f} s", flush=True)
    stored = {run_id: (store.get(run_id), store.load_weights(run_id),
                       store.load_arrays(run_id)) for run_id in sources}
    started = time.perf_counter()
    for copy in range(1, count - len(sources) + 1):
        record, weights, arrays = stored[sources[copy % len(sources)]]
        run_id = store.create(record.kind, record.spec,
                              label=f"{record.label} · copy {copy}")
        store.finish(run_id, record.report, weights=weights, arrays=arrays)
    print(f"{count - len(sources)} copies: {time.perf_counter() - started:.1f} s")
    return store


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    try:
        count = int(argv[0])
    except ValueError:
        count = 0
    if count < 1:
        print(f"N: expected a whole number of runs >= 1, got {argv[0]!r}", file=sys.stderr)
        return 2
    try:
        store = make_store(count, Path(argv[1]))
    except UserError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"{store.count(kind='unlearn', status='done')} finished runs in {store.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
