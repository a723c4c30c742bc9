"""The E-step of incomplete rows takes two routes (``spark_em.core.missing``): rows with at
most ``MAX_MISSING`` holes through each component's precision matrix, the others (and rows
whose quadratic form would cancel) pattern by pattern.  Both must give the row-by-row
reference of ``test_missing`` (scipy's marginal densities, conditional means and
covariances from the formulas) -- no Spark here.
"""

from __future__ import annotations

import numpy as np
import pytest

from spark_em.core import missing_precision
from spark_em.core.missing import MarginalEStep
from spark_em.core.mixture import GaussianParams
from spark_em.core.summarizers import Chunk

from .test_missing import TYPES, full_covariances, reference_e_step

D, K = 7, 3


def mixture(covariance_type, rng, offset):
    A = rng.normal(size=(K, D, D)) * 0.5
    full = A @ A.transpose(0, 2, 1) + np.eye(D) * 0.5
    cov = {
        "full": full,
        "tied": full[0],
        "diag": np.stack([np.diag(c) for c in full]),
        "spherical": np.array([np.trace(c) / D for c in full]),
    }[covariance_type]
    means = rng.normal(size=(K, D)) * 2.0 + offset
    return GaussianParams.from_covariances(np.array([0.5, 0.3, 0.2]), means, cov, covariance_type)


def rows_with_every_number_of_holes(rng, offset, n_per_q=40):
    """Rows with 0..D-1 holes at random places (``n_per_q`` of each count)."""
    blocks = []
    for q in range(D):
        X = rng.normal(size=(n_per_q, D)) * 2.0 + offset
        for row in X:
            row[rng.choice(D, q, replace=False)] = np.nan
        blocks.append(X)
    return rng.permutation(np.concatenate(blocks))


def reference_statistics(params, X, w):
    covs = full_covariances(params.covariances, params.covariance_type, K, D)
    return reference_e_step(X, w, params.weights, params.means, covs)


def second_of(mk, covariance_type):
    """The reference's ``sum r (x_hat x_hat^T + C)`` in ``SuffStats.second``'s shape."""
    if covariance_type == "full":
        return mk
    if covariance_type == "tied":
        return mk.sum(axis=0)
    return np.diagonal(mk, axis1=1, axis2=2)


def kernel_statistics(params, X, w, chunk_rows):
    seen = ~np.isnan(X)
    centre = np.where(seen, X, 0.0).sum(axis=0) / np.maximum(seen.sum(axis=0), 1)
    kernel = MarginalEStep(params, centre)
    stats = kernel.new_stats(D)
    for s in range(0, X.shape[0], chunk_rows):
        kernel.accumulate(stats, Chunk(X[s : s + chunk_rows], w[s : s + chunk_rows], centre))
    # moments about the centre, or about each far component's own origin (centred)
    origin = np.zeros((K, D)) if kernel.origin is None else kernel.origin
    return stats, centre, centre + origin


def assert_matches_reference(params, X, w, chunk_rows=97, rtol=1e-9):
    total, nk, sk, mk, lls, resp = reference_statistics(params, X, w)
    stats, c, o = kernel_statistics(params, X, w, chunk_rows)
    # the kernel's moments are about o (k, d): shift the reference's
    sk_c = sk - nk[:, None] * o
    mk_c = (
        mk
        - np.einsum("ki,kj->kij", sk, o)
        - np.einsum("ki,kj->kij", o, sk)
        + nk[:, None, None] * np.einsum("ki,kj->kij", o, o)
    )
    assert stats.log_likelihood == pytest.approx(total, rel=rtol)
    assert stats.n_rows == X.shape[0]
    assert stats.weight_sum == pytest.approx(w.sum(), rel=1e-12)
    np.testing.assert_array_equal(stats.hard_counts, np.bincount(resp.argmax(axis=1), minlength=K))
    np.testing.assert_allclose(stats.nk, nk, rtol=rtol, atol=1e-9)
    scale = np.abs(sk_c).max()
    np.testing.assert_allclose(stats.sk, sk_c, rtol=rtol, atol=rtol * scale)
    second = second_of(mk_c, params.covariance_type)
    np.testing.assert_allclose(stats.second, second, rtol=rtol, atol=rtol * np.abs(second).max())
    kernel = MarginalEStep(params, c, moments=False)
    ll, r, hard = kernel.posteriors(X - c)
    np.testing.assert_allclose(ll, lls, rtol=rtol, atol=1e-9)
    np.testing.assert_allclose(r, resp, atol=1e-9)
    assert (hard == resp.argmax(axis=1)).all()


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_both_routes_give_the_reference(covariance_type, offset):
    rng = np.random.default_rng(5)
    params = mixture(covariance_type, rng, offset)
    X = rows_with_every_number_of_holes(rng, offset)
    w = rng.uniform(0.5, 2.0, X.shape[0])
    assert_matches_reference(params, X, w)


def test_rows_with_few_holes_take_the_precision_route_and_the_others_do_not():
    rng = np.random.default_rng(6)
    params = mixture("full", rng, 0.0)
    X = rows_with_every_number_of_holes(rng, 0.0, n_per_q=5)
    kernel = MarginalEStep(params, np.zeros(D))
    seen = []
    kernel.route.evaluate = lambda Xr, m, moments, f=kernel.route.evaluate: (
        seen.append(m.sum(axis=1)) or f(Xr, m, moments)
    )
    kernel.accumulate(kernel.new_stats(D), Chunk(X, np.ones(X.shape[0]), np.zeros(D)))
    holes = np.isnan(X).sum(axis=1)
    routed = np.concatenate(seen)
    assert sorted(routed) == sorted(holes[(holes >= 1) & (holes <= missing_precision.MAX_MISSING)])


