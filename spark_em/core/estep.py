"""The E-step, written once: one mixture's responsibilities, log-likelihood and sufficient
statistics for a chunk of rows, and the posteriors that scoring reports.  Numpy only, no
Spark.

Inside a chunk the kernel works on row slices in transposed layout: ``xt (d, m)`` and
responsibilities ``(k, m)``, so that every step is a GEMM or a contiguous elementwise
operation, with no per-component temporaries of the size of the data.  Each slice is one
block ``[Q(x); x; 1]`` (:mod:`spark_em.core.densities`): one GEMM gives the log-densities,
one more N_k, S_k and the second moments.  Scoring (``transform``, ``score``, cluster
sizes, ``predict``) runs :meth:`EStepKernel.posteriors`: the same log-density and the same
normalisation as the fit.
"""

from __future__ import annotations

import copy

import numpy as np

from .covariance import covariance
from .mixture import LOG_2PI, GaussianParams
from .sufficient_statistics import SuffStats
from .summarizers import Chunk, MixtureSummarizer, slices
from .tuning import FLUSH_BELOW, chunk_rows

_FLUSH_FACTOR = float(np.exp(FLUSH_BELOW))


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
    def of(cls, means: np.ndarray, distance2: np.ndarray) -> FarComponents | None:
        """None when every component is near (the common case: no extra work)."""
        far = np.flatnonzero(~(distance2 <= cls.LIMIT))
        if far.shape[0] == 0:
            return None
        origin = np.zeros_like(means)
        origin[far] = means[far]
        return cls(far, origin)


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

    def about(self, means_c: np.ndarray, components) -> EStepKernel:
        """The same E-step with the moments of ``components`` taken about ``means_c``
        (centred coordinates) -- for a pass repeated because the first one lost digits
        (:meth:`~spark_em.core.sufficient_statistics.SuffStats.imprecise`)."""
        twin = copy.copy(self)
        far = np.union1d(
            np.asarray(components, dtype=np.intp),
            self.far.far if self.far is not None else np.zeros(0, np.intp),
        )
        origin = np.zeros((self.k, self.d))
        origin[far] = means_c[far]
        twin.far, twin.origin = FarComponents(far, origin), origin
        return twin

    def block(
        self,
        X: np.ndarray,
        sl: slice = slice(None),
        buf: np.ndarray | None = None,
        centre: np.ndarray | None = None,
    ):
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
        for sl in slices(X.shape[0], step):
            b = self.block(X, sl, buf, centre)
            lp = self.density(b)
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
                y = xt - far.origin[j][:, None]  # type: ignore[union-attr]
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
        for sl in slices(n, step):
            lp = self.density(self.block(Xc, sl, buf))
            ll[sl], hard[sl] = _normalise_t(lp, flush=False)
            resp[sl] = lp.T
        return ll, resp, hard


def log_responsibilities(params: GaussianParams, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(log p(x_i) (n,), log r_ik (n, k))`` of the rows ``X (n, d)`` under ``params``, by
    the fit's E-step about the mixture's mean (``predict``, ``predictProbability``)."""
    c = params.centre
    ll, resp, _ = EStepKernel(params, c, moments=False).posteriors(
        np.asarray(X, dtype=np.float64) - c
    )
    with np.errstate(divide="ignore"):
        return ll, np.log(resp)
