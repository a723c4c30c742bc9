"""Math core (spark_em.core.mixture, spark_em.core.sufficient_statistics) against
scikit-learn and closed forms. No Spark."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGM
from sklearn.mixture import _gaussian_mixture as skg

from spark_em.core.covariance import covariance
from spark_em.core.estep import EStepKernel, log_responsibilities
from spark_em.core.init_summarizers import accumulate_resp
from spark_em.core.mixture import (
    COVARIANCE_TYPES,
    GaussianParams,
    IllDefinedCovarianceError,
    n_parameters,
)
from spark_em.core.sufficient_statistics import SuffStats, packed_size
from spark_em.core.summarizers import Chunk

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

K, D = 3, 4


def random_covariances(rng, k, d, covariance_type):
    if covariance_type == "full":
        A = rng.normal(size=(k, d, d))
        return A @ A.transpose(0, 2, 1) + 0.5 * np.eye(d)
    if covariance_type == "tied":
        A = rng.normal(size=(d, d))
        return A @ A.T + 0.5 * np.eye(d)
    if covariance_type == "diag":
        return rng.uniform(0.2, 3.0, size=(k, d))
    return rng.uniform(0.2, 3.0, size=k)


@pytest.fixture(params=COVARIANCE_TYPES)
def covariance_type(request):
    return request.param


@pytest.fixture
def mixture(covariance_type):
    rng = np.random.default_rng(11)
    weights = rng.dirichlet(np.ones(K) * 3)
    means = rng.normal(0, 3, size=(K, D))
    cov = random_covariances(rng, K, D, covariance_type)
    X = rng.normal(0, 3, size=(200, D))
    return weights, means, cov, X


def random_resp(rng, n, k):
    r = rng.uniform(size=(n, k))
    return r / r.sum(axis=1, keepdims=True)


def stats_of(X, resp, covariance_type, centre, w=None):
    w = np.ones(X.shape[0]) if w is None else w
    st = SuffStats.zeros(resp.shape[1], X.shape[1], covariance_type)
    accumulate_resp(st, X - centre, w, resp)
    return st


# ----------------------------------------------------------------- log-densities
def test_precisions_cholesky_match_sklearn(mixture, covariance_type):
    _, _, cov, _ = mixture
    ours = covariance(covariance_type).precisions_cholesky(cov)
    np.testing.assert_allclose(
        ours, skg._compute_precision_cholesky(cov, covariance_type), rtol=1e-12
    )
    back = covariance(covariance_type).covariances(ours)
    np.testing.assert_allclose(back, cov, rtol=1e-10, atol=1e-12)


def log_gaussian_prob(X, means, cov, covariance_type):
    """log N(x_i | mu_k, Sigma_k) (n, k) by the fit's E-step kernel (equal weights)."""
    k = means.shape[0]
    params = GaussianParams.from_covariances(np.full(k, 1.0 / k), means, cov, covariance_type)
    kernel = EStepKernel(params, np.zeros(X.shape[1]))
    return kernel.density(kernel.block(X)).T - np.log(1.0 / k)


def test_log_gaussian_prob_matches_sklearn(mixture, covariance_type):
    _, means, cov, X = mixture
    pc = covariance(covariance_type).precisions_cholesky(cov)
    ours = log_gaussian_prob(X, means, cov, covariance_type)
    ref = skg._estimate_log_gaussian_prob(X, means, pc, covariance_type)
    assert ours.shape == (X.shape[0], K)
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_log_gaussian_prob_full_matches_scipy():
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(5)
    means = rng.normal(size=(2, 3))
    cov = random_covariances(rng, 2, 3, "full")
    X = rng.normal(size=(50, 3))
    ours = log_gaussian_prob(X, means, cov, "full")
    for j in range(2):
        np.testing.assert_allclose(
            ours[:, j], multivariate_normal(means[j], cov[j]).logpdf(X), rtol=1e-10
        )


