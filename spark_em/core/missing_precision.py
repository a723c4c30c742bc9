"""Rows with few missing coordinates, all at once instead of pattern by pattern: through
each component's precision matrix ``P = Sigma^-1``.  Numpy only.

For a row with ``q`` missing coordinates ``m``, write ``delta = x - mu`` with
``delta_m = 0`` and ``u = P delta``.  ``Sigma_oo^-1`` is the Schur complement
``P_oo - P_om P_mm^-1 P_mo``, so

* the marginal quadratic form ``(x_o - mu_o)^T Sigma_oo^-1 (x_o - mu_o)`` is
  ``delta . u - u_m^T P_mm^-1 u_m``;
* ``log |Sigma_oo| = log |Sigma| + log |P_mm|``;
* the conditional mean is ``x_hat_m = mu_m - P_mm^-1 u_m`` and the conditional covariance
  ``P_mm^-1`` (the same as :mod:`spark_em.core.missing`'s gains, by the partitioned inverse).

A row then needs one product with ``P`` (one GEMM per component over all the slice's rows)
and a ``q x q`` Cholesky factorisation, done for every row and component at once by
numpy expressions that loop over ``q`` only: the number of numpy calls no longer grows with
the number of distinct patterns (696 at d=16 with 1-3 holes), which made the pattern loop
cost 30 complete rows per incomplete one.

The route rounds where the pattern route does not: ``u = P delta`` and ``delta . u`` carry
errors of about ``eps |delta|^T |P| |delta|`` (large when ``Sigma`` is ill-conditioned
because a missing coordinate is nearly a combination of observed ones, even when
``Sigma_oo`` is fine), and the difference ``delta . u - u_m^T P_mm^-1 u_m`` cancels when
the missing coordinates are nearly determined by the observed ones.  A row whose bound
``2 d eps rho_j |delta|^2`` (``rho_j`` the largest absolute row sum of ``P_j``, so the bound
exceeds both errors) is above ``1e-9 max(quadratic form, 1)`` for any component is left to
the pattern route, which factors ``Sigma_oo`` itself (``ok`` False).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .covariance import covariance
from .mixture import LOG_2PI, GaussianParams

# Rows with at most this many missing coordinates take this route; the others (and the
# rows the cancellation bound sends back) are grouped by pattern.  The factorisation's
# numpy calls grow as q^3 / 3: at q = 4 about 20 per slice.
MAX_MISSING = 4

# A row goes back to the pattern route when the rounding bound of its quadratic form
# exceeds this fraction of the form (or of 1 nat, for forms below 1).  The complete
# kernel's expanded form is held to the same 1e-9 (spark_em.core.estep).
CANCELLATION_LIMIT = 1e-9
_EPS = float(np.finfo(np.float64).eps)


# The small q x q factorisations below keep the matrix indices in front: ``A (q, q, ...)``,
# ``b (q, ...)``, so that each entry ``A[i, j]`` is one contiguous array over every row and
# component, and each step of the textbook loops is one elementwise expression over it.


def small_cholesky(A: np.ndarray) -> np.ndarray:
    """The lower Cholesky factors ``L (q, q, ...)`` of the SPD matrices ``A (q, q, ...)``
    (only the lower triangle of ``A`` is read).  A pivot that is not positive gives NaN
    (checked by the caller)."""
    q = A.shape[0]
    L = np.zeros_like(A)
    for j in range(q):
        piv = A[j, j] - sum((L[j, c] * L[j, c] for c in range(j)), np.zeros(()))
        with np.errstate(invalid="ignore"):
            L[j, j] = np.sqrt(np.where(piv > 0, piv, np.nan))
        for i in range(j + 1, q):
            s = A[i, j] - sum((L[i, c] * L[j, c] for c in range(j)), np.zeros(()))
            L[i, j] = s / L[j, j]
    return L


def forward(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``v (q, ...)`` with ``L v = b`` for lower-triangular ``L (q, q, ...)``."""
    v = np.empty_like(b)
    for i in range(L.shape[0]):
        v[i] = (b[i] - sum((L[i, j] * v[j] for j in range(i)), np.zeros(()))) / L[i, i]
    return v


