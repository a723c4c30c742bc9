"""Numerical stress: EM on the math core (the same kernels and M-step as a fit, no Spark) and a
few fits through the estimator, on data that break naive formulas -- clusters far from the
origin or from each other, features on scales 1e-6 and 1e6 in one row, d=1 k=1 (closed
form), a component collapsing onto one point, duplicate rows, near-collinear features.

No NaN ever reaches the parameters.  Without regularisation EM is monotone (Dempster et al.),
so the mean log-likelihood never decreases (1e-9 relative).  With ``regCovar > 0`` (needed
once a component collapses) the M-step is sklearn's regularised one, which is *not* the
maximiser of EM's objective, and the likelihood may fall slightly near a collapsed
component (also in extended precision: it is the algorithm, not rounding); there the tests
check each M-step against an exact two-pass reference and EM's inequality
``L(new) - L(old) >= Q(new | old) - Q(old | old)`` instead.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.mixture import _gaussian_mixture as skg

from spark_em.core.estep import EStepKernel
from spark_em.core.init_summarizers import NearestCentreSummarizer, RandomResponsibilitySummarizer
from spark_em.core.summarizers import Chunk
from spark_em.engine.em import moments_to_redo, with_redone
from spark_em.errors import IllDefinedCovarianceError
from spark_em.progress import PassProfile

COVS = ("full", "tied", "diag", "spherical")
SEEDS = range(50)
REL = 1e-9


# ----------------------------------------------------------------------------- data
def far_from_origin(rng):  # three clusters, all about 1e6 from the origin
    return np.concatenate([rng.normal(c, 1.0, size=(80, 2)) for c in (-4.0, 0.0, 4.0)]) + 1e6, 3


def far_apart(rng):  # two clusters 1e6 apart, unit spread: 1e6 standard deviations
    X = rng.normal(size=(200, 2))
    X[:70, 0] += 1e6
    return X, 2


def mixed_scales(rng):  # features on scales 1e-6, 1 and 1e6 in one row
    X = np.concatenate([rng.normal(c, 1.0, size=(100, 3)) for c in (-3.0, 3.0)])
    return X * np.array([1e-6, 1.0, 1e6]), 2


def near_collinear(rng):  # the second feature is the first plus 1e-3 noise
    x = rng.normal(size=(200, 1)) * 3.0
    return np.hstack([x, x + 1e-3 * rng.normal(size=(200, 1))]), 2


def collapsing(rng):  # a few identical rows far from the rest: a component of one point
    X = rng.normal(size=(200, 2))
    X[:4] = [60.0, -60.0]
    return X, 3


def duplicates(rng):  # 15 distinct rows, each 12 times
    return np.repeat(rng.normal(size=(15, 2)) * 2.0, 12, axis=0), 3


def collinear(rng):  # the third feature is exactly twice the first
    x = rng.normal(size=(200, 2))
    return np.hstack([x, 2.0 * x[:, :1]]), 3


# ----------------------------------------------------------------------------- the loop
def initial(X, w, k, covariance_type, seed, init, reg_covar):
    c = w @ X / w.sum()
    if init == "random":
        task = RandomResponsibilitySummarizer(k, seed, covariance_type)
    else:  # k distinct rows as centres, hard labels (the k-means-style start)
        rows = np.unique(X, axis=0)
        task = NearestCentreSummarizer(
            rows[np.random.default_rng(seed).choice(len(rows), k, replace=False)],
            c,
            covariance_type,
        )
    st = task.new_stats(X.shape[1])
    task.accumulate(st, Chunk(X, w, c))
    return c, st.m_step(c, reg_covar)


def em_steps(X, w, c, params, iters, reg_covar):
    """Yield ``(params before, mean log-likelihood at them, params after)`` per iteration:
    :func:`spark_em.engine.em.step`'s steps, with the pass over the data done right here."""

    def e_pass(kernels, label):
        stats = [k.new_stats(X.shape[1]) for k in kernels]
        for k, st in zip(kernels, stats):
            k.accumulate(st, Chunk(X, w, c))
        return stats, PassProfile()

    for _ in range(iters):
        kernels = [EStepKernel(params, c)]
        stats, profile = e_pass(kernels, "")
        redo = moments_to_redo(kernels, stats, reg_covar)
        if redo:
            stats = with_redone(stats, redo, e_pass([k for k, _ in redo.values()], "")[0])
        (st,) = stats
        new = st.m_step(c, reg_covar)
        yield params, st.log_likelihood / st.weight_sum, new
        params = new


def assert_finite(p):
    for name in ("weights", "means", "covariances", "precisions_cholesky"):
        assert np.all(np.isfinite(getattr(p, name))), name
    assert abs(p.weights.sum() - 1.0) < 1e-12


def data(make, seed):
    rng = np.random.default_rng(seed)
    X, k = make(rng)
    return X, rng.uniform(0.5, 2.0, size=len(X)), k


