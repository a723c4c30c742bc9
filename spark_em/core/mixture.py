"""Parameters of a Gaussian mixture. No Spark here.

Conventions follow scikit-learn's ``sklearn/mixture/_gaussian_mixture.py``; the shapes of
each covariance type are written once, in :mod:`spark_em.core.covariance`.  Everything is
computed in the log domain; raw densities are never exponentiated.

The data seen by the kernels in :mod:`spark_em.core.estep` are *centred* on a fixed centre
``c0`` (the weighted mean of the training data, found in the validation pass), and the
parameters are shifted by the same centre before they are shipped.  Second moments
accumulated about ``c0`` lose no precision when the data sit far from the origin, which is
where sklearn's uncentred tied/diag/spherical updates (``X.T @ X - n mu mu^T``) and MLlib's
raw sums fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import IllDefinedCovarianceError
from .covariance import COVARIANCE_TYPES, covariance

__all__ = [
    "COVARIANCE_TYPES",
    "GaussianParams",
    "IllDefinedCovarianceError",
    "LOG_2PI",
    "aic",
    "bic",
    "check_covariance_type",
    "n_parameters",
]

LOG_2PI = float(np.log(2.0 * np.pi))


def check_covariance_type(covariance_type: str) -> str:
    covariance(covariance_type)
    return covariance_type


def n_parameters(k: int, d: int, covariance_type: str) -> int:
    """Free parameters of the mixture (sklearn's ``_n_parameters``)."""
    return int(covariance(covariance_type).n_cov_parameters(k, d) + k * d + k - 1)


def bic(log_likelihood: float, weight_sum: float, n_params: int) -> float:
    """Bayesian information criterion, sklearn's formula: -2 log L + p log n, with n the sum
    of weights (the row count when there is no weight column)."""
    return float(-2.0 * log_likelihood + n_params * np.log(weight_sum))


def aic(log_likelihood: float, n_params: int) -> float:
    """Akaike information criterion, sklearn's formula: -2 log L + 2 p."""
    return float(-2.0 * log_likelihood + 2.0 * n_params)


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
    ) -> GaussianParams:
        table = covariance(covariance_type)
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        means = np.asarray(means, dtype=np.float64)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (k, d), got {means.shape}")
        k, d = means.shape
        covariances = np.asarray(covariances, dtype=np.float64)
        expected = table.cov_shape(k, d)
        if covariances.shape != expected:
            raise ValueError(
                f"covariances for covarianceType={covariance_type!r} must have shape "
                f"{expected}, got {covariances.shape}"
            )
        if weights.shape != (k,):
            raise ValueError(f"weights must have shape ({k},), got {weights.shape}")
        if np.any(weights < 0) or not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-6):
            raise ValueError("weights must be non-negative and sum to 1")
        pc = table.precisions_cholesky(covariances, reg_covar)
        return cls(weights, means, covariances, pc, covariance_type)

    @property
    def centre(self) -> np.ndarray:
        """The mixture's mean, about which scoring centres rows (precision far from 0)."""
        return self.weights @ self.means

    def full_covariances(self) -> np.ndarray:
        """Covariances expanded to ``(k, d, d)`` whatever the covariance type."""
        return covariance(self.covariance_type).expand(self.covariances, self.k, self.d)

    def precisions(self) -> np.ndarray:
        """Precision matrices in sklearn's shapes (``precisions_``)."""
        return covariance(self.covariance_type).precisions(self.precisions_cholesky)

    def shifted(self, centre: np.ndarray) -> GaussianParams:
        """The same mixture in coordinates ``x - centre``."""
        return GaussianParams(
            self.weights,
            self.means - centre,
            self.covariances,
            self.precisions_cholesky,
            self.covariance_type,
        )
