"""What makes a mixture's parameters usable, checked wherever parameters come from outside a
fit (a saved model, a checkpoint, ``fromParameters``, ``fromSklearn``, an MLlib model):
shapes consistent with ``k``, ``d`` and the covariance type, finite values, positive weights
summing to 1 (1e-9), symmetric positive definite covariances (Cholesky succeeds).

:func:`value_problem` returns the first problem in words (or None); each caller raises its
own error with it (:class:`~spark_em.ModelFormatError`, a checkpoint's error).
"""

from __future__ import annotations

import numpy as np

from .covariance import covariance

__all__ = ["shape_problem", "value_problem", "given_values_problem"]


def shape_problem(
    weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, covariance_type: str
) -> str | None:
    """The first array whose shape does not fit the others', in words, or None."""
    if means.ndim != 2:
        return f"means have shape {means.shape}, expected (k, d)"
    k, d = means.shape
    expected = {"weights": (k,), "covariances": covariance(covariance_type).cov_shape(k, d)}
    for name, a in (("weights", weights), ("covariances", covariances)):
        if tuple(a.shape) != tuple(expected[name]):
            return (
                f"{name} have shape {tuple(a.shape)}, expected {tuple(expected[name])} for "
                f"k={k}, d={d}, covarianceType={covariance_type!r}"
            )
    return None


def value_problem(
    weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, covariance_type: str
) -> str | None:
    """The first problem of the values (arrays of consistent shapes), in words, or None."""
    for name, a in (("weights", weights), ("means", means), ("covariances", covariances)):
        if not np.all(np.isfinite(a)):
            return f"{name} contain NaN or infinite values"
    if np.any(weights <= 0):
        return f"weights must be positive, got {weights.tolist()}"
    if abs(weights.sum() - 1.0) > 1e-9:
        return f"weights sum to {float(weights.sum())!r}, not 1 (1e-9)"
    if covariance_type in ("diag", "spherical"):
        if np.any(covariances <= 0):
            return f"{covariance_type} variances must be positive"
        return None
    mats = covariances[None] if covariance_type == "tied" else covariances
    for j, c in enumerate(mats):
        label = "the tied covariance" if covariance_type == "tied" else f"covariance {j}"
        if np.max(np.abs(c - c.T)) > 1e-9 * max(np.max(np.abs(c)), np.finfo(float).tiny):
            return f"{label} is not symmetric"
        try:
            np.linalg.cholesky(c)
        except np.linalg.LinAlgError:
            return f"{label} is not positive definite (its Cholesky factorisation fails)"
    return None


def given_values_problem(weights, means, covariances, covariance_type: str) -> str | None:
    """:func:`value_problem` of parameters given from outside (lists, arrays), or None also
    when their shapes do not fit (whoever builds the parameters says how)."""
    try:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        m = np.asarray(means, dtype=np.float64)
        c = np.asarray(covariances, dtype=np.float64)
        if covariance_type not in ("full", "tied", "diag", "spherical") or shape_problem(
            w, m, c, covariance_type
        ):
            return None
    except (TypeError, ValueError):
        return None
    return value_problem(w, m, c, covariance_type)