def test_log_resp_matches_fitted_sklearn(covariance_type):
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(c, 1.0, size=(80, 2)) for c in (-4, 0, 5)])
    sk = SkGM(3, covariance_type=covariance_type, random_state=0, max_iter=5).fit(X)
    params = GaussianParams.from_covariances(
        sk.weights_, sk.means_, sk.covariances_, covariance_type
    )
    # the kernel's per-row posteriors (what transform and score run) about the origin
    log_norm, resp, hard = EStepKernel(params, np.zeros(2), moments=False).posteriors(X)
    np.testing.assert_allclose(log_norm, sk.score_samples(X), rtol=1e-10)
    np.testing.assert_allclose(resp, sk.predict_proba(X), atol=1e-12)
    np.testing.assert_array_equal(hard, sk.predict(X))
    ll, lr = log_responsibilities(params, X)  # the centred route used by transform/predict
    np.testing.assert_allclose(ll, sk.score_samples(X), rtol=1e-10)
    np.testing.assert_allclose(np.exp(lr), sk.predict_proba(X), atol=1e-10)


def test_log_resp_is_stable_for_far_away_points():
    """Points far in the tail: densities underflow to 0 but log-resp stays finite."""
    means = np.array([[0.0], [1.0]])
    params = GaussianParams.from_covariances([0.5, 0.5], means, np.array([1.0, 1.0]), "spherical")
    X = np.array([[1e3], [-1e3]])
    log_norm, log_resp = log_responsibilities(params, X)
    assert np.all(np.isfinite(log_norm))
    # exactly the closed form: log p(x) = log(0.5 N(x|0,1) + 0.5 N(x|1,1))
    from scipy.special import logsumexp
    from scipy.stats import norm

    ref = logsumexp(np.log(0.5) + norm.logpdf(X, loc=means.T), axis=1)
    np.testing.assert_allclose(log_norm, ref, rtol=1e-12)
    np.testing.assert_allclose(np.exp(log_resp).sum(axis=1), 1.0)
    assert np.argmax(log_resp[0]) == 1 and np.argmax(log_resp[1]) == 0


# ----------------------------------------------------------------- sufficient statistics
def test_suffstats_pack_unpack_round_trip(covariance_type):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, D))
    st = stats_of(X, random_resp(rng, 60, K), covariance_type, X.mean(axis=0))
    st.log_likelihood = -123.5
    flat = st.pack()
    assert flat.shape == (packed_size(K, D, covariance_type),) and flat.dtype == np.float64
    back = SuffStats.unpack(flat, K, D, covariance_type)
    for name in ("nk", "sk", "second", "hard_counts"):
        np.testing.assert_array_equal(getattr(back, name), getattr(st, name))
    assert (back.log_likelihood, back.weight_sum, back.n_rows) == (-123.5, 60.0, 60.0)
    with pytest.raises(ValueError):
        SuffStats.unpack(flat[:-1], K, D, covariance_type)


def test_suffstats_add_over_split_blocks(mixture, covariance_type):
    weights, means, cov, X = mixture
    rng = np.random.default_rng(1)
    w = rng.uniform(0.5, 2.0, size=X.shape[0])
    centre = X.mean(axis=0)
    params = GaussianParams.from_covariances(weights, means, cov, covariance_type)
    kernel = EStepKernel(params, centre)
    whole = kernel.new_stats(D)
    kernel.accumulate(whole, Chunk(X, w, centre))
    parts = []
    for i, sl in enumerate((slice(0, 17), slice(17, 120), slice(120, 200))):
        st = kernel.new_stats(D)
        kernel.accumulate(st, Chunk(X[sl], w[sl], centre))
        parts.append(st)
    total = parts[0] + parts[1] + parts[2]
    for name in ("nk", "sk", "second", "hard_counts"):
        np.testing.assert_allclose(
            getattr(total, name), getattr(whole, name), rtol=1e-12, atol=1e-9
        )
    assert total.log_likelihood == pytest.approx(whole.log_likelihood, rel=1e-12)
    assert (total.weight_sum, total.n_rows) == pytest.approx((w.sum(), 200))
    with pytest.raises(ValueError):
        whole + SuffStats.zeros(K + 1, D, covariance_type)


def test_integer_weights_equal_duplicated_rows(covariance_type):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, D))
    w = rng.integers(1, 4, size=30).astype(float)
    resp = random_resp(rng, 30, K)
    a = stats_of(X, resp, covariance_type, 0.0, w)
    rep = np.repeat(np.arange(30), w.astype(int))
    b = stats_of(X[rep], resp[rep], covariance_type, 0.0)
    np.testing.assert_allclose(a.second, b.second, rtol=1e-12)
    np.testing.assert_allclose(a.sk, b.sk, rtol=1e-12)
    assert a.weight_sum == b.weight_sum and a.n_rows == 30 and b.n_rows == w.sum()