# ----------------------------------------------------------------------------- monotone EM
@pytest.mark.parametrize(
    "make", [far_from_origin, far_apart, mixed_scales, near_collinear], ids=lambda f: f.__name__
)
@pytest.mark.parametrize("covariance_type", COVS)
def test_unregularised_em_never_decreases_the_likelihood(make, covariance_type):
    """regCovar=0 and random responsibilities to start: 50 seeds x 25 iterations."""
    for seed in SEEDS:
        X, w, k = data(make, seed)
        c, params = initial(X, w, k, covariance_type, seed, "random", 0.0)
        history = []
        for _, ll, new in em_steps(X, w, c, params, 25, 0.0):
            assert_finite(new)
            history.append(ll)
        h = np.array(history)
        drops = (h[:-1] - h[1:]) / np.abs(h[1:])
        assert drops.max() <= REL, (seed, drops.max(), int(drops.argmax()))


def exact_m_step(X, w, resp, covariance_type, reg_covar):
    """sklearn's regularised M-step by two-pass moments in extended precision."""
    L = np.longdouble
    R = resp.astype(L) * w.astype(L)[:, None]
    nk = R.sum(axis=0) + L(10 * np.finfo(np.float64).eps)
    means = (R.T @ X.astype(L)) / nk[:, None]
    covs = np.array(
        [(R[:, j, None] * (X - means[j])).T @ (X - means[j]) / nk[j] for j in range(resp.shape[1])]
    )
    d = X.shape[1]
    cov = {
        "full": lambda: covs + reg_covar * np.eye(d),
        "tied": lambda: np.einsum("k,kij->ij", nk, covs) / nk.sum() + reg_covar * np.eye(d),
        "diag": lambda: np.diagonal(covs, axis1=1, axis2=2) + reg_covar,
        "spherical": lambda: np.diagonal(covs, axis1=1, axis2=2).mean(axis=1) + reg_covar,
    }[covariance_type]()
    return (nk / nk.sum()).astype(float), means.astype(float), cov.astype(float)


def log_joint(X, p):
    """log pi_k + log N(x_i | mu_k, Sigma_k), (n, k): sklearn's for full and tied; for diag
    and spherical from the differences x - mu (sklearn expands the square, which cancels
    for data far from the origin)."""
    if p.covariance_type in ("full", "tied"):
        lp = skg._estimate_log_gaussian_prob(X, p.means, p.precisions_cholesky, p.covariance_type)
    else:
        var = np.broadcast_to(np.reshape(p.covariances, (p.k, -1)), p.means.shape)
        sq = ((X[:, None, :] - p.means[None]) ** 2 / var[None]).sum(axis=2)
        lp = -0.5 * (X.shape[1] * np.log(2 * np.pi) + np.log(var).sum(axis=1) + sq)
    return lp + np.log(p.weights)


def expected_log_joint(X, w, resp, p):
    """EM's Q: sum_i w_i sum_k r_ik log(pi_k N(x_i | mu_k, Sigma_k)) / sum w."""
    return float(np.sum(w[:, None] * resp * log_joint(X, p)) / w.sum())