def test_far_components_moments_about_their_own_means():
    """A component 200 of its standard deviations from the centre: the kernel accumulates its
    moments about its own mean (``origin``), in both routes."""
    rng = np.random.default_rng(9)
    params = mixture("full", rng, 0.0)
    covs = params.covariances.copy()
    covs[2] = covs[2] / np.abs(covs[2]).max() * 0.01
    means = params.means.copy()
    means[2] = 20.0
    params = GaussianParams.from_covariances(params.weights, means, covs, "full")
    X = rows_with_every_number_of_holes(rng, 0.0, n_per_q=30)
    X[::3] = rng.multivariate_normal(means[2], covs[2], X[::3].shape[0])
    X[::3][np.isnan(rows_with_every_number_of_holes(rng, 0.0, n_per_q=30)[::3])] = np.nan
    assert MarginalEStep(params, np.nanmean(X, axis=0)).origin is not None
    assert_matches_reference(params, X, rng.uniform(0.5, 2.0, X.shape[0]))


def nearly_determined():
    """Feature 1 = feature 0 + N(0, 4e-9): a row missing feature 1 has a marginal quadratic
    form about 1e9 times smaller than the two terms the precision route subtracts."""
    cov = np.eye(D)
    cov[0, 1] = cov[1, 0] = 1.0
    cov[1, 1] = 1.0 + 4e-9
    covs = np.stack([cov, np.eye(D) * 2.0, np.eye(D)])
    means = np.zeros((K, D))
    means[2] += 1.0
    params = GaussianParams.from_covariances(np.array([0.5, 0.3, 0.2]), means, covs, "full")
    X = np.random.default_rng(7).normal(size=(30, D)) * 3.0
    X[:, 1] = np.nan
    return params, X


def test_rows_whose_quadratic_form_cancels_go_back_to_the_pattern_route():
    params, X = nearly_determined()
    assert_matches_reference(params, X, np.ones(X.shape[0]), chunk_rows=30, rtol=1e-7)
    res = MarginalEStep(params, np.zeros(D)).route.evaluate(X, np.isnan(X), moments=False)
    assert (~res.ok).sum() >= 20  # the rows far along feature 0; the others stay


def test_without_the_bound_those_rows_would_be_wrong(monkeypatch):
    """The check above can fail: with the bound off, the route's log-likelihoods of the
    same rows are off the reference by more than the 1e-9 the tests ask."""
    params, X = nearly_determined()
    monkeypatch.setattr(missing_precision, "CANCELLATION_LIMIT", np.inf)
    *_, lls, _ = reference_statistics(params, X, np.ones(X.shape[0]))
    ll, _, _ = MarginalEStep(params, np.zeros(D), moments=False).posteriors(X)
    assert np.abs(ll - lls).max() > 1e-8


def nearly_a_combination():
    """Feature 2 = feature 0 - feature 1 + N(0, 1e-11): Sigma is ill-conditioned (about
    1e11) while Sigma_oo of a row missing feature 2 is the identity; in rows with x0 = x1 the
    product u = P delta adds and cancels terms of 1e11."""
    cov = np.eye(D)
    cov[2, 0] = cov[0, 2] = 1.0
    cov[2, 1] = cov[1, 2] = -1.0
    cov[2, 2] = 2.0 + 1e-11
    covs = np.stack([cov, np.eye(D) * 2.0, np.eye(D)])
    means = np.zeros((K, D))
    means[2] += 1.0
    params = GaussianParams.from_covariances(np.array([0.5, 0.3, 0.2]), means, covs, "full")
    X = np.random.default_rng(10).normal(size=(30, D))
    X[:, 1] = X[:, 0] = np.linspace(-3.0, 3.0, 30)
    X[:, 2] = np.nan
    return params, X


def test_rows_whose_product_with_the_precision_rounds_go_back_to_the_pattern_route(monkeypatch):
    params, X = nearly_a_combination()
    *_, lls, _ = reference_statistics(params, X, np.ones(X.shape[0]))
    ll, _, _ = MarginalEStep(params, np.zeros(D), moments=False).posteriors(X)
    np.testing.assert_allclose(ll, lls, rtol=1e-9, atol=1e-9)
    assert_matches_reference(params, X, np.ones(X.shape[0]), chunk_rows=30, rtol=1e-7)
    # the check can fail: through the route, those rows would be off
    monkeypatch.setattr(missing_precision, "CANCELLATION_LIMIT", np.inf)
    ll, _, _ = MarginalEStep(params, np.zeros(D), moments=False).posteriors(X)
    assert np.abs(ll - lls).max() > 1e-8


def test_small_cholesky_and_solves_against_numpy():
    """The small factorisations keep the matrix indices in front: ``(q, q, n)``."""
    rng = np.random.default_rng(8)
    for q in range(1, 6):
        A = rng.normal(size=(50, q, q))
        A = A @ A.transpose(0, 2, 1) + np.eye(q) * 0.1
        b = rng.normal(size=(50, q))
        front = np.moveaxis(A, 0, -1)
        L = missing_precision.small_cholesky(front)
        np.testing.assert_allclose(
            np.moveaxis(L, -1, 0), np.linalg.cholesky(A), rtol=1e-10, atol=1e-12
        )
        v = missing_precision.forward(L, b.T)
        t = missing_precision.backward(L, v)
        np.testing.assert_allclose(t.T, np.linalg.solve(A, b[..., None])[..., 0], rtol=1e-9)
        inv = missing_precision.inverse_from_cholesky(L)
        np.testing.assert_allclose(np.moveaxis(inv, -1, 0), np.linalg.inv(A), rtol=1e-9, atol=1e-12)