# ----------------------------------------------------------------- M-step
@pytest.mark.parametrize("reg_covar", [0.0, 1e-3])
def test_m_step_matches_sklearn(covariance_type, reg_covar):
    rng = np.random.default_rng(4)
    X = rng.normal(2.0, 2.0, size=(150, D))
    resp = random_resp(rng, 150, K)
    centre = X.mean(axis=0) + 0.3  # any centre works; the data mean is just the stable one
    params = stats_of(X, resp, covariance_type, centre).m_step(centre, reg_covar)
    nk, means, cov = skg._estimate_gaussian_parameters(X, resp, reg_covar, covariance_type)
    np.testing.assert_allclose(params.weights, nk / nk.sum(), rtol=1e-10)
    np.testing.assert_allclose(params.means, means, rtol=1e-10)
    np.testing.assert_allclose(params.covariances, cov, rtol=1e-10)
    np.testing.assert_allclose(
        params.precisions_cholesky, skg._compute_precision_cholesky(cov, covariance_type), rtol=1e-9
    )


def test_e_step_kernel_on_centred_data_matches_sklearn(covariance_type):
    rng = np.random.default_rng(6)
    X = np.concatenate([rng.normal(c, 1.0, size=(70, D)) for c in (-3, 0, 4)]) + 50.0
    sk = SkGM(K, covariance_type=covariance_type, random_state=0, max_iter=3).fit(X)
    params = GaussianParams.from_covariances(
        sk.weights_, sk.means_, sk.covariances_, covariance_type
    )
    centre = X.mean(axis=0)
    kernel = EStepKernel(params, centre)
    st = kernel.new_stats(D)
    kernel.accumulate(st, Chunk(X, np.ones(X.shape[0]), centre))
    assert st.log_likelihood == pytest.approx(sk.score_samples(X).sum(), rel=1e-10)
    resp = sk.predict_proba(X)
    np.testing.assert_allclose(st.nk, resp.sum(axis=0), rtol=1e-9)
    np.testing.assert_array_equal(st.hard_counts, np.bincount(sk.predict(X), minlength=K))
    new = st.m_step(centre, 1e-6)
    nk, means, cov = skg._estimate_gaussian_parameters(X, resp, 1e-6, covariance_type)
    np.testing.assert_allclose(new.weights, nk / nk.sum(), rtol=1e-9)
    np.testing.assert_allclose(new.means, means, rtol=1e-9)
    np.testing.assert_allclose(new.covariances, cov, rtol=1e-7)


def exact_covariances(X, resp, covariance_type, reg_covar):
    """Two-pass weighted moments in extended precision: the reference for far-away data."""
    Xl = X.astype(np.longdouble)
    R = resp.astype(np.longdouble)
    nk = R.sum(axis=0) + np.longdouble(10 * np.finfo(np.float64).eps)
    means = (R.T @ Xl) / nk[:, None]
    covs = []
    for j in range(resp.shape[1]):
        diff = Xl - means[j]
        covs.append((R[:, j, None] * diff).T @ diff / nk[j])
    covs = np.array(covs)
    d = X.shape[1]
    if covariance_type == "full":
        out = covs + reg_covar * np.eye(d)
    elif covariance_type == "tied":
        out = np.einsum("k,kij->ij", nk, covs) / nk.sum() + reg_covar * np.eye(d)
    elif covariance_type == "diag":
        out = np.diagonal(covs, axis1=1, axis2=2) + reg_covar
    else:
        out = np.diagonal(covs, axis1=1, axis2=2).mean(axis=1) + reg_covar
    return means.astype(np.float64), out.astype(np.float64)


def test_m_step_far_from_origin_keeps_precision(covariance_type):
    """Data at 1e6 with unit spread: moments about the data mean keep full precision, where
    raw (uncentred) sums -- sklearn's tied/diag/spherical formula, MLlib's -- lose digits."""
    rng = np.random.default_rng(8)
    X = 1e6 + rng.normal(size=(400, 3)) * np.array([1.0, 0.5, 2.0])
    resp = random_resp(rng, 400, K)
    ref_means, ref_cov = exact_covariances(X, resp, covariance_type, 1e-6)

    centre = X.mean(axis=0)
    ours = stats_of(X, resp, covariance_type, centre).m_step(centre, 1e-6)
    np.testing.assert_allclose(ours.means, ref_means, rtol=1e-13)
    err_ours = np.max(np.abs(ours.covariances - ref_cov) / np.abs(ref_cov).max())
    assert err_ours < 1e-12

    # The same statistics accumulated about the origin (raw sums) are visibly worse.
    raw = stats_of(X, resp, covariance_type, np.zeros(3)).m_step(np.zeros(3), 1e-6)
    err_raw = np.max(np.abs(raw.covariances - ref_cov) / np.abs(ref_cov).max())
    assert err_raw > 1e3 * err_ours


