"""The float32 E-step (``dtype="float32"``, spark_em.core.precision): its statistics against
the float64 kernel's and a long-double reference, its cancellation guard, and its float64
fallbacks.  No Spark."""

from __future__ import annotations

import numpy as np
import pytest

import spark_em.core.densities as densities
from spark_em.core.covariance import COVARIANCE_TYPES
from spark_em.core.estep import EStepKernel
from spark_em.core.mixture import GaussianParams
from spark_em.core.precision import FLOAT32, FLOAT64, precision
from spark_em.core.summarizers import Chunk
from spark_em.data.datasets import sample_mixture


def _params(X, k, covariance_type, seed=0):
    """Parameters near the data: weights, means of k row groups, their covariances."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, X.shape[0])
    labels[:k] = np.arange(k)
    spread = X.std(axis=0)
    means = np.stack(
        [X[labels == j].mean(axis=0) + rng.normal(0, 0.5, X.shape[1]) * spread for j in range(k)]
    )
    ridge = 0.1 * X.var(axis=0).mean() * np.eye(X.shape[1])
    full = np.stack([np.cov(X[labels == j].T) + ridge for j in range(k)])
    cov = {
        "full": full,
        "tied": full.mean(axis=0),
        "diag": np.stack([np.diag(c) for c in full]),
        "spherical": np.array([np.diag(c).mean() for c in full]),
    }[covariance_type]
    return GaussianParams.from_covariances(np.full(k, 1.0 / k), means, cov, covariance_type)


def _stats(params, centre, X, w, dtype, centre_of_rows=None):
    kernel = EStepKernel(params, centre, dtype=dtype)
    st = kernel.new_stats(X.shape[1])
    kernel.accumulate(st, Chunk(X, w, centre if centre_of_rows is None else centre_of_rows))
    return kernel, st


def _stored(X, ref):
    """Rows as a float32 store keeps them: relative to a float64 reference, rounded once."""
    return (X - ref).astype(np.float32)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("offset", [0.0, 1e2, 1e4])
def test_float32_statistics_keep_float64_digits(covariance_type, offset):
    """Statistics of the float32 kernel -- on float64 rows and on rows stored in float32
    about a reference of their own -- equal the float64 kernel's: N_k and S_k to 1e-6 of
    their size, the covariances the M-step makes from them to 1e-5 relative, the
    log-likelihood to 1e-7 relative, at every offset (rows are centred in float64)."""
    X, _, _ = sample_mixture(20_000, 4, 5, "full", seed=3)
    X = X + offset
    w = np.random.default_rng(1).uniform(0.5, 2.0, X.shape[0])
    centre = np.average(X, axis=0, weights=w)
    params = _params(X, 4, covariance_type)
    _, ref = _stats(params, centre, X, w, "float64")
    kernel, on_raw = _stats(params, centre, X, w, "float32")
    assert kernel.precision is FLOAT32
    first_rows = X[:100].mean(axis=0)  # a store's reference: its first rows' mean
    _, on_stored = _stats(params, centre, _stored(X, first_rows), w, "float32", centre - first_rows)
    new = ref.m_step(centre, 1e-6)
    for st in (on_raw, on_stored):
        assert st.weight_sum == pytest.approx(ref.weight_sum, rel=1e-12)
        assert st.log_likelihood == pytest.approx(ref.log_likelihood, rel=1e-7)
        np.testing.assert_allclose(st.nk, ref.nk, rtol=0, atol=1e-6 * ref.nk.sum())
        np.testing.assert_allclose(st.sk, ref.sk, rtol=0, atol=1e-6 * np.abs(ref.sk).max())
        ours = st.m_step(centre, 1e-6)
        scale = np.abs(X - centre).max()
        np.testing.assert_allclose(ours.means, new.means, rtol=0, atol=1e-5 * scale)
        np.testing.assert_allclose(
            ours.covariances, new.covariances, rtol=0, atol=1e-5 * np.abs(new.covariances).max()
        )


def _nearly_collinear(rng, n=400, thin=1e-4):
    """Two components in 4 dimensions with one direction of variance ``thin``, orthogonal to
    both means (tests/test_quadratic.py's case, less extreme: float32 rows still resolve
    that direction, sqrt(thin) = 1e-2 against a rounding of ~3e-7)."""
    means = np.array([[4.0, -3.0, 5.0, 2.0], [-5.0, 4.0, -2.0, 3.0]])
    basis, _ = np.linalg.qr(np.vstack([means, rng.normal(size=(2, 4))]).T)
    q = np.column_stack([basis[:, :3], basis[:, 3]])
    cov = q @ np.diag([1.0, 2.0, 0.5, thin]) @ q.T
    cov = np.stack([0.5 * (cov + cov.T)] * 2)
    X = np.concatenate(
        [rng.multivariate_normal(m, c, size=n // 2, method="eigh") for m, c in zip(means, cov)]
    )
    return X, np.array([0.5, 0.5]), means, cov


def _long_double_log_density(X, means, cov):
    out = np.empty((X.shape[0], means.shape[0]))
    for j in range(means.shape[0]):
        y = X.astype(np.longdouble) - means[j].astype(np.longdouble)
        p = np.linalg.inv(cov[j]).astype(np.longdouble)
        maha = np.einsum("ni,ij,nj->n", y, p, y)
        const = np.linalg.slogdet(cov[j])[1] + X.shape[1] * np.log(2 * np.pi)
        out[:, j] = (-0.5 * maha).astype(np.float64) - 0.5 * const
    return out


def test_float32_guard_sends_cancelling_components_to_the_exact_form(monkeypatch):
    """Precisions of 1e4: the float32 expanded form's terms cancel to ~2e-2; the guard
    (float32's epsilon) sends them to the exact form in float64, which is as exact as the
    float32 rows themselves (~1e-6).  Without the guard the error is visible."""
    X, weights, means, cov = _nearly_collinear(np.random.default_rng(0))
    X32 = X.astype(np.float32)
    own = (np.arange(X.shape[0]), np.repeat([0, 1], X.shape[0] // 2))
    truth = _long_double_log_density(X32.astype(np.float64), means, cov)[own]
    params = GaussianParams.from_covariances(weights, means, cov, "full")

    def ours():
        kernel = EStepKernel(params, np.zeros(4), dtype="float32")
        assert kernel.precision is FLOAT32
        lp = kernel.density(kernel.block(X32))
        return (lp.T.astype(np.float64) - np.log(weights))[own]

    assert np.abs(ours() - truth).max() < 1e-5
    monkeypatch.setattr(densities, "EXPANDED_ERROR_LIMIT_FLOAT32", np.inf)
    assert np.abs(ours() - truth).max() > 1e-3  # the case really needs the guard


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_features_of_tiny_spread(covariance_type):
    """Features of spread 1e-20: where the kernel's coefficients are precisions (1e40, the
    expanded form of full, diag, spherical) they leave float32's range and the kernel runs
    in float64, equal to the float64 kernel; tied's exact form holds Cholesky factors
    (1e20), which float32 holds: its statistics keep float64's to 1e-6."""
    X, _, _ = sample_mixture(2_000, 3, 3, "full", seed=1)
    X = X * 1e-20
    w = np.ones(X.shape[0])
    c = X.mean(axis=0)
    params = _params(X, 3, covariance_type)
    kernel, st = _stats(params, c, X, w, "float32")
    _, ref = _stats(params, c, X, w, "float64")
    if kernel.density.guarded:
        assert kernel.precision is FLOAT64
        np.testing.assert_array_equal(st.second, ref.second)
    np.testing.assert_allclose(st.nk, ref.nk, rtol=1e-6)
    np.testing.assert_allclose(st.second, ref.second, rtol=1e-5)


