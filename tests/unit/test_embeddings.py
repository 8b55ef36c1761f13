"""Joint 2-d embeddings: shared coordinates, shapes, displacement, seeded UMAP."""

import numpy as np
import pytest

from unlearn_core.metrics.embeddings import (
    displacement,
    fit_joint_pca,
    joint_pca,
    joint_umap,
)


def test_joint_pca_shares_coordinates_across_sets():
    rng = np.random.default_rng(0)
    original = rng.standard_normal((50, 12))
    unlearned = np.concatenate([original[:10], rng.standard_normal((30, 12)) + 2.0])
    coords = joint_pca({"original": original, "unlearned": unlearned})
    assert coords["original"].shape == (50, 2)
    assert coords["unlearned"].shape == (40, 2)
    # The same point in two sets lands on the same coordinates.
    np.testing.assert_allclose(coords["unlearned"][:10], coords["original"][:10], atol=1e-5)
    assert not np.allclose(coords["unlearned"][10:15], coords["original"][10:15])


def test_joint_pca_explained_variance_and_flattening():
    rng = np.random.default_rng(1)
    # Variance concentrated in one direction: the first axis explains most of it.
    direction = rng.standard_normal(24)
    features = 10 * rng.standard_normal((80, 1)) * direction + rng.standard_normal((80, 24))
    fit = fit_joint_pca({"a": features[:40].reshape(40, 2, 3, 4), "b": features[40:]},
                        n_components=3)
    assert fit.coords["a"].shape == (40, 3)
    assert fit.explained_variance_ratio.shape == (3,)
    assert fit.explained_variance_ratio[0] > 0.8
    assert np.all(np.diff(fit.explained_variance_ratio) <= 0)


def test_joint_pca_errors():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="same number of features"):
        joint_pca({"a": rng.standard_normal((5, 3)), "b": rng.standard_normal((5, 4))})
    with pytest.raises(ValueError, match="n_components"):
        joint_pca({"a": rng.standard_normal((5, 3))}, n_components=4)
    with pytest.raises(ValueError, match="feature_sets"):
        joint_pca({})


def test_displacement():
    a = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, -1.0]])
    b = np.array([[3.0, 4.0], [1.0, 1.0], [2.0, 1.0]])
    np.testing.assert_allclose(displacement(a, b), [5.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="same shape"):
        displacement(a, b[:2])


# Tiny n, so the time is numba's: ~10 s per process once NUMBA_CACHE_DIR is warm, ~40 s
# on a cold cache on a busy 2-core machine (importing pynndescent alone compiles ~25 s).
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_joint_umap_shapes_and_determinism():
    rng = np.random.default_rng(3)
    sets = {"original": rng.standard_normal((40, 80)),
            "unlearned": rng.standard_normal((25, 80)) + 3.0}
    first = joint_umap(sets, seed=7, n_neighbors=10)
    assert first["original"].shape == (40, 2)
    assert first["unlearned"].shape == (25, 2)
    assert np.all(np.isfinite(first["original"]))
    second = joint_umap(sets, seed=7, n_neighbors=10)
    for name in sets:
        np.testing.assert_array_equal(first[name], second[name])
    with pytest.raises(ValueError, match="n_neighbors"):
        joint_umap(sets, n_neighbors=1)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_umap_leaves_torchs_thread_count_as_it_found_it():
    """UMAP's fit starts numba's threading layer, which set the process's OpenMP thread
    count to the number of cores: torch's went from 1 to 2, and with it every later
    training's numbers (found as a Retrain drifting 7e-6 from its oracle in the suite).
    In a fresh process, where numba's layer has not started yet, after torch has done
    some work (as it has in the app: a torch that has not started its threads yet took
    its own count back)."""
    import subprocess
    import sys
    from pathlib import Path
    script = ("import torch\n"
              "torch.set_num_threads(1)\n"
              "torch.ones(512, 512) @ torch.ones(512, 512)\n"
              "import numpy as np\n"
              "from unlearn_core.metrics.embeddings import joint_umap\n"
              "x = np.random.default_rng(0).normal(size=(60, 8))\n"
              "joint_umap({'a': x, 'b': x + 1.0}, seed=0)\n"
              "print(torch.get_num_threads())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=170)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "1"