def test_log_resp_far_from_origin_equals_shifted_data(covariance_type):
    rng = np.random.default_rng(9)
    Z = rng.normal(size=(100, 2))
    means = np.array([[-1.0, 0.0], [1.5, 0.5], [0.0, 2.0]])
    cov = random_covariances(rng, 3, 2, covariance_type)
    w = np.array([0.2, 0.3, 0.5])
    near = GaussianParams.from_covariances(w, means, cov, covariance_type)
    far = GaussianParams.from_covariances(w, means + 1e7, cov, covariance_type)
    ll0, lr0 = log_responsibilities(near, Z)
    ll1, lr1 = log_responsibilities(far, Z + 1e7)
    np.testing.assert_allclose(ll1, ll0, rtol=1e-6)
    np.testing.assert_allclose(np.exp(lr1), np.exp(lr0), atol=1e-6)


# ----------------------------------------------------------------- ill-defined covariances
def test_singular_covariance_error_mentions_reg_covar():
    with pytest.raises(IllDefinedCovarianceError, match="regCovar"):
        covariance("full").precisions_cholesky(np.array([[[1.0, 1.0], [1.0, 1.0]]]), 0.0)
    with pytest.raises(IllDefinedCovarianceError, match="regCovar"):
        covariance("diag").precisions_cholesky(np.array([[1.0, 0.0]]), 0.0)
    with pytest.raises(IllDefinedCovarianceError, match="regCovar"):
        covariance("spherical").precisions_cholesky(np.array([0.0]), 0.0)


def test_m_step_with_constant_feature_and_no_regularisation(covariance_type):
    rng = np.random.default_rng(10)
    x = rng.normal(size=(50, 1))
    X = np.hstack([x, x, np.full((50, 1), 3.0)])  # duplicated and constant features
    resp = random_resp(rng, 50, 2)
    st = stats_of(X, resp, covariance_type, X.mean(axis=0))
    if covariance_type != "spherical":  # spherical averages the variances: still regular
        with pytest.raises(IllDefinedCovarianceError, match="increase regCovar"):
            st.m_step(X.mean(axis=0), 0.0)
    # the same data fit once regCovar is raised, as the message says
    st.m_step(X.mean(axis=0), 1e-6)


def test_unknown_covariance_type():
    with pytest.raises(ValueError, match="covarianceType"):
        covariance("banana").precisions_cholesky(np.ones(2))


# ----------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("k,d", [(1, 1), (3, 4), (5, 2)])
def test_n_parameters_matches_sklearn(covariance_type, k, d):
    rng = np.random.default_rng(k * 10 + d)
    X = rng.normal(size=(max(20, 3 * k), d))
    sk = SkGM(k, covariance_type=covariance_type, max_iter=1, random_state=0).fit(X)
    assert n_parameters(k, d, covariance_type) == sk._n_parameters()


def test_params_shape_checks():
    with pytest.raises(ValueError, match="shape"):
        GaussianParams.from_covariances([0.5, 0.5], np.zeros((2, 2)), np.ones((2, 3)), "diag")
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianParams.from_covariances([0.5, 0.6], np.zeros((2, 2)), np.ones(2), "spherical")


def test_math_core_imports_no_spark():
    """gaussian/stats/init/arrow_blocks load without pyspark (the package __init__, which
    exposes the Spark API, is bypassed so that only the core modules are imported)."""
    import pathlib
    import subprocess
    import sys

    package_dir = pathlib.Path(__file__).resolve().parents[1] / "spark_em"
    code = (
        "import sys, types\n"
        f"pkg = types.ModuleType('spark_em'); pkg.__path__ = [{str(package_dir)!r}]\n"
        "sys.modules['spark_em'] = pkg\n"
        "import spark_em.core.mixture, spark_em.core.sufficient_statistics, "
        "spark_em.core.estep, spark_em.core.covariance, spark_em.core.initialisation, "
        "spark_em.data.arrow_blocks, spark_em.core.rowkeys, spark_em.data.validation\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
