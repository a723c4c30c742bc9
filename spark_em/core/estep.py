"""The E-step, written once, and the other per-model accumulators ("summarizers") that a
pass over the data runs.  Numpy only, no Spark.

A summarizer is what :func:`spark_em.data.passes.run_pass` ships to the tasks: it makes empty
statistics (``new_stats(d)``), adds one chunk of rows to them (``accumulate(stats, chunk)``)
and reads them back from their packed form (``unpack(flat, d)``).  A chunk
(:class:`Chunk`) holds raw rows ``X (n, d)``, their weights ``w (n,)`` and, computed once
on first use and shared by the initialisation's summarizers, the rows centred on the fit's
centre ``Xc`` (the E-step centres each slice as it builds its block instead).

Inside a chunk the kernels work on row slices in transposed layout: ``xt (d, m)`` and
responsibilities ``(k, m)``, so that every step is a GEMM or a contiguous elementwise
operation, with no per-component temporaries of the size of the data.  The E-step's slice
is one block ``[Q(x); x; 1]`` (:mod:`spark_em.core.densities`): one GEMM gives the
log-densities, one more N_k, S_k and the second moments.  Scoring
(``transform``, ``score``, cluster sizes) runs :meth:`EStepKernel.posteriors`: the same
log-density and the same normalisation as the fit.
"""

from __future__ import annotations

import copy

import numpy as np

from .covariance import covariance
from .mixture import LOG_2PI
from .rowkeys import row_hash, uniforms
from .sufficient_statistics import SuffStats, packed_size
from .tuning import FLUSH_BELOW, chunk_rows

_FLUSH_FACTOR = float(np.exp(FLUSH_BELOW))


class Chunk:
    """Rows of one piece of the data inside a task: ``X (n, d)`` raw, ``w (n,)``, ``bad``
    (invalid rows dropped from it, by kind, or None) and ``Xc`` (``X - centre``, computed on
    first use and shared by every summarizer of the pass)."""

    __slots__ = ("X", "w", "bad", "centre", "_xc")

    def __init__(self, X: np.ndarray, w: np.ndarray, centre=None, bad=None):
        self.X, self.w, self.centre, self.bad, self._xc = X, w, centre, bad, None

    @property
    def Xc(self) -> np.ndarray:
        if self._xc is None:
            self._xc = self.X if self.centre is None else self.X - self.centre
        return self._xc


class MixtureSummarizer:
    """Statistics of one mixture of ``k`` components (:class:`~spark_em.core.sufficient_statistics.SuffStats`),
    with moments about ``origin (k, d)`` (centred coordinates; None: about the centre)."""

    k: int
    covariance_type: str
    origin: np.ndarray | None = None

    def new_stats(self, d: int) -> SuffStats:
        return SuffStats.zeros(self.k, d, self.covariance_type, self.origin)

    def packed_size(self, d: int) -> int:
        return packed_size(self.k, d, self.covariance_type)

    def unpack(self, flat: np.ndarray, d: int) -> SuffStats:
        return SuffStats.unpack(flat, self.k, d, self.covariance_type, self.origin)

    @staticmethod
    def merge_packed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b  # every field of SuffStats adds


def _products_for(covariance_type: str, d: int):
    """The products the initialisation's scatter takes (full covariances up to
    PRODUCTS_MAX_D), or None."""
    table = covariance(covariance_type)
    return table.quadratic(d) if table.products else None


def _slices(n: int, step: int):
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


class FarComponents:
    """Components whose mean lies far from the fit's centre, measured in their own
    standard deviations: their moments about the centre would lose about
    ``eps * distance^2`` of their covariance to cancellation (a component collapsed onto one
    row, clusters 1e6 apart with unit spread), so the kernel accumulates them about the
    component's own current mean (``origin``), from the differences ``x - origin``.

    ``far``/``near``: index arrays; ``origin (k, d)``: the far means, zero for the others."""

    # squared Mahalanobis distance of a mean from the centre above which a component is far:
    # the covariances of nearer ones keep a relative precision of about 1e4 * eps = 2e-12
    LIMIT = 1e4

    def __init__(self, far: np.ndarray, origin: np.ndarray):
        self.far = far
        self.near = np.setdiff1d(np.arange(origin.shape[0]), far)
        self.origin = origin

    @classmethod
    def of(cls, means: np.ndarray, distance2: np.ndarray) -> "FarComponents | None":
        """None when every component is near (the common case: no extra work)."""
        far = np.flatnonzero(~(distance2 <= cls.LIMIT))
        if far.shape[0] == 0:
            return None
        origin = np.zeros_like(means)
        origin[far] = means[far]
        return cls(far, origin)


