"""Math core: Gaussian log-densities, responsibilities and the M-step. No Spark here.

Conventions follow scikit-learn's ``sklearn/mixture/_gaussian_mixture.py``:

* ``covariances`` by covariance type: full ``(k, d, d)``, tied ``(d, d)``, diag ``(k, d)``,
  spherical ``(k,)``.
* ``precisions_cholesky`` has the same shapes; for full/tied it is the upper-triangular
  ``U`` with ``precision = U @ U.T`` so that the Mahalanobis term is ``||(x - mu) @ U||^2``.
  For diag/spherical it is ``1 / sqrt(variance)``.

Everything is computed in the log domain; raw densities are never exponentiated.

The data seen by the kernels in :mod:`spark_em.stats` are *centred* on a fixed centre ``c0``
(the weighted mean of the training data, found in the validation pass), and the parameters
are shifted by the same centre before they are shipped.  Second moments accumulated about
``c0`` lose no precision when the data sit far from the origin, which is where sklearn's
uncentred tied/diag/spherical updates (``X.T @ X - n mu mu^T``) and MLlib's raw sums fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.linalg import lapack

from .errors import IllDefinedCovarianceError

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
LOG_2PI = float(np.log(2.0 * np.pi))


_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples, or duplicated "
    "features). Try to decrease the number of components, or increase regCovar "
    "(currently {reg!r})."
)


def check_covariance_type(covariance_type: str) -> str:
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covarianceType must be one of {COVARIANCE_TYPES}, got {covariance_type!r}"
        )
    return covariance_type


# --------------------------------------------------------------------------------------
# Cholesky of precisions
# --------------------------------------------------------------------------------------
def _precision_cholesky_of(cov: np.ndarray, reg_covar: float | None) -> np.ndarray:
    try:
        chol = linalg.cholesky(cov, lower=True)
    except linalg.LinAlgError:
        raise IllDefinedCovarianceError(_ILL_DEFINED.format(reg=reg_covar)) from None
    # The inverse of the triangular factor by LAPACK's trtri: as solve_triangular(chol, I),
    # without its per-call overhead (which reaches milliseconds with a threaded BLAS).
    inv, info = lapack.dtrtri(chol, lower=1)
    if info != 0:
        raise IllDefinedCovarianceError(_ILL_DEFINED.format(reg=reg_covar))
    return inv.T


def compute_precisions_cholesky(
    covariances: np.ndarray, covariance_type: str, reg_covar: float | None = None
) -> np.ndarray:
    """Cholesky factors of the precision matrices.

    covariances: shape by type (see module docstring).  ``reg_covar`` only appears in the
    error message.  Raises :class:`IllDefinedCovarianceError` when a covariance is not
    positive definite.
    """
    check_covariance_type(covariance_type)
    covariances = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "full":
        return np.stack([_precision_cholesky_of(c, reg_covar) for c in covariances])
    if covariance_type == "tied":
        return _precision_cholesky_of(covariances, reg_covar)
    if np.any(~np.isfinite(covariances)) or np.any(covariances <= 0.0):
        raise IllDefinedCovarianceError(_ILL_DEFINED.format(reg=reg_covar))
    return 1.0 / np.sqrt(covariances)


def covariances_from_precisions_cholesky(
    precisions_cholesky: np.ndarray, covariance_type: str
) -> np.ndarray:
    """Inverse of :func:`compute_precisions_cholesky`."""
    check_covariance_type(covariance_type)
    pc = np.asarray(precisions_cholesky, dtype=np.float64)
    if covariance_type == "full":
        return np.stack([_cov_from_upper(u) for u in pc])
    if covariance_type == "tied":
        return _cov_from_upper(pc)
    return 1.0 / pc**2


def _cov_from_upper(u: np.ndarray) -> np.ndarray:
    # precision = U U^T, so covariance = U^-T U^-1
    u_inv = linalg.solve_triangular(u, np.eye(u.shape[0]), lower=False)
    return u_inv.T @ u_inv


def log_det_cholesky(precisions_cholesky: np.ndarray, covariance_type: str, d: int) -> np.ndarray:
    """log |precision|^(1/2) per component: shape (k,) (tied: scalar)."""
    pc = np.asarray(precisions_cholesky, dtype=np.float64)
    if covariance_type == "full":
        return np.sum(np.log(np.diagonal(pc, axis1=1, axis2=2)), axis=1)
    if covariance_type == "tied":
        return np.sum(np.log(np.diag(pc)))
    if covariance_type == "diag":
        return np.sum(np.log(pc), axis=1)
    return d * np.log(pc)


# --------------------------------------------------------------------------------------
# Log-densities and responsibilities
# --------------------------------------------------------------------------------------
def estimate_log_gaussian_prob(
    X: np.ndarray, means: np.ndarray, precisions_cholesky: np.ndarray, covariance_type: str
) -> np.ndarray:
    """log N(x_i | mu_k, Sigma_k).

    X: (n, d) float64; means: (k, d).  Returns (n, k).
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    k = means.shape[0]
    log_det = log_det_cholesky(precisions_cholesky, covariance_type, d)
    if covariance_type == "full":
        pc = precisions_cholesky
        # One GEMM for every component: X @ [U_1 ... U_k] -> (n, k*d).
        u_all = np.ascontiguousarray(pc.transpose(1, 0, 2).reshape(d, k * d))
        shift = np.einsum("kd,kde->ke", means, pc).reshape(k * d)
        y = X @ u_all
        y -= shift
        np.square(y, out=y)
        maha = y.reshape(n, k, d).sum(axis=2)
    elif covariance_type == "tied":
        y = X @ precisions_cholesky  # (n, d)
        shift = means @ precisions_cholesky  # (k, d)
        diff = y[:, None, :] - shift[None, :, :]
        maha = np.einsum("nkd,nkd->nk", diff, diff)
    elif covariance_type == "diag":
        p2 = precisions_cholesky**2  # (k, d)
        diff = X[:, None, :] - means[None, :, :]
        maha = np.einsum("nkd,kd->nk", diff * diff, p2)
    else:  # spherical
        p2 = precisions_cholesky**2  # (k,)
        sq = (
            np.einsum("nd,nd->n", X, X)[:, None]
            - 2.0 * (X @ means.T)
            + np.einsum("kd,kd->k", means, means)[None, :]
        )
        np.maximum(sq, 0.0, out=sq)
        maha = sq * p2[None, :]
    return -0.5 * (d * LOG_2PI + maha) + log_det


