"""Conversion to and from a fitted ``sklearn.mixture.GaussianMixture`` (scikit-learn is
imported only when a conversion is asked for)."""

from __future__ import annotations

import numpy as np

from .gaussian import GaussianParams
from .summary import GaussianMixtureSummary

__all__ = ["to_sklearn", "from_sklearn"]


def to_sklearn(params: GaussianParams, summary: GaussianMixtureSummary | None = None):
    """A fitted ``sklearn.mixture.GaussianMixture`` with these parameters; ``converged_``,
    ``n_iter_`` and ``lower_bound_`` come from ``summary`` (True, 0 and -inf without one)."""
    from sklearn.mixture import GaussianMixture as SkGM

    p = params
    est = SkGM(n_components=p.k, covariance_type=p.covariance_type)
    est.weights_ = p.weights.copy()
    est.means_ = p.means.copy()
    est.covariances_ = p.covariances.copy()
    est.precisions_cholesky_ = p.precisions_cholesky.copy()
    est.precisions_ = p.precisions()
    est.converged_ = bool(summary.converged) if summary else True
    est.n_iter_ = int(summary.numIter) if summary else 0
    est.lower_bound_ = (
        summary.logLikelihoodHistory[-1]
        if summary and summary.logLikelihoodHistory else -np.inf
    )
    est.n_features_in_ = p.d
    return est


def from_sklearn(est) -> GaussianParams:
    """The parameters of a fitted ``sklearn.mixture.GaussianMixture`` (sklearn's shapes)."""
    return GaussianParams.from_covariances(
        est.weights_, est.means_, est.covariances_, est.covariance_type
    )
