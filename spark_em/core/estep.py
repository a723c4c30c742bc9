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

The blocks and GEMMs are float64 or float32 (``dtype``, :mod:`spark_em.core.precision`):
in float32 the rows are centred in float64 and rounded once, and each slice's statistics
are added into the float64 :class:`~spark_em.core.sufficient_statistics.SuffStats`.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from .covariance import covariance
from .densities import Products
from .mixture import LOG_2PI, GaussianParams
from .precision import FLOAT64, Precision, precision
from .sufficient_statistics import SuffStats
from .summarizers import Chunk, MixtureSummarizer, slices
from .tuning import FLOAT32_PRODUCTS_CHUNK_FACTOR, chunk_rows


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


def _largest(x: np.ndarray) -> np.ndarray:
    """Each column's largest absolute value (NaN where a value is NaN)."""
    return np.maximum(x.max(axis=0), -x.min(axis=0))


def _slice_weights(ww: np.ndarray, dtype) -> tuple[float, np.ndarray]:
    """``(scale, weights / scale)`` of a slice's row weights in the block's type: float32
    weights are divided by a power of two near their largest (exact), so that the weighted
    products cannot overflow or vanish in float32 whatever the weights' magnitude."""
    if dtype == np.float64:
        return 1.0, ww
    top = float(ww.max()) if ww.shape[0] else 0.0
    scale = 2.0 ** round(math.log2(top)) if top > 0 else 1.0
    return scale, (ww * (1.0 / scale)).astype(np.float32)


def _normalise_t(lp: np.ndarray, flush: float | None):
    """In place: log joint densities ``lp (k, m)`` -> responsibilities (Bayes' rule in the
    log domain: subtract each column's maximum, exponentiate, divide by the sum).
    Returns ``(log p(x) (m,), most probable component (m,))``.  With ``flush`` (a factor,
    ``exp(Precision.flush_below)``), responsibilities below ``flush`` times the column's
    largest become exactly 0 (after the exponential: exp(-inf) is many times slower than
    exp of a finite number)."""
    k = lp.shape[0]
    top = lp.max(axis=0)
    # the first component reaching the maximum, as argmax(axis=0) -- which takes ten times
    # as long as a max over these (k, m) blocks -- from ranks k..1 of the maxima
    rank = np.arange(k, 0, -1, dtype=np.int16 if k < 2**15 else np.int64)[:, None]
    hard = k - np.maximum(((lp == top) * rank).max(axis=0), 1)
    finite = np.isfinite(top)
    if not finite.all():
        top = np.where(finite, top, 0.0).astype(lp.dtype, copy=False)
    lp -= top
    np.exp(lp, out=lp)
    if flush is not None:
        lp *= lp >= flush
    total = lp.sum(axis=0)
    lp /= total
    return np.log(total) + top, hard


