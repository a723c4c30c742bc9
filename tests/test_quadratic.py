"""The E-step's expanded form (spark_em.core.densities) against scikit-learn's exact one, where
the expanded form alone would lose digits. No Spark."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.mixture import _gaussian_mixture as skg

import spark_em.core.densities as densities
from spark_em.core.estep import EStepKernel
from spark_em.core.mixture import GaussianParams


def _ours(X, weights, means, cov, covariance_type, centre):
    params = GaussianParams.from_covariances(weights, means, cov, covariance_type)
    kernel = EStepKernel(params, centre)
    return kernel.density(kernel.block(X, centre=centre)).T - np.log(weights)


def _sklearn(X, means, cov, covariance_type):
    pc = skg._compute_precision_cholesky(cov, covariance_type)
    return skg._estimate_log_gaussian_prob(X, means, pc, covariance_type)


def _nearly_collinear(rng, n=400, thin=1e-12):
    """Two components in 4 dimensions whose covariances have one direction of variance
    ``thin`` (features almost linearly dependent), rows drawn from them.  That direction is
    orthogonal to both means, so the means are near the origin in the components' own
    standard deviations (not "far": the kernel's far-component rule does not apply)."""
    means = np.array([[4.0, -3.0, 5.0, 2.0], [-5.0, 4.0, -2.0, 3.0]])
    basis, _ = np.linalg.qr(np.vstack([means, rng.normal(size=(2, 4))]).T)
    v = basis[:, 3]  # orthogonal to both means
    assert np.abs(means @ v).max() < 1e-12
    q = np.column_stack([basis[:, :3], v])
    cov = q @ np.diag([1.0, 2.0, 0.5, thin]) @ q.T
    cov = 0.5 * (cov + cov.T)
    cov = np.stack([cov, cov])
    X = np.concatenate(
        [rng.multivariate_normal(m, c, size=n // 2, method="eigh") for m, c in zip(means, cov)]
    )
    return X, np.array([0.5, 0.5]), means, cov


def test_ill_conditioned_full_covariances_are_computed_exactly(monkeypatch):
    """Precisions of 1e12: the expanded form's terms cancel to within ~0.1, the exact form
    (what sklearn computes) to ~1e-8.  The guard must send these components to the exact
    form; without it (an infinite limit) the same log-densities are visibly wrong.  Each
    row is checked under its own component (log-densities of a few units)."""
    X, weights, means, cov = _nearly_collinear(np.random.default_rng(0))
    own = (np.arange(X.shape[0]), np.repeat([0, 1], X.shape[0] // 2))
    ref = _sklearn(X, means, cov, "full")[own]
    centre = np.zeros(X.shape[1])
    ours = _ours(X, weights, means, cov, "full", centre)[own]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)

    monkeypatch.setattr(densities, "EXPANDED_ERROR_LIMIT", np.inf)
    unguarded = _ours(X, weights, means, cov, "full", centre)[own]
    assert np.abs(unguarded - ref).max() > 1e-3  # the case really needs the guard


def _extended_precision(X, means, cov, covariance_type):
    """log N(x | mu_k, Sigma_k) with the differences and the quadratic form in long double
    (the covariances here are well conditioned: their inverses are exact to float64)."""
    k, d = means.shape
    full = {
        "full": lambda: cov,
        "tied": lambda: np.stack([cov] * k),
        "diag": lambda: np.stack([np.diag(c) for c in cov]),
        "spherical": lambda: np.stack([np.eye(d) * c for c in cov]),
    }[covariance_type]()
    out = np.empty((X.shape[0], k))
    for j in range(k):
        y = X.astype(np.longdouble) - means[j].astype(np.longdouble)
        p = np.linalg.inv(full[j]).astype(np.longdouble)
        maha = np.einsum("ni,ij,nj->n", y, p, y)
        out[:, j] = (-0.5 * maha).astype(np.float64) - 0.5 * (
            np.linalg.slogdet(full[j])[1] + d * np.log(2 * np.pi)
        )
    return out


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("offset", [0.0, 1e3, 1e6])
def test_rows_far_from_the_centre_keep_their_precision(covariance_type, offset):
    """Rows and means far from the kernel's centre (and some rows far from every mean):
    each log-density within 1e-12 of its size (+1e-8) of the extended-precision value.
    (sklearn's own diag/spherical expanded form is 1e4 times less precise at 1e6.)"""
    rng = np.random.default_rng(1)
    d, k = 3, 3
    means = rng.normal(0, 5, size=(k, d)) + offset
    X = np.concatenate(
        [rng.normal(m, 1.0, size=(60, d)) for m in means] + [rng.normal(offset, 1e4, size=(5, d))]
    )
    cov = {
        "full": np.stack([np.eye(d) * s for s in (0.5, 1.0, 2.0)]),
        "tied": np.eye(d) * 1.5,
        "diag": rng.uniform(0.5, 2.0, size=(k, d)),
        "spherical": np.array([0.5, 1.0, 2.0]),
    }[covariance_type]
    weights = np.full(k, 1.0 / k)
    truth = _extended_precision(X, means, cov, covariance_type)
    for centre in (np.zeros(d), X.mean(axis=0)):
        ours = _ours(X, weights, means, cov, covariance_type, centre)
        assert np.all(np.abs(ours - truth) <= 1e-12 * np.abs(truth) + 1e-8)
