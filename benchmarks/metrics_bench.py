"""Wall-clock timings of the array metrics at the app's working sizes.

    .venv/bin/python benchmarks/metrics_bench.py [--repeats 3] [--blas-threads N]

Prints the best of `repeats` runs per case (UMAP: the first call in this process, which
includes numba compilation or loading it from NUMBA_CACHE_DIR, then the best later call).
The load average is printed first: on a shared 2-core machine other processes distort
the numbers, multithreaded BLAS most of all, so compare runs taken at similar load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unlearn_core.metrics.cka import bootstrap_cka, cka_matrix, linear_cka, minibatch_cka  # noqa: E402
from unlearn_core.metrics.embeddings import joint_pca, joint_umap  # noqa: E402
from unlearn_core.metrics.mia import mia_all  # noqa: E402
from unlearn_core.metrics.probes import fit_linear_probe  # noqa: E402

N_EXAMPLES = 2000
WIDE = 6272  # a 32 x 14 x 14 conv map
NARROW = 10  # logits


def best_time(function: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def report(label: str, seconds: float) -> None:
    print(f"{label:<48} {seconds:8.3f} s", flush=True)


def class_structured(rng: np.random.Generator, n: int, d: int,
                     n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """ReLU activations with a low-rank class signal, like a trained conv layer."""
    labels = rng.integers(0, n_classes, n)
    mixing = rng.standard_normal((64, d)).astype(np.float32) / 8
    class_means = rng.standard_normal((n_classes, 64)).astype(np.float32)
    latent = 0.7 * class_means[labels] + rng.standard_normal((n, 64)).astype(np.float32)
    noise = 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    return np.maximum(latent @ mixing + noise, 0.0), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="limit BLAS threads (default: the library's own setting)")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}  cpus: {os.cpu_count()}  "
          f"blas threads: {args.blas_threads or 'default'}")

    rng = np.random.default_rng(0)
    wide, labels = class_structured(rng, N_EXAMPLES, WIDE)
    wide_other = wide + rng.standard_normal(wide.shape).astype(np.float32)
    narrow = rng.standard_normal((N_EXAMPLES, NARROW)).astype(np.float32)
    test_wide, test_labels = class_structured(rng, 500, WIDE)
    layers = {f"layer{i}": rng.standard_normal((N_EXAMPLES, d)).astype(np.float32)
              for i, d in enumerate((WIDE, 3136, 1568, 512, NARROW))}
    probs = rng.dirichlet(np.full(10, 0.5), N_EXAMPLES)
    repeats = args.repeats

    with threadpool_limits(args.blas_threads):
        report("linear_cka 2000x6272 vs 2000x10", best_time(lambda: linear_cka(wide, narrow), repeats))
        report("linear_cka 2000x10 vs 2000x10",
               best_time(lambda: linear_cka(narrow, narrow[:, ::-1]), repeats))
        report("linear_cka 2000x6272 vs 2000x6272",
               best_time(lambda: linear_cka(wide, wide_other), repeats))
        report("linear_cka debiased 2000x6272 vs 2000x10",
               best_time(lambda: linear_cka(wide, narrow, debiased=True), repeats))
        report("minibatch_cka 2000x6272 vs 2000x10",
               best_time(lambda: minibatch_cka(wide, narrow), repeats))
        report("bootstrap_cka 2000x6272 vs 2000x10, 200 boots",
               best_time(lambda: bootstrap_cka(wide, narrow), repeats))
        report("cka_matrix 5 layers vs themselves",
               best_time(lambda: cka_matrix(layers, layers), 1))
        report("fit_linear_probe 2000x6272 (500 test)",
               best_time(lambda: fit_linear_probe(wide, labels, test_wide, test_labels), repeats))
        report("mia_all 2000 members / 2000 non-members",
               best_time(lambda: mia_all(probs, labels, probs[::-1], labels, probs[:500],
                                         labels[:500]), 1))
        report("joint_pca 3 x 2000x6272",
               best_time(lambda: joint_pca({"o": wide, "u": wide_other, "r": wide}), repeats))
        umap_sets = {"original": wide, "unlearned": wide_other}
        report("joint_umap 2 x 2000x6272, first call",
               best_time(lambda: joint_umap(umap_sets), 1))
        report("joint_umap 2 x 2000x6272, later call",
               best_time(lambda: joint_umap(umap_sets), max(1, repeats - 1)))
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
