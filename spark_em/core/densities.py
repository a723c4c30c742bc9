"""The E-step's log-densities of one chunk slice, in the expanded (GEMM) form where it is
accurate and in the exact form where it is not.  Numpy only, no Spark.

A kernel turns a slice of centred rows ``xt (d, m)`` into one block ``B = [Q(x); x; 1]``
(:meth:`Density.fill`): ``Q(x)`` are the row-wise products ``x_i x_j`` (i <= j) for full
covariances (:class:`Products`, up to ``PRODUCTS_MAX_D``), the squares ``x_i^2`` for diag
and spherical (:class:`Squares`), nothing for tied and larger full ones.  Then

* the Mahalanobis terms of every component are one GEMM, ``G @ B``, by the expanded form
  ``(x - mu)^T P (x - mu) = sum_ij P_ij x_i x_j - 2 mu^T P x + mu^T P mu``
  (:class:`ExpandedDensity`);
* the statistics the M-step needs -- N_k, S_k and the second moments -- are one more GEMM,
  ``R @ B^T`` with the weighted responsibilities ``R (k, m)`` (:mod:`spark_em.core.estep`).

The expanded form loses about ``eps * (sum of its terms' magnitudes)`` to cancellation:
rows far from the centre in a component's own standard deviations, or an ill-conditioned
precision, make that large.  For every slice and component that bound is computed from each
row's largest coordinate; the rows beyond :data:`EXPANDED_ERROR_LIMIT` for a component -- and
every row of the far components the kernel names -- are evaluated in the exact form, in
float64, from the differences ``x - mu`` (the covariance table's Mahalanobis objects), as
scikit-learn computes all of them.

Blocks are float64 or float32 (the ``dtype`` Param, :mod:`spark_em.core.precision`): the
coefficients exist in both types, and a float32 block is guarded with float32's epsilon
and :data:`EXPANDED_ERROR_LIMIT_FLOAT32`.
"""

from __future__ import annotations

import numpy as np

from .precision import FLOAT32, FLOAT64, of_array

# Largest error bound (eps times the sum of the magnitudes of the expanded form's terms)
# accepted for a component's Mahalanobis term; the log-density's error is half of it.  On
# the benchmark's data (1M x 16, K=8, full, fitted components) the bound is about 5e-12:
# coordinates reach 22 about the centre, the limit would be reached at about 310; beyond
# it a component is computed in the exact form for those rows.
EXPANDED_ERROR_LIMIT = 1e-9
EPS = FLOAT64.eps

# The same bound for float32 blocks (eps 1.2e-7).  On the same data the bound is 2-3e-3 at
# the largest coordinate (22) and the largest error measured against float64 3.8e-4 (median
# 2.3e-5), random in sign from row to row: sums over rows keep float64's value to ~1e-7
# relative (the accuracy contract, tests/test_float32.py).  At 1e-2 the limit is reached at
# about 40 about the centre on that data; ill-conditioned precisions (terms of 1e12 that
# cancel) and outlying rows go to the exact form.
EXPANDED_ERROR_LIMIT_FLOAT32 = 1e-2


