"""The summarizers of the initialisation pass: hard labels to the nearest of k centres
(k-means and its kin) and random responsibilities.  Numpy only, no Spark.

Both give a mixture's :class:`~spark_em.core.sufficient_statistics.SuffStats`, so that one
M-step turns them into starting parameters, as scikit-learn does with its initial labels.
"""

from __future__ import annotations

import numpy as np

from .covariance import covariance
from .rowkeys import row_hash, uniforms
from .sufficient_statistics import SuffStats
from .summarizers import Chunk, MixtureSummarizer, slices
from .tuning import chunk_rows


def _products_for(covariance_type: str, d: int):
    """The products the initialisation's scatter takes (full covariances up to
    PRODUCTS_MAX_D), or None."""
    table = covariance(covariance_type)
    return table.quadratic(d) if table.products else None


def _accumulate_t(stats: SuffStats, xt, w, rwt, hard, products=None) -> None:
    """Add a slice's moments; ``rwt (k, m)`` are weighted responsibilities, ``hard (m,)``
    the index of each row's most probable component."""
    stats.nk += rwt.sum(axis=1)
    stats.sk += rwt @ xt.T
    covariance(stats.covariance_type).scatter(stats.second, xt, w, rwt, products)
    stats.weight_sum += float(w.sum())
    stats.n_rows += xt.shape[1]
    stats.hard_counts += np.bincount(hard, minlength=stats.k)


def accumulate_resp(stats: SuffStats, Xc: np.ndarray, w: np.ndarray, resp: np.ndarray) -> None:
    """Add the moments of centred rows ``Xc`` for responsibilities ``resp (n, k)``."""
    products = _products_for(stats.covariance_type, stats.d)
    width = max(stats.k * stats.d, products.size if products else 0)
    for sl in slices(Xc.shape[0], chunk_rows(width)):
        xt = np.ascontiguousarray(Xc[sl].T)
        r = resp[sl]
        _accumulate_t(
            stats, xt, w[sl], np.ascontiguousarray(r.T) * w[sl], np.argmax(r, axis=1), products
        )


class NearestCentreSummarizer(MixtureSummarizer):
    """Statistics of hard assignments to the nearest of ``centres`` (k-means style init).

    Each row belongs to one component, so the moments are taken about the component's own
    centre (``origin``) at no extra cost: exact however far it lies from the fit's centre
    (an outlier that is a centre by itself gets a covariance of exactly regCovar)."""

    def __init__(self, centres: np.ndarray, centre: np.ndarray, covariance_type: str):
        self.centres = np.asarray(centres, dtype=np.float64) - centre
        self.origin = self.centres
        self.covariance_type = covariance_type
        self.k = self.centres.shape[0]

    def accumulate(self, stats: SuffStats, chunk: Chunk) -> None:
        Xc, w = chunk.Xc, chunk.w
        n, d = Xc.shape
        k = self.k
        # argmin ||x - c||^2 = argmin (||c||^2 - 2 c.x): the ||x||^2 term is common
        sq_centres = np.einsum("kd,kd->k", self.centres, self.centres)
        step = chunk_rows(k * d)
        if not covariance(self.covariance_type).hard_scatter_by_component:
            rows = np.arange(step)
            for sl in slices(n, step):
                xt = np.ascontiguousarray(Xc[sl].T)
                labels = np.argmin(sq_centres[:, None] - 2.0 * (self.centres @ xt), axis=0)
                rwt = np.zeros((k, xt.shape[1]))
                rwt[labels, rows[: xt.shape[1]]] = w[sl]
                xt -= self.centres[labels].T  # each row about its own component's centre
                _accumulate_t(stats, xt, w[sl], rwt, labels)
            return
        labels = np.empty(n, dtype=np.intp)
        for sl in slices(n, step):
            labels[sl] = np.argmin(sq_centres - 2.0 * (Xc[sl] @ self.centres.T), axis=1)
        # Full covariances from hard labels: each row adds to its own component only.  Rows
        # sorted by label once, then one syrk per component over its contiguous rows: n d^2
        # in all, not k n d^2.
        counts = np.bincount(labels, minlength=k)
        order = np.argsort(labels, kind="stable")
        Xs, ws = Xc[order], w[order]
        bounds = np.concatenate([[0], np.cumsum(counts)])
        for j in np.flatnonzero(counts):
            sl = slice(bounds[j], bounds[j + 1])
            Xj, wj = Xs[sl] - self.centres[j], ws[sl]
            stats.nk[j] += wj.sum()
            stats.sk[j] += wj @ Xj
            z = Xj * np.sqrt(wj)[:, None]
            stats.second[j] += z.T @ z  # one symmetric rank update (syrk)
        stats.weight_sum += float(w.sum())
        stats.n_rows += n
        stats.hard_counts += counts


class RandomResponsibilitySummarizer(MixtureSummarizer):
    """Statistics of uniformly random responsibilities, normalised per row (sklearn's
    ``init_params="random"``).  A row's numbers come from its content and the seed
    (:mod:`spark_em.core.rowkeys`), so the start does not depend on the partitioning."""

    def __init__(self, k: int, seed: int, covariance_type: str):
        self.k, self.seed, self.covariance_type = k, int(seed), covariance_type

    def accumulate(self, stats: SuffStats, chunk: Chunk) -> None:
        resp = uniforms(row_hash(chunk.raw, self.seed), self.k)
        resp /= resp.sum(axis=1, keepdims=True)
        accumulate_resp(stats, chunk.Xc, chunk.w, resp)
