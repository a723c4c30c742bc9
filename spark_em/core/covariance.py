"""The four covariance types, each written once: shapes, Cholesky factors of the
precisions, the M-step update, the Mahalanobis terms of the E-step and the scatter of the
statistics.  Like scikit-learn's per-type functions picked from a dict: callers look a type
up in :data:`COVARIANCE` and never branch on its name.  Numpy only, no Spark.

Shapes by type (scikit-learn's): covariances full ``(k, d, d)``, tied ``(d, d)``, diag
``(k, d)``, spherical ``(k,)``; ``precisions_cholesky`` likewise.  For full/tied it is the
upper-triangular ``U`` with ``precision = U @ U.T`` (Mahalanobis term ``||(x - mu) @ U||^2``);
for diag/spherical ``1 / sqrt(variance)``.

E-step chunks are transposed: ``xa (d + 1, m)`` holds the centred rows as columns with a row
of ones under them; every term is a GEMM or a contiguous elementwise operation.
``mahalanobis`` is the exact form (from the differences ``x - mu``); ``density`` the E-step's
log joint densities, in the expanded form where it is accurate (:mod:`spark_em.core.densities`).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.linalg import lapack

from ..errors import IllDefinedCovarianceError
from .densities import ExactDensity, ExpandedDensity, Products, Squares
from .mahalanobis import FullMahalanobis, TiedMahalanobis, VarianceMahalanobis
from .tuning import PRODUCTS_MAX_D

_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples, or duplicated "
    "features). Try to decrease the number of components, or increase regCovar "
    "(currently {reg!r})."
)


def ill_defined(reg_covar) -> IllDefinedCovarianceError:
    return IllDefinedCovarianceError(_ILL_DEFINED.format(reg=reg_covar))


def _precision_cholesky_of(cov: np.ndarray, reg_covar) -> np.ndarray:
    try:
        chol = linalg.cholesky(cov, lower=True)
    except (linalg.LinAlgError, ValueError):
        raise ill_defined(reg_covar) from None
    # The inverse of the triangular factor by LAPACK's trtri: as solve_triangular(chol, I),
    # without its per-call overhead (which reaches milliseconds with a threaded BLAS).
    inv, info = lapack.dtrtri(chol, lower=1)
    if info != 0:
        raise ill_defined(reg_covar)
    return inv.T


def _components_beyond(kept: np.ndarray, terms: np.ndarray, limit: float) -> np.ndarray:
    """Components (rows) where some diagonal ``kept`` is more than ``limit`` times smaller
    than the second-moment ``terms`` it was computed from."""
    return np.flatnonzero(~np.all(kept * limit >= terms, axis=1))


def _cov_from_upper(u: np.ndarray) -> np.ndarray:
    # precision = U U^T, so covariance = U^-T U^-1
    u_inv = linalg.solve_triangular(u, np.eye(u.shape[0]), lower=False)
    return u_inv.T @ u_inv


def _variance_density(means, p2, offset, exact):
    """The expanded form of per-feature precisions ``p2 (k, d)``: on the squares x_i^2."""
    return ExpandedDensity(
        _Variances.quadratic(means.shape[1]),
        p2,
        -2.0 * means * p2,
        np.einsum("kd,kd->k", means**2, p2),
        offset,
        VarianceMahalanobis(means, p2),
        exact,
    )


class Full:
    name = "full"
    # the initialisation's scatter takes the products as well, when there are any
    products = True
    # hard labels (k-means initialisation): rows sorted by label, one syrk per component
    hard_scatter_by_component = True

    def cov_shape(self, k, d):
        return (k, d, d)

    def second_shape(self, k, d):
        return (k, d, d)

    def n_cov_parameters(self, k, d):
        return k * d * (d + 1) / 2.0

    def precisions_cholesky(self, cov, reg_covar=None):
        return np.stack([_precision_cholesky_of(c, reg_covar) for c in cov])

    def covariances(self, pc):
        return np.stack([_cov_from_upper(u) for u in pc])

    def log_det(self, pc, d):
        return np.sum(np.log(np.diagonal(pc, axis1=1, axis2=2)), axis=1)

    def expand(self, cov, k, d):
        return np.array(cov, dtype=np.float64)

    def precisions(self, pc):
        return np.einsum("kij,klj->kil", pc, pc)

    def mahalanobis(self, means, pc):
        return FullMahalanobis(means, pc)

    @staticmethod
    def quadratic(d):
        """The quadratic rows of the E-step's block: the products x_i x_j up to
        PRODUCTS_MAX_D, none above (:mod:`spark_em.core.densities`)."""
        return Products(d) if d <= PRODUCTS_MAX_D else None

    def density(self, means, pc, offset, exact=()):
        """The log joint densities (:mod:`spark_em.core.densities`): expanded on the products up
        to PRODUCTS_MAX_D, exact above."""
        products = self.quadratic(means.shape[1])
        if products is None:
            return ExactDensity(FullMahalanobis(means, pc), offset)
        prec = self.precisions(pc)
        pm = np.einsum("kij,kj->ki", prec, means)
        return ExpandedDensity(
            products,
            products.coefficients(prec),
            -2.0 * pm,
            np.einsum("ki,ki->k", means, pm),
            offset,
            FullMahalanobis(means, pc),
            exact,
        )

    def m_step(self, second, sk, nk_raw, nk, means_c, reg_covar):
        # means_c: the new means in the coordinates of the moments (about c0 or an origin)
        d = sk.shape[1]
        # sum r (x-mu)(x-mu)^T = M - mu S^T - S mu^T + (sum r) mu mu^T
        ms = np.einsum("ki,kj->kij", means_c, sk)
        cov = second - ms - ms.transpose(0, 2, 1)
        cov += nk_raw[:, None, None] * np.einsum("ki,kj->kij", means_c, means_c)
        cov /= nk[:, None, None]
        cov = 0.5 * (cov + cov.transpose(0, 2, 1))
        cov[:, np.arange(d), np.arange(d)] += reg_covar
        return cov

    def scatter(self, second, xt, w, rwt, products=None, buf=None, near=None):
        """second (k, d, d) += sum_i rw_ki x_i x_i^T for a chunk ``xt (d, m)``, for the
        components ``near`` (index array; None: all)."""
        if products is not None:
            q = products.of(xt, buf)
            if near is None:
                products.add_symmetric(second, rwt @ q.T)
            else:
                second[near] += products.symmetric(rwt[near] @ q.T)
            return
        sq = np.sqrt(rwt)
        for j in range(rwt.shape[0]) if near is None else near:
            z = xt * sq[j]  # (d, m)
            second[j] += z @ z.T  # numpy runs A @ A.T as one symmetric rank-m update (syrk)

    def scatter_one(self, second, j, y, rw):
        """Component ``j``'s scatter of rows ``y (d, m)`` centred on its own origin."""
        z = y * np.sqrt(rw)
        second[j] += z @ z.T

    def imprecise(self, second, cov, nk, limit):
        """Components whose covariance diagonal is more than ``limit`` times smaller than
        the second moments it came from (digits lost to cancellation)."""
        terms = np.diagonal(second, axis1=1, axis2=2) / nk[:, None]
        return _components_beyond(np.diagonal(cov, axis1=1, axis2=2), terms, limit)