class EStepKernel(MixtureSummarizer):
    """The E-step of one mixture, prepared once on the driver and shipped to the tasks.

    ``params`` are in data coordinates; ``centre`` is the centre of the rows the kernel
    will see (the fit's ``c0``).  ``moments=False``: only the log-likelihood, N_k and the
    hard counts (a scoring pass; ``sk`` and ``second`` stay zero, no scatter).  ``dtype``:
    the type of the blocks and GEMMs (:mod:`spark_em.core.precision`); a float32 kernel
    runs in float64 when the mixture's coefficients leave float32's comfortable range, and
    so does each slice whose centred coordinates exceed it.
    """

    def __init__(self, params, centre: np.ndarray, moments: bool = True, dtype="float64"):
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
        chosen = precision(dtype)
        if chosen is not FLOAT64 and not chosen.holds(self.density.coefficients()):
            chosen = FLOAT64  # float32 cannot hold this mixture's coefficients
        self.precision: Precision = chosen
        self._flush = float(np.exp(chosen.flush_below))

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
        (None: already centred), in ``buf`` when given (its type: the rows are centred in
        float64 and rounded once), else in the kernel's type
        (:mod:`spark_em.core.densities`)."""
        x = X[sl]
        m, q = x.shape[0], self.density.rows
        if buf is None:
            buf = np.empty((q + self.d + 1, m), dtype=self.precision.dtype)
        b = buf[:, :m]
        if centre is None:
            b[q:-1] = x.T
        else:
            np.subtract(x.T, centre[:, None], out=b[q:-1], dtype=np.float64)
        b[-1] = 1.0
        self.density.fill(b)
        return b

    def _slice_buffer(self) -> tuple[int, np.ndarray]:
        """Rows per slice and a buffer of the kernel's type for one block of that many rows."""
        width = self.density.rows + self.d + 1
        single = self.precision.dtype == np.float32
        products = isinstance(self.density.quadratic, Products)
        factor = FLOAT32_PRODUCTS_CHUNK_FACTOR if single and products else 1
        step = chunk_rows(max(self.k * self.d, width), factor)
        return step, np.empty((width, step), dtype=self.precision.dtype)

    def _slices(self, X: np.ndarray, centre: np.ndarray | None):
        """``(slice, block, largest)`` of every slice of ``X``: the block in the kernel's
        type, or in float64 for a slice whose centred coordinates float32 cannot hold
        (:mod:`.precision`); ``largest (m,)``: each row's largest centred coordinate in
        absolute value (None where nothing needs it)."""
        step, buf = self._slice_buffer()
        wide = None
        single = self.precision.dtype != np.float64
        need = single or self.density.guarded
        q, bound = self.density.rows, self.precision.max_abs
        for sl in slices(X.shape[0], step):
            b = self.block(X, sl, buf, centre)
            largest = _largest(b[q:-1]) if need else None
            if single and not (largest is None or largest.max(initial=0.0) <= bound):
                if wide is None:
                    wide = np.empty(buf.shape)
                b = self.block(X, sl, wide, centre)
            yield sl, b, largest

    def accumulate(self, stats: SuffStats, chunk: Chunk) -> None:
        """Add the E-step statistics (and the log-likelihood) of one chunk: N_k, S_k and
        the quadratic moments from one GEMM of the responsibilities against the block;
        the covariance table's scatter where the block has no quadratic rows; far
        components about their own origin.  Each slice's sums, float32 or float64, are
        added into the float64 statistics."""
        # rows are centred slice by slice, inside the block (no chunk-sized copy)
        X, centre, w = chunk.X, chunk.centre, chunk.w
        q = self.density.rows
        totals = np.zeros((self.k, q + self.d + 1))
        far = self.far if self.moments else None
        near = far.near if far is not None else None
        scratch = None  # float32 slices with scaled weights: their scatter, before scaling
        for sl, b, largest in self._slices(X, centre):
            lp = self.density(b, largest)
            ll, hard = _normalise_t(lp, self._flush)
            ww = w[sl]
            stats.log_likelihood += float(ll.astype(np.float64, copy=False) @ ww)
            stats.weight_sum += float(ww.sum())
            stats.n_rows += b.shape[1]
            stats.hard_counts += np.bincount(hard, minlength=self.k)
            scale, wb = _slice_weights(ww, b.dtype)
            lp *= wb
            if not self.moments:
                totals[:, -1] += scale * lp.sum(axis=1)
                continue
            # b @ lp.T, not lp @ b.T: the same GEMM, up to twice as fast in float32
            sums = (b @ lp.T).T
            totals += scale * sums if scale != 1.0 else sums
            if q and far is None:
                continue
            xt = b[q:-1]
            second = stats.second
            if scale != 1.0:
                scratch = np.zeros_like(stats.second) if scratch is None else scratch
                scratch.fill(0.0)
                second = scratch
            if q == 0:
                self.table.scatter(second, xt, wb, lp, None, None, near)
            if far is not None:
                x64 = xt.astype(np.float64, copy=False)
                for j in far.far:
                    y = x64 - far.origin[j][:, None]
                    stats.sk[j] += scale * (y @ lp[j])
                    self.table.scatter_one(second, j, y, lp[j])
            if scale != 1.0:
                stats.second += scale * second
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
        for sl, b, largest in self._slices(Xc, None):
            lp = self.density(b, largest)
            ll[sl], hard[sl] = _normalise_t(lp, None)
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
