"""Initial centres from the driver-side sample (numpy only, no Spark).

The validation pass draws a weighted reservoir sample of the data (``initSampleSize`` rows).
``kmeans`` runs k-means (k-means++ seeding, then Lloyd iterations) on that sample,
``k-means++`` uses the seeding alone, and ``random_from_data`` picks k sample rows.  The
chosen centres then become hard labels over the *whole* data set (nearest centre) and one
M-step turns them into weights, means and covariances — as sklearn does with its labels.
"""

from __future__ import annotations

import numpy as np

# "sample-em" (the default) searches the start on the sample: spark_em.core.sample_search
INIT_MODES = ("sample-em", "kmeans", "k-means++", "random", "random_from_data")


def _sq_dist(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    d2 = np.einsum("nd,nd->n", X, X)[:, None] - 2.0 * (X @ C.T) + np.einsum("kd,kd->k", C, C)
    return np.maximum(d2, 0.0)


def kmeans_plusplus(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (as sklearn: 2 + log(k) candidates per step). X: (m, d)."""
    m = X.shape[0]
    trials = 2 + int(np.log(k))
    centres = np.empty((k, X.shape[1]))
    centres[0] = X[rng.integers(m)]
    closest = _sq_dist(X, centres[:1])[:, 0]
    for c in range(1, k):
        total = closest.sum()
        if total <= 0:  # fewer distinct points than k
            centres[c] = X[rng.integers(m)]
            continue
        cand = np.searchsorted(np.cumsum(closest), rng.random(trials) * total)
        cand = np.minimum(cand, m - 1)
        cand_d = np.minimum(closest[None, :], _sq_dist(X, X[cand]).T)
        best = int(np.argmin(cand_d.sum(axis=1)))
        centres[c] = X[cand[best]]
        closest = cand_d[best]
    return centres


def lloyd(X: np.ndarray, centres: np.ndarray, max_iter: int = 100, tol: float = 1e-4) -> np.ndarray:
    """Lloyd iterations from ``centres``; stops when the centres move less than
    ``tol * mean variance`` (sklearn's criterion).  Empty clusters keep their centre."""
    centres = centres.copy()
    k = centres.shape[0]
    threshold = tol * float(np.mean(np.var(X, axis=0)))
    for _ in range(max_iter):
        labels = np.argmin(_sq_dist(X, centres), axis=1)
        counts = np.bincount(labels, minlength=k)
        # per-feature bincounts: np.add.at is many times slower, and a one-hot GEMM runs
        # into the driver's multi-threaded BLAS competing with the executors for the cores
        sums = np.column_stack(
            [np.bincount(labels, X[:, j], minlength=k) for j in range(X.shape[1])]
        )
        new = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres)
        shift = float(np.sum((new - centres) ** 2))
        centres = new
        if shift <= threshold:
            break
    return centres


def initial_centres(sample: np.ndarray, k: int, mode: str, rng: np.random.Generator) -> np.ndarray:
    """k centres from the sample (m, d) for ``mode`` in kmeans / k-means++ / random_from_data
    (``sample-em`` is :func:`spark_em.core.sample_search.search_start`'s)."""
    if mode == "random_from_data":
        return sample[rng.choice(sample.shape[0], size=k, replace=sample.shape[0] < k)].copy()
    seeds = kmeans_plusplus(sample, k, rng)
    if mode == "k-means++":
        return seeds
    if mode == "kmeans":
        return lloyd(sample, seeds)
    raise ValueError(f"initMode must be one of {INIT_MODES}, got {mode!r}")