class Products:
    """Row-wise products ``x_i x_j`` (i <= j) of a slice, ``(d(d+1)/2, m)``, and their
    mapping to and from symmetric ``(d, d)`` matrices."""

    def __init__(self, d: int):
        self.d = d
        self.iu, self.ju = np.triu_indices(d)
        self.size = self.iu.shape[0]
        # a product x_i x_j (i < j) stands for both P_ij and P_ji in x^T P x
        self.twice_off_diagonal = np.where(self.iu == self.ju, 1.0, 2.0)

    def of(self, xt: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        d, m = xt.shape
        q = np.empty((self.size, m)) if out is None else out[:, :m]
        off = 0
        for i in range(d):
            np.multiply(xt[i], xt[i:], out=q[off : off + d - i])
            off += d - i
        return q

    def coefficients(self, matrices: np.ndarray) -> np.ndarray:
        """``(k, size)``: the coefficients of ``x^T A_k x`` on the products, for symmetric
        ``matrices (k, d, d)``."""
        return matrices[:, self.iu, self.ju] * self.twice_off_diagonal

    def symmetric(self, upper: np.ndarray) -> np.ndarray:
        """Symmetric matrices (k, d, d) from their upper triangles (k, size)."""
        full = np.zeros((upper.shape[0], self.d, self.d))
        full[:, self.iu, self.ju] = upper
        full[:, self.ju, self.iu] = upper
        return full

    second_moments = symmetric  # sums of x x^T per component, from the sums of the products

    def add_symmetric(self, target: np.ndarray, upper: np.ndarray) -> None:
        """target (k, d, d) += symmetric matrices from their upper triangles (k, size)."""
        target += self.symmetric(upper)


class Squares:
    """The squares ``x_i^2`` of a slice, ``(d, m)``: per-feature second moments."""

    def __init__(self, d: int):
        self.d = self.size = d

    def of(self, xt: np.ndarray, out: np.ndarray) -> np.ndarray:
        return np.multiply(xt, xt, out=out[:, : xt.shape[1]])

    def second_moments(self, sums: np.ndarray) -> np.ndarray:
        return sums


class Density:
    """The log joint densities ``log pi_k + log N(x | mu_k, Sigma_k)`` of the blocks a
    kernel builds: ``rows`` quadratic rows on top of ``x`` and a row of ones.
    ``quadratic``: the :class:`Products`/:class:`Squares` behind the rows (None: no rows).
    Called with a float64 or a float32 block, it computes in the block's type."""

    rows = 0
    quadratic = None
    guarded = False  # whether a call uses each row's largest coordinate (the guard's)

    def fill(self, block: np.ndarray) -> None:
        """Write the quadratic rows of ``block`` from its rows ``x`` (below them)."""
        if self.quadratic is not None:
            self.quadratic.of(block[self.rows : -1], block[: self.rows])

    def coefficients(self) -> np.ndarray:
        """Every coefficient the float32 GEMMs would use (their range decides whether
        float32 can hold them, :meth:`~spark_em.core.precision.Precision.holds`)."""
        raise NotImplementedError

    def __call__(self, block: np.ndarray, largest: np.ndarray | None = None) -> np.ndarray:
        """``(k, m)`` log joint densities of the block's rows, in its type; ``largest (m,)``:
        each row's largest coordinate in absolute value, when the caller has it."""
        raise NotImplementedError


class ExactDensity(Density):
    """From the differences ``x - mu`` (full covariances above PRODUCTS_MAX_D, tied)."""

    def __init__(self, mahalanobis, offset: np.ndarray):
        self.mahalanobis, self.offset = mahalanobis, offset
        with np.errstate(over="ignore"):
            self._offset32 = offset.astype(np.float32)

    def coefficients(self) -> np.ndarray:
        return self.mahalanobis.coefficients()

    def __call__(self, block: np.ndarray, largest: np.ndarray | None = None) -> np.ndarray:
        maha = self.mahalanobis(block)
        maha *= -0.5
        maha += self._offset32 if maha.dtype == np.float32 else self.offset
        return maha


class ExpandedDensity(Density):
    """``offset_k - (gq_k . Q(x) + gx_k . x + g0_k) / 2`` as one GEMM, with the
    Mahalanobis terms ``gq . Q + gx . x + g0`` (nonnegative) checked for cancellation per
    row and component; ``exact`` (a Mahalanobis object with ``one(j, xa)``, float64)
    computes the rows beyond the limit, and every row of the components ``always`` (the
    kernel's far components)."""

    guarded = True

    def __init__(self, quadratic, gq, gx, g0, offset, exact, always=()):
        self.quadratic, self.rows = quadratic, quadratic.size
        self.g = np.ascontiguousarray(np.hstack([-0.5 * gq, -0.5 * gx, offset - 0.5 * g0[:, None]]))
        self.offset = offset
        with np.errstate(over="ignore"):  # out of float32's range: the kernel runs in float64
            self._single = (self.g.astype(np.float32), offset.astype(np.float32))
        magnitudes = np.abs(gq).sum(axis=1), np.abs(gx).sum(axis=1), np.abs(g0)
        self.reach = _reach(*magnitudes, EPS, EXPANDED_ERROR_LIMIT)
        self.reach32 = _reach(*magnitudes, FLOAT32.eps, EXPANDED_ERROR_LIMIT_FLOAT32)
        self.exact = exact
        self.always = np.asarray(always, dtype=np.intp)

    def coefficients(self) -> np.ndarray:
        return self.g

    def inexact(self, largest: float, reach: np.ndarray | None = None) -> np.ndarray:
        """Components whose expanded form may lose more than the limit on rows whose
        coordinates are at most ``largest`` in absolute value (the far ones included)."""
        reach = self.reach if reach is None else reach
        beyond = np.flatnonzero(~(largest <= reach))
        return np.union1d(self.always, beyond) if self.always.shape[0] else beyond

    def __call__(self, block: np.ndarray, largest: np.ndarray | None = None) -> np.ndarray:
        single = of_array(block) is FLOAT32
        g, offset = self._single if single else (self.g, self.offset)
        reach = self.reach32 if single else self.reach
        lp = g @ block
        np.minimum(lp, offset, out=lp)  # a Mahalanobis term is never negative
        if not block.shape[1]:
            return lp
        per_row = largest
        if per_row is None or per_row.dtype != block.dtype:  # none, or of a float32 block
            x = block[self.rows : -1]
            per_row = np.maximum(x.max(axis=0), -x.min(axis=0))
        flagged = self.inexact(float(per_row.max()), reach)
        if flagged.shape[0]:
            xa = block[self.rows :].astype(np.float64, copy=False)
            for j in flagged:
                rows = _rows_beyond(per_row, reach[j]) if j not in self.always else None
                if rows is None:
                    lp[j] = self.offset[j] - 0.5 * self.exact.one(j, xa)
                else:
                    lp[j, rows] = self.offset[j] - 0.5 * self.exact.one(j, xa[:, rows])
        return lp


def _rows_beyond(per_row: np.ndarray, reach: float):
    """The rows whose largest coordinate is beyond ``reach`` (an index array), or None for
    all of them when they are most of the slice (one exact GEMM is cheaper than gathering)."""
    rows = np.flatnonzero(~(per_row <= reach))
    return None if 2 * rows.shape[0] > per_row.shape[0] else rows


def _reach(aq: np.ndarray, ax: np.ndarray, a0: np.ndarray, eps: float, limit: float) -> np.ndarray:
    """Per component, the largest coordinate ``r`` (absolute value) for which the error
    bound ``eps * (aq r^2 + ax r + a0)`` of the expanded form -- ``aq``, ``ax``, ``a0``
    the summed magnitudes of its quadratic, linear and constant coefficients -- stays
    within ``limit`` (-inf: never)."""
    room = limit / eps - a0
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (np.sqrt(ax * ax + 4.0 * aq * room) - ax) / (2.0 * aq)
    return np.where(room >= 0.0, np.nan_to_num(r, nan=-np.inf), -np.inf)
