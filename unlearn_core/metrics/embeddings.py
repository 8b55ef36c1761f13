"""2-d maps of activations, fitted jointly so several models share one coordinate system.

Each function takes a dict of feature sets (for example the original, unlearned and
oracle models' activations of the same probe examples), fits ONE projection on their
concatenation and returns each set's coordinates. Because the projection is shared, a
point that moved between two panels really moved, and `displacement` measures by how
much. Sets may hold different numbers of examples but must have the same number of
features; more than two dimensions are flattened per example.

Fits run in float32: the coordinates are for plots, and activations of several models
at once can be large (3 x 2,000 x 6,272 values are 150 MB in float32).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA

from .cka import as_example_matrix, check_int, to_numpy

__all__ = ["JointPCA", "displacement", "fit_joint_pca", "joint_pca", "joint_umap"]

# UMAP is fitted on at most this many principal components: neighbour search on raw conv
# activations is slow and no better (the usual PCA-then-UMAP recipe).
_UMAP_INPUT_DIM = 50

# Rows per block in the exact neighbour search: a (block x n) float32 distance block.
_NEIGHBOUR_BLOCK = 1024


@dataclass(frozen=True)
class JointPCA:
    """coords: per set, (n_i, n_components) coordinates in the shared principal axes.
    explained_variance_ratio: (n_components,) fraction of the pooled variance per axis."""

    coords: dict[str, np.ndarray]
    explained_variance_ratio: np.ndarray


def _stacked(feature_sets: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, slice]]:
    """All sets as one float32 matrix, and the rows of each set in it."""
    if not isinstance(feature_sets, Mapping) or len(feature_sets) == 0:
        raise ValueError("feature_sets: expected a non-empty dict of name -> (n, d) features, "
                         f"got {type(feature_sets).__name__}")
    matrices = {name: as_example_matrix(value, f"feature_sets[{name!r}]", dtype=np.float32)
                for name, value in feature_sets.items()}
    widths = {name: matrix.shape[1] for name, matrix in matrices.items()}
    if len(set(widths.values())) > 1:
        raise ValueError("feature_sets: every set must have the same number of features per "
                         f"example, got {widths}")
    rows = {}
    start = 0
    for name, matrix in matrices.items():
        rows[name] = slice(start, start + matrix.shape[0])
        start += matrix.shape[0]
    return np.concatenate(list(matrices.values())), rows


def fit_joint_pca(feature_sets: Mapping[str, Any], n_components: int = 2,
                  seed: int = 0) -> JointPCA:
    """One seeded PCA on the concatenation of every set; coordinates and explained variance.

    The solver is scikit-learn's "auto" choice (randomized for large inputs, seeded).
    """
    seed = check_int("seed", seed, 0)
    pooled, rows = _stacked(feature_sets)
    n_components = check_int("n_components", n_components, 1)
    if n_components > min(pooled.shape):
        raise ValueError(f"n_components: at most {min(pooled.shape)} for pooled features of "
                         f"shape {pooled.shape}, got {n_components}")
    pca = PCA(n_components=n_components, random_state=seed)
    coords = pca.fit_transform(pooled)
    return JointPCA(coords={name: coords[part] for name, part in rows.items()},
                    explained_variance_ratio=pca.explained_variance_ratio_)


def joint_pca(feature_sets: Mapping[str, Any], n_components: int = 2,
              seed: int = 0) -> dict[str, np.ndarray]:
    """Shared-axis PCA coordinates, (n_i, n_components) per set; see `fit_joint_pca` for
    the explained variance as well."""
    return fit_joint_pca(feature_sets, n_components=n_components, seed=seed).coords


def _use_writable_numba_cache() -> None:
    """Point numba's on-disk cache at a writable folder unless the user chose one.

    UMAP's numba functions are compiled on first use (about 10 s on 2 cores); with a
    cache that survives the process, later processes load them instead. The variable is
    read when numba is first imported, so this must run before that import.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    for folder in (Path.home() / ".cache" / "unlearning-lens" / "numba",
                   Path(tempfile.gettempdir()) / "unlearning-lens-numba"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            os.environ["NUMBA_CACHE_DIR"] = str(folder)
            return


def _exact_neighbours(points: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and distances of each point's `n_neighbors` nearest points, itself first
    (UMAP's convention), by blocks of rows so memory stays O(block x n)."""
    squared_norms = np.einsum("ij,ij->i", points, points)
    indices = np.empty((points.shape[0], n_neighbors), dtype=np.int64)
    distances = np.empty((points.shape[0], n_neighbors), dtype=np.float32)
    for start in range(0, points.shape[0], _NEIGHBOUR_BLOCK):
        rows = np.arange(start, min(start + _NEIGHBOUR_BLOCK, points.shape[0]))
        squared = (squared_norms[rows, None] + squared_norms[None, :]
                   - 2.0 * points[rows] @ points.T)
        # Rounding can make a squared distance slightly negative; and a point must come
        # first in its own list even when it has exact duplicates.
        np.maximum(squared, 0.0, out=squared)
        squared[np.arange(rows.size), rows] = -1.0
        nearest = np.argpartition(squared, n_neighbors - 1, axis=1)[:, :n_neighbors]
        nearest_squared = np.take_along_axis(squared, nearest, axis=1)
        order = np.argsort(nearest_squared, axis=1)
        indices[rows] = np.take_along_axis(nearest, order, axis=1)
        distances[rows] = np.sqrt(np.maximum(np.take_along_axis(nearest_squared, order,
                                                                axis=1), 0.0))
    return indices, distances


def joint_umap(feature_sets: Mapping[str, Any], seed: int = 0, n_neighbors: int = 15,
               min_dist: float = 0.1) -> dict[str, np.ndarray]:
    """One seeded 2-d UMAP fitted on the concatenation of every set; (n_i, 2) per set.

    Inputs with more than 50 features are first reduced to 50 principal components
    (seeded PCA) for speed. The exact Euclidean nearest neighbours are computed here with
    NumPy and handed to UMAP (`precomputed_knn`): for fewer than 4,096 points umap-learn
    0.5 would otherwise compute all pairwise distances through a per-pair Python
    callback, tens of seconds for 4,000 points on 2 cores. With a seed, UMAP runs
    single-threaded and is reproducible. `n_neighbors` (which counts the point itself)
    is capped at the pooled number of examples minus one, as UMAP itself does.

    umap is imported here, not at module import: its first use compiles numba code
    (about 10 s; partly cached on disk under NUMBA_CACHE_DIR, which is set to
    ~/.cache/unlearning-lens/numba if unset).
    """
    seed = check_int("seed", seed, 0)
    n_neighbors = check_int("n_neighbors", n_neighbors, 2)
    if not (isinstance(min_dist, (float, int)) and 0.0 <= min_dist <= 1.0):
        raise ValueError(f"min_dist: expected a number in [0, 1], got {min_dist!r}")
    pooled, rows = _stacked(feature_sets)
    # Spectral initialisation and the neighbour graph need a few points beyond the
    # 2 output dimensions.
    if pooled.shape[0] < 4:
        raise ValueError(f"feature_sets: UMAP needs at least 4 examples in all, got "
                         f"{pooled.shape[0]}")
    if pooled.shape[1] > _UMAP_INPUT_DIM:
        n_components = min(_UMAP_INPUT_DIM, pooled.shape[0])
        # Two power iterations instead of scikit-learn's 7: ample for a neighbour graph,
        # and the reduction is otherwise a third of the fit's time.
        pooled = PCA(n_components=n_components, svd_solver="randomized", iterated_power=2,
                     random_state=seed).fit_transform(pooled)
    else:
        # Distances do not change; centring keeps the float32 |a|^2 + |b|^2 - 2ab
        # expansion in the neighbour search from losing precision to a large offset.
        pooled = pooled - pooled.mean(axis=0)
    n_neighbors = min(n_neighbors, pooled.shape[0] - 1)  # UMAP's own cap
    neighbour_indices, neighbour_distances = _exact_neighbours(pooled, n_neighbors)

    _use_writable_numba_cache()
    with warnings.catch_warnings():
        # umap announces on import that TensorFlow (for ParametricUMAP) is missing.
        warnings.simplefilter("ignore", ImportWarning)
        import umap  # noqa: PLC0415 -- deferred: importing umap compiles numba code

    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist,
                        random_state=seed, n_jobs=1,
                        precomputed_knn=(neighbour_indices, neighbour_distances, None))
    # The fit starts numba's threading layer, which sets the process's OpenMP thread count
    # to the number of cores: torch's count with it once torch's threads are running (1 ->
    # 2 on this machine), and so the numbers of every later training. Put back.
    torch_threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():
            # Without a search index UMAP cannot `transform` new points; we never do.
            warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]")
            coords = reducer.fit_transform(pooled)
    finally:
        torch.set_num_threads(torch_threads)
    return {name: coords[part] for name, part in rows.items()}


def displacement(a: Any, b: Any) -> np.ndarray:
    """Per-example Euclidean distance between two coordinate arrays of the same shape
    (n, k), e.g. the same examples under two models in a joint embedding."""
    first = to_numpy(a, "a")
    second = to_numpy(b, "b")
    if first.ndim != 2 or first.shape != second.shape:
        raise ValueError(f"a and b: expected two (n, k) arrays of the same shape, got "
                         f"{first.shape} and {second.shape}")
    first = as_example_matrix(first, "a")
    second = as_example_matrix(second, "b")
    return np.sqrt(np.sum((first - second) ** 2, axis=1))