def test_slices_float32_cannot_hold_run_in_float64():
    """A slice whose rows lie 1e20 from the centre (products beyond float32's range) is
    computed in float64: its statistics equal the float64 kernel's; the other slices stay
    float32 (equal to 1e-6)."""
    X, _, _ = sample_mixture(30_000, 3, 4, "full", seed=2)
    w = np.ones(X.shape[0])
    c = X.mean(axis=0)
    far = X.copy()
    far[:5] = 1e20  # the first slice only
    params = GaussianParams.from_covariances(
        np.full(3, 1 / 3),
        np.vstack([X[:2].copy(), [[1e20] * 4]]),
        np.stack([np.eye(4) * 4] * 3),
        "full",
    )
    _, ref = _stats(params, c, far, w, "float64")
    _, st = _stats(params, c, far, w, "float32")
    assert np.all(np.isfinite(st.second))
    np.testing.assert_allclose(st.nk, ref.nk, rtol=1e-6)
    np.testing.assert_allclose(st.second, ref.second, rtol=1e-6)
    assert st.log_likelihood == pytest.approx(ref.log_likelihood, rel=1e-7)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("weight", [1e-25, 3.0, 1e25])
def test_float32_weights_of_any_magnitude(covariance_type, weight):
    """Weights of 1e25 (whose products overflow float32) or 1e-25 (which vanish) give the
    statistics of unit weights times the weight: the slice's weights are scaled by a power
    of two in float32 and the sums scaled back in float64."""
    X, _, _ = sample_mixture(5_000, 3, 4, "full", seed=5)
    w = np.ones(X.shape[0])
    c = X.mean(axis=0)
    params = _params(X, 3, covariance_type)
    _, unit = _stats(params, c, X, w, "float32")
    _, heavy = _stats(params, c, X, w * weight, "float32")
    np.testing.assert_allclose(heavy.nk, unit.nk * weight, rtol=1e-6)
    atol = 1e-6 * np.abs(unit.sk).max() * weight
    np.testing.assert_allclose(heavy.sk, unit.sk * weight, rtol=1e-5, atol=atol)
    np.testing.assert_allclose(heavy.second, unit.second * weight, rtol=1e-5)
    assert heavy.log_likelihood == pytest.approx(unit.log_likelihood * weight, rel=1e-7)


def test_precision_names():
    assert precision("float32") is FLOAT32 and precision(np.float64) is FLOAT64
    with pytest.raises(ValueError, match="dtype must be one of"):
        precision("float16")