@pytest.mark.parametrize(
    "make", [collapsing, duplicates, collinear, mixed_scales, far_apart], ids=lambda f: f.__name__
)
@pytest.mark.parametrize("covariance_type", COVS)
def test_regularised_em_stays_finite_and_exact(make, covariance_type):
    """regCovar=1e-6 and k-means-style starts from single rows, 50 seeds x 12 iterations:
    every M-step is the exact regularised one, and the likelihood falls by no more than EM's
    inequality allows."""
    reg = 1e-6
    for seed in SEEDS:
        X, w, k = data(make, seed)
        c, params = initial(X, w, k, covariance_type, seed, "rows", reg)
        assert_finite(params)
        previous = None
        for old, ll, new in em_steps(X, w, c, params, 12, reg):
            assert_finite(new)
            log_resp = log_joint(X, old)
            resp = np.exp(log_resp - log_resp.max(axis=1, keepdims=True))
            resp /= resp.sum(axis=1, keepdims=True)
            weights, means, cov = exact_m_step(X, w, resp, covariance_type, reg)
            scale = np.abs(X - X.mean(axis=0)).max(axis=0)
            np.testing.assert_allclose(new.weights, weights, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(new.means, means, rtol=0, atol=1e-9 * scale.max())
            np.testing.assert_allclose(
                new.covariances, cov, rtol=1e-6, atol=1e-9 * np.abs(cov).max()
            )
            if previous is not None:
                prev_ll, gain = previous
                assert ll - prev_ll >= gain - REL * abs(ll), (seed, ll - prev_ll, gain)
            gain = expected_log_joint(X, w, resp, new) - expected_log_joint(X, w, resp, old)
            previous = (ll, gain)


@pytest.mark.parametrize("covariance_type", COVS)
def test_d1_k1_is_the_weighted_mean_and_variance(covariance_type):
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        X = rng.normal(
            rng.uniform(-1e6, 1e6), 10.0 ** rng.uniform(-3, 3), size=(rng.integers(2, 300), 1)
        )
        w = rng.uniform(0.1, 5.0, size=len(X))
        c, params = initial(X, w, 1, covariance_type, seed, "random", 1e-6)
        for _, ll, params in em_steps(X, w, c, params, 2, 1e-6):
            pass
        mean = w @ X[:, 0] / w.sum()
        var = w @ (X[:, 0] - mean) ** 2 / w.sum() + 1e-6
        np.testing.assert_allclose(params.means.ravel(), [mean], rtol=1e-14, atol=1e-12 * abs(mean))
        np.testing.assert_allclose(params.covariances.ravel(), [var], rtol=1e-10)
        expected_ll = -0.5 * (np.log(2 * np.pi * var) + (var - 1e-6) / var)  # at the optimum
        assert ll == pytest.approx(expected_ll, rel=1e-10)


@pytest.mark.parametrize("covariance_type", COVS)
def test_a_component_collapsed_onto_one_row_far_away_has_covariance_reg_covar(covariance_type):
    """One row weighing 3, 1e6 from the rest in its own (zero) spread: the centred moments
    about the fit's centre would cancel to noise larger than regCovar (and fail Cholesky)."""
    rng = np.random.default_rng(4)
    X = np.vstack([rng.normal(size=(100, 2)), [[1e6, -1e6]]])
    w = np.ones(len(X))
    w[-1] = 3.0
    c = w @ X / w.sum()
    task = NearestCentreSummarizer(np.array([[0.0, 0.0], [1e6, -1e6]]), c, covariance_type)
    st = task.new_stats(2)
    task.accumulate(st, Chunk(X, w, c))
    params = st.m_step(c, 1e-6)
    for _, _, params in em_steps(X, w, c, params, 3, 1e-6):
        assert_finite(params)
    if covariance_type in ("full", "diag", "spherical"):
        expected = {"full": 1e-6 * np.eye(2), "diag": [1e-6, 1e-6], "spherical": 1e-6}
        np.testing.assert_allclose(
            params.covariances[1], expected[covariance_type], rtol=1e-9, atol=1e-15
        )
    np.testing.assert_array_equal(params.means[1], [1e6, -1e6])
    np.testing.assert_allclose(params.weights, [100 / 103, 3 / 103], rtol=1e-12)


def test_reg_covar_zero_on_a_single_row_component_raises_our_error():
    X = np.vstack([np.random.default_rng(0).normal(size=(50, 2)), [[30.0, 30.0]]])
    w = np.ones(len(X))
    c = w @ X / w.sum()
    task = NearestCentreSummarizer(np.array([[0.0, 0.0], [30.0, 30.0]]), c, "full")
    st = task.new_stats(2)
    task.accumulate(st, Chunk(X, w, c))
    with pytest.raises(IllDefinedCovarianceError, match="increase regCovar"):
        st.m_step(c, 0.0)


# ----------------------------------------------------------------------------- fits
def _fit(spark, X, w=None, **params):
    from spark_em import GaussianMixture

    rows = [(x.tolist(), float(wi)) for x, wi in zip(X, np.ones(len(X)) if w is None else w)]
    df = spark.createDataFrame(rows, "features array<double>, w double").repartition(3)
    return GaussianMixture(weightCol="w", **params).fit(df)


def test_fit_d1_k1_closed_form(spark):
    rng = np.random.default_rng(5)
    X = rng.normal(1e6, 1e-2, size=(500, 1))
    w = rng.uniform(0.1, 4.0, size=500)
    model = _fit(spark, X, w, k=1, maxIter=3, tol=0.0)
    mean = w @ X[:, 0] / w.sum()
    var = w @ (X[:, 0] - mean) ** 2 / w.sum() + 1e-6
    np.testing.assert_allclose(model.means.ravel(), [mean], rtol=1e-15)
    np.testing.assert_allclose(model.covariances.ravel(), [var], rtol=1e-9)


@pytest.mark.parametrize("covariance_type", COVS)
def test_fit_of_clusters_1e8_standard_deviations_apart(spark, covariance_type):
    """Two tight clusters 1e6 apart (spread 1e-2): the responsibilities are 0/1, so the model
    is each cluster's weighted mean and covariance (+ regCovar), a closed form.  Moments
    about the data mean would lose all digits (error ~ eps * 1e16) and fail Cholesky."""
    rng = np.random.default_rng(6)
    X = rng.normal(size=(300, 2)) * np.array([1e-2, 2e-2])
    X[150:] += [1e6, -1e6]
    w = rng.uniform(0.5, 2.0, size=300)
    model = _fit(spark, X, w, k=2, covarianceType=covariance_type, maxIter=5, tol=0.0, seed=1)
    order = np.argsort(model.means[:, 0])
    resp = np.zeros((300, 2))
    resp[:150, 0] = resp[150:, 1] = 1.0
    weights, means, cov = exact_m_step(X, w, resp, covariance_type, 1e-6)
    np.testing.assert_allclose(model.weights[order], weights, rtol=1e-12)
    np.testing.assert_allclose(model.means[order], means, rtol=0, atol=1e-9)
    got = model.covariances if covariance_type == "tied" else model.covariances[order]
    np.testing.assert_allclose(got, cov, rtol=1e-6, atol=1e-6 * np.abs(cov).max())