def backward(L: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``t (q, ...)`` with ``L^T t = v`` for lower-triangular ``L (q, q, ...)``."""
    q = L.shape[0]
    t = np.empty_like(v)
    for i in range(q - 1, -1, -1):
        t[i] = (v[i] - sum((L[j, i] * t[j] for j in range(i + 1, q)), np.zeros(()))) / L[i, i]
    return t


def inverse_from_cholesky(L: np.ndarray) -> np.ndarray:
    """``(L L^T)^-1 (q, q, ...)`` for lower-triangular ``L (q, q, ...)``: ``M^T M`` with
    ``M = L^-1``, itself lower-triangular."""
    q = L.shape[0]
    M = np.zeros_like(L)
    for c in range(q):
        M[c, c] = 1.0 / L[c, c]
        for i in range(c + 1, q):
            M[i, c] = -sum((L[i, j] * M[j, c] for j in range(c, i)), np.zeros(())) / L[i, i]
    C = np.empty_like(L)
    for i in range(q):
        for j in range(i + 1):
            C[i, j] = C[j, i] = sum(M[r, i] * M[r, j] for r in range(i, q))
    return C


@dataclass(frozen=True)
class RouteResult:
    """The route's answer for ``g`` rows with ``q`` missing coordinates each: ``lp (k, g)``
    log joint densities ``log pi_j + log N(x_o | mu_jo, Sigma_j,oo)``; ``ok (g,)`` False
    for the rows left to the pattern route (their other entries are meaningless);
    ``missing (g, q)`` each row's missing coordinates; ``filled (k, g, d)`` the rows with
    their missing coordinates filled by each component's conditional mean and ``cond (q,
    q, k, g)`` the conditional covariances (None without moments)."""

    lp: np.ndarray
    ok: np.ndarray
    missing: np.ndarray
    filled: np.ndarray | None
    cond: np.ndarray | None


class PrecisionRoute:
    """The precision route of one mixture ``params``, given in the E-step's centred
    coordinates: the precision matrices and ``log |Sigma|`` come from the fit's own
    Cholesky factors of the precisions (:mod:`spark_em.core.covariance`), expanded to
    ``(k, d, d)`` whatever the covariance type."""

    def __init__(self, params: GaussianParams):
        table = covariance(params.covariance_type)
        pc = params.precisions_cholesky
        self.precisions = table.expand(table.precisions(pc), params.k, params.d)
        with np.errstate(divide="ignore"):
            # log |U| = -log |Sigma| / 2, with precision = U U^T
            self.const = np.log(params.weights) + table.log_det(pc, params.d)
        self.means = params.means
        # rho_j >= |||P_j|||_2: |delta|^T |P_j| |delta| <= rho_j |delta|^2
        self.row_sums = np.abs(self.precisions).sum(axis=2).max(axis=1)

    def evaluate(self, X: np.ndarray, missing: np.ndarray, moments: bool) -> RouteResult:
        """Rows ``X (g, d)`` (centred; NaN where ``missing``), each with the same number
        ``q >= 1`` of missing coordinates."""
        g, d = X.shape
        mis = np.nonzero(missing)[1].reshape(g, -1)  # row-major: each row's, ascending
        q = mis.shape[1]
        rows = np.arange(g)
        delta = np.where(missing, 0.0, X)[None] - self.means[:, None, :]  # (k, g, d)
        delta *= ~missing
        u = delta @ self.precisions  # (k, g, d): P symmetric
        a = np.einsum("kgd,kgd->kg", delta, u)
        u_m = np.stack([u[:, rows, mis[:, i]] for i in range(q)])  # (q, k, g)
        p_mm = np.zeros((q, q) + a.shape)
        for i in range(q):
            for j in range(i + 1):
                p_mm[i, j] = self.precisions[:, mis[:, i], mis[:, j]]
        L = small_cholesky(p_mm)
        v = forward(L, u_m)
        quad = a - np.einsum("qkg,qkg->kg", v, v)
        log_det_mm = 2.0 * sum(np.log(L[i, i]) for i in range(q))
        lp = (self.const[:, None] - 0.5 * (d - q) * LOG_2PI) - 0.5 * (log_det_mm + quad)
        bound = (2 * d * _EPS) * self.row_sums[:, None] * np.einsum("kgd,kgd->kg", delta, delta)
        with np.errstate(invalid="ignore"):
            good = bound <= CANCELLATION_LIMIT * np.maximum(quad, 1.0)
        ok = (good & np.isfinite(quad) & np.isfinite(log_det_mm)).all(axis=0)
        if not moments:
            return RouteResult(lp, ok, mis, None, None)
        # the filled rows, in place of delta: x_o, and mu_m - P_mm^-1 u_m where missing
        t = backward(L, v)
        filled = delta
        filled += self.means[:, None, :]
        for i in range(q):
            filled[:, rows, mis[:, i]] -= t[i]
        return RouteResult(lp, ok, mis, filled, inverse_from_cholesky(L))


def _second_matrices(yw, y, mis, wc) -> np.ndarray:
    """``(k, d, d)``: ``sum_i r_ij y_ij y_ij^T`` plus the conditional covariances ``wc (q, q,
    k, g)`` (already weighted) placed at ``(mis, mis)``."""
    k, _, d = y.shape
    full = yw.transpose(0, 2, 1) @ y
    at = mis.T[:, None, :] * d + mis.T[None, :, :]  # (q, q, g) into (d, d)
    at = at[:, :, None, :] + (np.arange(k) * d * d)[:, None]  # (q, q, k, g)
    full += np.bincount(at.ravel(), wc.ravel(), minlength=k * d * d).reshape(k, d, d)
    return full


def _second_variances(yw, y, mis, wc) -> np.ndarray:
    """``(k, d)``: the diagonal of :func:`_second_matrices` (``yw`` is overwritten)."""
    k, _, d = y.shape
    yw *= y
    diag = np.stack([wc[i, i] for i in range(mis.shape[1])])  # (q, k, g)
    at = mis.T[:, None, :] + (np.arange(k) * d)[:, None]  # (q, k, g)
    return yw.sum(axis=1) + np.bincount(at.ravel(), diag.ravel(), minlength=k * d).reshape(k, d)


# the second moments of filled rows, by covariance type (the shapes of SuffStats.second)
_SECOND = {
    "full": _second_matrices,
    "tied": lambda yw, y, mis, wc: _second_matrices(yw, y, mis, wc).sum(axis=0),
    "diag": _second_variances,
    "spherical": _second_variances,
}


def add_moments(stats, covariance_type: str, y, rw, mis, cond) -> None:
    """Add the filled rows' first and second moments to ``stats``: ``sum_i r_ij y_ij`` and
    ``sum_i r_ij (y_ij y_ij^T + C_ij)`` (the shapes of ``SuffStats.second``) with ``y (k, g,
    d)`` the rows filled by each component (about the moments' origin), ``rw (k, g)`` the
    weighted responsibilities, ``mis (g, q)`` each row's missing coordinates and ``cond (q,
    q, k, g)`` their conditional covariances, placed at ``(mis, mis)``."""
    yw = y * rw[:, :, None]
    stats.sk += yw.sum(axis=1)
    stats.second += _SECOND[covariance_type](yw, y, mis, cond * rw)