def _accumulate_t(stats: SuffStats, xt, w, rwt, hard, products=None, buf=None,
                  far: FarComponents | None = None) -> None:
    """Add a slice's moments; ``rwt (k, m)`` are weighted responsibilities, ``hard (m,)``
    the index of each row's most probable component; ``far`` components are accumulated
    about their own origin."""
    table = covariance(stats.covariance_type)
    stats.nk += rwt.sum(axis=1)
    if far is None:
        stats.sk += rwt @ xt.T
        table.scatter(stats.second, xt, w, rwt, products, buf)
    else:
        near = far.near
        if near.shape[0]:
            stats.sk[near] += rwt[near] @ xt.T
            table.scatter(stats.second, xt, w, rwt, products, buf, near)
        for j in far.far:
            y = xt - far.origin[j][:, None]
            stats.sk[j] += y @ rwt[j]
            table.scatter_one(stats.second, j, y, rwt[j])
    stats.weight_sum += float(w.sum())
    stats.n_rows += xt.shape[1]
    stats.hard_counts += np.bincount(hard, minlength=stats.k)


def accumulate_resp(stats: SuffStats, Xc: np.ndarray, w: np.ndarray, resp: np.ndarray) -> None:
    """Add the moments of centred rows ``Xc`` for responsibilities ``resp (n, k)``."""
    products = _products_for(stats.covariance_type, stats.d)
    width = max(stats.k * stats.d, products.size if products else 0)
    for sl in _slices(Xc.shape[0], chunk_rows(width)):
        xt = np.ascontiguousarray(Xc[sl].T)
        r = resp[sl]
        _accumulate_t(stats, xt, w[sl], np.ascontiguousarray(r.T) * w[sl],
                      np.argmax(r, axis=1), products)


def _normalise_t(lp: np.ndarray, flush: bool):
    """In place: log joint densities ``lp (k, m)`` -> responsibilities (Bayes' rule in the
    log domain: subtract each column's maximum, exponentiate, divide by the sum).
    Returns ``(log p(x) (m,), most probable component (m,))``.  With ``flush``,
    responsibilities below exp(FLUSH_BELOW) of the column's largest become exactly 0
    (after the exponential: exp(-inf) is many times slower than exp of a finite number)."""
    hard = np.argmax(lp, axis=0)
    top = lp.max(axis=0)
    finite = np.isfinite(top)
    if not finite.all():
        top = np.where(finite, top, 0.0)
    lp -= top
    np.exp(lp, out=lp)
    if flush:
        lp *= lp >= _FLUSH_FACTOR
    total = lp.sum(axis=0)
    lp /= total
    return np.log(total) + top, hard


