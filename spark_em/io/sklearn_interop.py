"""Conversion to and from a fitted ``sklearn.mixture.GaussianMixture`` (scikit-learn is
imported only when a conversion is asked for)."""

from __future__ import annotations

import numpy as np

from ..core.mixture import GaussianParams
from ..core.parameter_checks import given_values_problem
from ..summary import GaussianMixtureSummary

__all__ = ["to_sklearn", "from_sklearn"]


def to_sklearn(params: GaussianParams, summary: GaussianMixtureSummary | None = None):
    """A fitted ``sklearn.mixture.GaussianMixture`` with these parameters.

    ``converged_``, ``n_iter_``, ``lower_bound_`` and ``lower_bounds_`` come from ``summary``
    (the mean log-likelihood per row at each iteration is sklearn's lower bound); without a
    summary (a model built with ``fromParameters``) they are True, 0, -inf and [].
    """
    from sklearn.mixture import GaussianMixture as SkGM

    p = params
    est = SkGM(n_components=p.k, covariance_type=p.covariance_type)
    est.weights_ = p.weights.copy()
    est.means_ = p.means.copy()
    est.covariances_ = p.covariances.copy()
    est.precisions_cholesky_ = p.precisions_cholesky.copy()
    est.precisions_ = p.precisions()
    history = list(summary.logLikelihoodHistory) if summary is not None else []
    est.converged_ = bool(summary.converged) if summary is not None else True
    est.n_iter_ = int(summary.numIter) if summary is not None else 0
    est.lower_bound_ = history[-1] if history else -np.inf
    est.lower_bounds_ = history
    est.n_features_in_ = p.d
    return est


def from_sklearn(est) -> tuple[GaussianParams, GaussianMixtureSummary | None]:
    """The parameters of a fitted ``sklearn.mixture.GaussianMixture`` (sklearn's shapes)
    and, if it was fitted (has ``converged_``), a summary with its ``converged_``,
    ``n_iter_`` and ``lower_bounds_`` (``[lower_bound_]`` where sklearn has no
    ``lower_bounds_``, before 1.7); sklearn keeps no row count, so the summary's
    ``logLikelihood`` is NaN and it has no ``clusterSizes``."""
    problem = given_values_problem(est.weights_, est.means_, est.covariances_, est.covariance_type)
    if problem:
        raise ValueError(f"fromSklearn: {problem}")
    params = GaussianParams.from_covariances(
        est.weights_, est.means_, est.covariances_, est.covariance_type
    )
    if not hasattr(est, "converged_"):
        return params, None
    history = getattr(est, "lower_bounds_", None)
    if history is None:
        bound = getattr(est, "lower_bound_", -np.inf)
        history = [bound] if np.isfinite(bound) else []
    summary = GaussianMixtureSummary(
        k=params.k,
        logLikelihoodHistory=[float(v) for v in history],
        numIter=int(getattr(est, "n_iter_", len(history))),
        converged=bool(est.converged_),
        weightSum=None,
    )
    return params, summary