class Tied:
    name = "tied"
    products = False
    hard_scatter_by_component = False

    def cov_shape(self, k, d):
        return (d, d)

    def second_shape(self, k, d):
        return (d, d)

    def n_cov_parameters(self, k, d):
        return d * (d + 1) / 2.0

    def precisions_cholesky(self, cov, reg_covar=None):
        return _precision_cholesky_of(cov, reg_covar)

    def covariances(self, pc):
        return _cov_from_upper(pc)

    def log_det(self, pc, d):
        return np.sum(np.log(np.diag(pc)))

    def expand(self, cov, k, d):
        return np.broadcast_to(cov, (k, d, d)).copy()

    def precisions(self, pc):
        return pc @ pc.T

    def mahalanobis(self, means, pc):
        return TiedMahalanobis(means, pc)

    @staticmethod
    def quadratic(d):
        return None  # the E-step takes the differences

    def density(self, means, pc, offset, exact=()):
        return ExactDensity(TiedMahalanobis(means, pc), offset)

    def m_step(self, second, sk, nk_raw, nk, means_c, reg_covar):
        d = sk.shape[1]
        cov = second - (nk[:, None] * means_c).T @ means_c
        cov /= nk.sum()
        cov = 0.5 * (cov + cov.T)
        cov.flat[:: d + 1] += reg_covar
        return cov

    def scatter(self, second, xt, w, rwt, products=None, buf=None, near=None):
        # the responsibilities of a row sum to 1: one weighted scatter for all components
        weights = w if near is None else rwt[near].sum(axis=0)
        second += (xt * weights) @ xt.T

    def scatter_one(self, second, j, y, rw):
        z = y * np.sqrt(rw)
        second += z @ z.T

    def imprecise(self, second, cov, nk, limit):
        # the moments are shared: every component, or none
        ok = np.all(np.diagonal(cov) * limit >= np.diagonal(second) / nk.sum())
        return np.arange(0 if ok else nk.shape[0])