class EStepKernel(MixtureSummarizer):
    """The E-step of one mixture, prepared once on the driver and shipped to the tasks.

    ``params`` are in data coordinates; ``centre`` is the centre of the rows the kernel
    will see (the fit's ``c0``).  ``moments=False``: only the log-likelihood, N_k and the
    hard counts (a scoring pass; ``sk`` and ``second`` stay zero, no scatter).
    """

    def __init__(self, params, centre: np.ndarray, moments: bool = True):
        p = params.shifted(centre)
        table = covariance(p.covariance_type)
        self.moments = moments
        self.covariance_type = p.covariance_type
        self.k, self.d = p.k, p.d
        log_det = table.log_det(p.precisions_cholesky, self.d)
        const = log_det - 0.5 * self.d * LOG_2PI
        self.offset = (const + np.log(p.weights))[:, None]  # (k, 1)
        # each mean's squared distance from the centre, in its own standard deviations
        at_centre = np.zeros((self.d + 1, 1))
        at_centre[-1] = 1.0
        distance2 = table.mahalanobis(p.means, p.precisions_cholesky)(at_centre)[:, 0]
        self.far = FarComponents.of(p.means, distance2)
        self.origin = self.far.origin if self.far is not None and moments else None
        exact = self.far.far if self.far is not None else ()
        self.density = table.density(p.means, p.precisions_cholesky, self.offset, exact)
        self.table = table

    def about(self, means_c: np.ndarray, components) -> "EStepKernel":
        """The same E-step with the moments of ``components`` taken about ``means_c``
        (centred coordinates) -- for a pass repeated because the first one lost digits
        (:meth:`~spark_em.core.sufficient_statistics.SuffStats.imprecise`)."""
        twin = copy.copy(self)
        far = np.union1d(np.asarray(components, dtype=np.intp),
                         self.far.far if self.far is not None else np.zeros(0, np.intp))
        origin = np.zeros((self.k, self.d))
        origin[far] = means_c[far]
        twin.far, twin.origin = FarComponents(far, origin), origin
        return twin

    def block(self, X: np.ndarray, sl: slice = slice(None), buf: np.ndarray | None = None,
              centre: np.ndarray | None = None):
        """The block ``[Q(x); x; 1]`` of the rows ``X[sl]`` (columns) centred on ``centre``
        (None: already centred), in ``buf`` when given (:mod:`spark_em.core.densities`)."""
        x = X[sl]
        m, q = x.shape[0], self.density.rows
        b = np.empty((q + self.d + 1, m)) if buf is None else buf[:, :m]
        if centre is None:
            b[q:-1] = x.T
        else:
            np.subtract(x.T, centre[:, None], out=b[q:-1])
        b[-1] = 1.0
        self.density.fill(b)
        return b

    def _slice_buffer(self) -> tuple[int, np.ndarray]:
        """Rows per slice and a buffer for one block of that many rows."""
        width = self.density.rows + self.d + 1
        step = chunk_rows(max(self.k * self.d, width))
        return step, np.empty((width, step))

    def log_joint_t(self, block: np.ndarray) -> np.ndarray:
        """log pi_k + log N(x | mu_k, Sigma_k) of a :meth:`block`'s rows: (k, m)."""
        return self.density(block)

    def accumulate(self, stats: SuffStats, chunk: Chunk) -> None:
        """Add the E-step statistics (and the log-likelihood) of one chunk: N_k, S_k and
        the quadratic moments from one GEMM of the responsibilities against the block;
        the covariance table's scatter where the block has no quadratic rows; far
        components about their own origin."""
        # rows are centred slice by slice, inside the block (no chunk-sized copy)
        X, centre, w = chunk.X, chunk.centre, chunk.w
        q = self.density.rows
        step, buf = self._slice_buffer()
        totals = np.zeros((self.k, buf.shape[0]))
        far = self.far if self.moments else None
        near = far.near if far is not None else None
        for sl in _slices(X.shape[0], step):
            b = self.block(X, sl, buf, centre)
            lp = self.log_joint_t(b)
            ll, hard = _normalise_t(lp, flush=True)
            ww = w[sl]
            stats.log_likelihood += float(ll @ ww)
            stats.weight_sum += float(ww.sum())
            stats.n_rows += b.shape[1]
            stats.hard_counts += np.bincount(hard, minlength=self.k)
            lp *= ww
            if not self.moments:
                totals[:, -1] += lp.sum(axis=1)
                continue
            totals += lp @ b.T
            xt = b[q:-1]
            if q == 0:
                self.table.scatter(stats.second, xt, ww, lp, None, None, near)
            for j in far.far if far is not None else ():
                y = xt - far.origin[j][:, None]
                stats.sk[j] += y @ lp[j]
                self.table.scatter_one(stats.second, j, y, lp[j])
        stats.nk += totals[:, -1]
        if self.moments:
            rows = slice(None) if near is None else near
            stats.sk[rows] += totals[rows, q:-1]
            if q:
                stats.second[rows] += self.density.quadratic.second_moments(totals[rows, :q])

    def posteriors(self, Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row of the centred ``Xc (n, d)``: ``(log p(x) (n,), responsibilities (n, k),
        most probable component (n,))`` -- what ``transform`` and ``score`` report."""
        n = Xc.shape[0]
        ll, resp, hard = np.empty(n), np.empty((n, self.k)), np.empty(n, dtype=np.int64)
        step, buf = self._slice_buffer()
        for sl in _slices(n, step):
            lp = self.log_joint_t(self.block(Xc, sl, buf))
            ll[sl], hard[sl] = _normalise_t(lp, flush=False)
            resp[sl] = lp.T
        return ll, resp, hard


class NearestCentreTask(MixtureSummarizer):
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
            for sl in _slices(n, step):
                xt = np.ascontiguousarray(Xc[sl].T)
                labels = np.argmin(sq_centres[:, None] - 2.0 * (self.centres @ xt), axis=0)
                rwt = np.zeros((k, xt.shape[1]))
                rwt[labels, rows[: xt.shape[1]]] = w[sl]
                xt -= self.centres[labels].T  # each row about its own component's centre
                _accumulate_t(stats, xt, w[sl], rwt, labels)
            return
        labels = np.empty(n, dtype=np.intp)
        for sl in _slices(n, step):
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


class RandomRespTask(MixtureSummarizer):
    """Statistics of uniformly random responsibilities, normalised per row (sklearn's
    ``init_params="random"``).  A row's numbers come from its content and the seed
    (:mod:`spark_em.core.rowkeys`), so the start does not depend on the partitioning."""

    def __init__(self, k: int, seed: int, covariance_type: str):
        self.k, self.seed, self.covariance_type = k, int(seed), covariance_type

    def accumulate(self, stats: SuffStats, chunk: Chunk) -> None:
        resp = uniforms(row_hash(chunk.X, self.seed), self.k)
        resp /= resp.sum(axis=1, keepdims=True)
        accumulate_resp(stats, chunk.Xc, chunk.w, resp)