def logsumexp_rows(a: np.ndarray) -> np.ndarray:
    """Row-wise log-sum-exp of (n, k), stable for -inf entries."""
    amax = np.max(a, axis=1, keepdims=True)
    amax = np.where(np.isfinite(amax), amax, 0.0)
    out = np.log(np.sum(np.exp(a - amax), axis=1))
    return out + amax[:, 0]


def estimate_log_resp(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    precisions_cholesky: np.ndarray,
    covariance_type: str,
) -> tuple[np.ndarray, np.ndarray]:
    """E-step by Bayes' rule in the log domain.

    Returns ``(log_prob_norm (n,), log_resp (n, k))`` where ``log_prob_norm`` is the
    per-row log-likelihood log p(x_i) and ``log_resp`` the log-posteriors.
    """
    weighted = estimate_log_gaussian_prob(X, means, precisions_cholesky, covariance_type)
    weighted += np.log(weights)
    log_prob_norm = logsumexp_rows(weighted)
    return log_prob_norm, weighted - log_prob_norm[:, None]


# --------------------------------------------------------------------------------------
# M-step from sufficient statistics
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GaussianParams:
    """Parameters of one mixture, in data coordinates.

    weights (k,), means (k, d), covariances and precisions_cholesky shaped by type.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    covariance_type: str

    @property
    def k(self) -> int:
        return int(self.means.shape[0])

    @property
    def d(self) -> int:
        return int(self.means.shape[1])

    @classmethod
    def from_covariances(
        cls,
        weights: np.ndarray,
        means: np.ndarray,
        covariances: np.ndarray,
        covariance_type: str,
        reg_covar: float | None = None,
    ) -> "GaussianParams":
        check_covariance_type(covariance_type)
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        means = np.asarray(means, dtype=np.float64)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (k, d), got {means.shape}")
        k, d = means.shape
        covariances = np.asarray(covariances, dtype=np.float64)
        expected = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}
        if covariances.shape != expected[covariance_type]:
            raise ValueError(
                f"covariances for covarianceType={covariance_type!r} must have shape "
                f"{expected[covariance_type]}, got {covariances.shape}"
            )
        if weights.shape != (k,):
            raise ValueError(f"weights must have shape ({k},), got {weights.shape}")
        if np.any(weights < 0) or not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-6):
            raise ValueError("weights must be non-negative and sum to 1")
        pc = compute_precisions_cholesky(covariances, covariance_type, reg_covar)
        return cls(weights, means, covariances, pc, covariance_type)

    def log_resp(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(log p(x_i) (n,), log r_ik (n, k))`` for X: (n, d).

        Computed about the mixture's mean so that data far from the origin keep precision.
        """
        c = self.weights @ self.means
        return estimate_log_resp(
            X - c, self.weights, self.means - c, self.precisions_cholesky, self.covariance_type
        )

    def shifted(self, centre: np.ndarray) -> "GaussianParams":
        """The same mixture in coordinates ``x - centre``."""
        return GaussianParams(
            self.weights,
            self.means - centre,
            self.covariances,
            self.precisions_cholesky,
            self.covariance_type,
        )


def n_parameters(k: int, d: int, covariance_type: str) -> int:
    """Free parameters of the mixture (sklearn's ``_n_parameters``)."""
    if covariance_type == "full":
        cov_params = k * d * (d + 1) / 2.0
    elif covariance_type == "diag":
        cov_params = k * d
    elif covariance_type == "tied":
        cov_params = d * (d + 1) / 2.0
    else:
        cov_params = k
    return int(cov_params + k * d + k - 1)