class _Variances:
    """diag and spherical: statistics are per-feature second moments ``(k, d)``."""

    products = False
    hard_scatter_by_component = False

    def second_shape(self, k, d):
        return (k, d)

    @staticmethod
    def quadratic(d):
        return Squares(d)  # per-feature second moments

    def covariances(self, pc):
        return 1.0 / pc**2

    def precisions(self, pc):
        return pc**2

    def precisions_cholesky(self, cov, reg_covar=None):
        cov = np.asarray(cov, dtype=np.float64)
        if np.any(~np.isfinite(cov)) or np.any(cov <= 0.0):
            raise ill_defined(reg_covar)
        return 1.0 / np.sqrt(cov)

    def scatter(self, second, xt, w, rwt, products=None, buf=None, near=None):
        if near is None:
            second += rwt @ (xt * xt).T
        else:
            second[near] += rwt[near] @ (xt * xt).T

    def scatter_one(self, second, j, y, rw):
        second[j] += (y * y) @ rw

    def per_feature(self, cov):
        """Per-feature variances ``(k, d)`` or ``(k, 1)`` of the type's covariances."""
        raise NotImplementedError

    def variances(self, second, nk, means_c, reg_covar):
        return second / nk[:, None] - means_c**2 + reg_covar

    def imprecise(self, second, cov, nk, limit):
        return _components_beyond(self.per_feature(cov), second / nk[:, None], limit)


class Diag(_Variances):
    name = "diag"

    def cov_shape(self, k, d):
        return (k, d)

    def n_cov_parameters(self, k, d):
        return k * d

    def log_det(self, pc, d):
        return np.sum(np.log(pc), axis=1)

    def expand(self, cov, k, d):
        return np.stack([np.diag(v) for v in cov])

    def mahalanobis(self, means, pc):
        return VarianceMahalanobis(means, pc**2)

    def density(self, means, pc, offset, exact=()):
        return _variance_density(means, pc**2, offset, exact)

    def m_step(self, second, sk, nk_raw, nk, means_c, reg_covar):
        return self.variances(second, nk, means_c, reg_covar)

    def per_feature(self, cov):
        return cov


class Spherical(_Variances):
    name = "spherical"

    def cov_shape(self, k, d):
        return (k,)

    def n_cov_parameters(self, k, d):
        return k

    def log_det(self, pc, d):
        return d * np.log(pc)

    def expand(self, cov, k, d):
        return np.stack([np.eye(d) * v for v in cov])

    def mahalanobis(self, means, pc):
        return VarianceMahalanobis(means, self._p2(pc, means))

    def density(self, means, pc, offset, exact=()):
        return _variance_density(means, self._p2(pc, means), offset, exact)

    @staticmethod
    def _p2(pc, means):
        return np.repeat((pc**2)[:, None], means.shape[1], axis=1)

    def m_step(self, second, sk, nk_raw, nk, means_c, reg_covar):
        return self.variances(second, nk, means_c, reg_covar).mean(axis=1)

    def per_feature(self, cov):
        return cov[:, None]


COVARIANCE = {t.name: t for t in (Full(), Tied(), Diag(), Spherical())}
COVARIANCE_TYPES = tuple(COVARIANCE)


def covariance(covariance_type: str):
    """The table entry of ``covariance_type``; ValueError naming the Param otherwise."""
    try:
        return COVARIANCE[covariance_type]
    except (KeyError, TypeError):
        raise ValueError(
            f"covarianceType must be one of {COVARIANCE_TYPES}, got {covariance_type!r}"
        ) from None
