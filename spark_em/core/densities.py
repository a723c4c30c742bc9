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
precision, make that large.  For every slice and component that bound is computed from the
slice's largest coordinate; components beyond :data:`EXPANDED_ERROR_LIMIT` -- and the far
components the kernel names -- are evaluated in the exact form, from the differences
``x - mu`` (the covariance table's Mahalanobis objects), as scikit-learn computes all of them.
"""

from __future__ import annotations

import numpy as np

# Largest error bound (eps times the sum of the magnitudes of the expanded form's terms)
# accepted for a component's Mahalanobis term; the log-density's error is half of it.  On
# the benchmark's data (1M x 16, K=8, full, fitted components) the bound is about 5e-12:
# coordinates reach 22 about the centre, the limit would be reached at about 310; beyond
# it a component is computed in the exact form for that slice.
EXPANDED_ERROR_LIMIT = 1e-9
EPS = float(np.finfo(np.float64).eps)


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
    ``quadratic``: the :class:`Products`/:class:`Squares` behind the rows (None: no rows)."""

    rows = 0
    quadratic = None

    def fill(self, block: np.ndarray) -> None:
        """Write the quadratic rows of ``block`` from its rows ``x`` (below them)."""
        if self.quadratic is not None:
            self.quadratic.of(block[self.rows : -1], block[: self.rows])

    def __call__(self, block: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class ExactDensity(Density):
    """From the differences ``x - mu`` (full covariances above PRODUCTS_MAX_D, tied)."""

    def __init__(self, mahalanobis, offset: np.ndarray):
        self.mahalanobis, self.offset = mahalanobis, offset

    def __call__(self, block: np.ndarray) -> np.ndarray:
        maha = self.mahalanobis(block)
        maha *= -0.5
        maha += self.offset
        return maha


class ExpandedDensity(Density):
    """``offset_k - (gq_k . Q(x) + gx_k . x + g0_k) / 2`` as one GEMM, with the
    Mahalanobis terms ``gq . Q + gx . x + g0`` (nonnegative) checked for cancellation per
    slice; ``exact`` (a Mahalanobis object with ``one(j, xa)``) computes the components
    beyond the limit and ``always`` (the kernel's far components)."""

    def __init__(self, quadratic, gq, gx, g0, offset, exact, always=()):
        self.quadratic, self.rows = quadratic, quadratic.size
        self.g = np.ascontiguousarray(np.hstack([-0.5 * gq, -0.5 * gx, offset - 0.5 * g0[:, None]]))
        self.offset = offset
        self.reach = _reach(np.abs(gq).sum(axis=1), np.abs(gx).sum(axis=1), np.abs(g0))
        self.exact = exact
        self.always = np.asarray(always, dtype=np.intp)

    def inexact(self, largest: float) -> np.ndarray:
        """Components whose expanded form may lose more than the limit on rows whose
        coordinates are at most ``largest`` in absolute value (the far ones included)."""
        beyond = np.flatnonzero(~(largest <= self.reach))
        return np.union1d(self.always, beyond) if self.always.shape[0] else beyond

    def __call__(self, block: np.ndarray) -> np.ndarray:
        lp = self.g @ block
        np.minimum(lp, self.offset, out=lp)  # a Mahalanobis term is never negative
        xa = block[self.rows :]
        largest = max(float(xa[:-1].max()), -float(xa[:-1].min())) if xa.shape[1] else 0.0
        for j in self.inexact(largest):
            lp[j] = self.offset[j] - 0.5 * self.exact.one(j, xa)
        return lp


def _reach(aq: np.ndarray, ax: np.ndarray, a0: np.ndarray) -> np.ndarray:
    """Per component, the largest coordinate ``r`` (absolute value) for which the error
    bound ``EPS * (aq r^2 + ax r + a0)`` of the expanded form -- ``aq``, ``ax``, ``a0``
    the summed magnitudes of its quadratic, linear and constant coefficients -- stays
    within EXPANDED_ERROR_LIMIT (-inf: never)."""
    room = EXPANDED_ERROR_LIMIT / EPS - a0
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (np.sqrt(ax * ax + 4.0 * aq * room) - ax) / (2.0 * aq)
    return np.where(room >= 0.0, np.nan_to_num(r, nan=-np.inf), -np.inf)
