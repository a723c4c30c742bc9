"""The performance paths give the same numbers as scikit-learn.

* the blocked kernels (transposed chunks, products GEMM for small d, syrk for large d,
  flushing of negligible responsibilities) against sklearn's own E- and M-step functions;
* local block files (``blockCache="auto"`` in local mode) and Spark's cache
  (``blockCache="spark"``) against sklearn's EM from the same start, to 1e-6 relative.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGM
from sklearn.mixture import _gaussian_mixture as skg

from spark_em import GaussianMixture, GaussianMixtureModel
from spark_em.gaussian import GaussianParams
from spark_em.stats import EStepKernel, NearestCentreTask

from .conftest import to_df

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

COVS = ("full", "tied", "diag", "spherical")


def _sk_start(X, k, covariance_type, seed):
    sk = SkGM(k, covariance_type=covariance_type, max_iter=2, random_state=seed).fit(X)
    return sk.weights_, sk.means_, sk.covariances_


@pytest.mark.parametrize("d", [3, 60])  # 60 > the products-GEMM limit: syrk per component
@pytest.mark.parametrize("covariance_type", COVS)
def test_kernel_matches_sklearn_e_and_m_step(d, covariance_type):
    rng = np.random.default_rng(d)
    k = 4
    centres = rng.normal(0, 8, size=(k, d))
    X = np.concatenate([rng.normal(c, 1.0, size=(900, d)) for c in centres]) + 1e3
    w = np.ones(X.shape[0])
    weights, means, cov = _sk_start(X, k, covariance_type, 0)
    params = GaussianParams.from_covariances(weights, means, cov, covariance_type)
    centre = X.mean(axis=0)
    kernel = EStepKernel(params, centre)
    st = kernel.new_stats(d)
    for start in range(0, X.shape[0], 1000):  # several blocks, several chunks per block
        sl = slice(start, start + 1000)
        kernel.accumulate(st, X[sl] - centre, w[sl], (0, start))
    log_prob_norm, log_resp = _sk_log_resp(X, weights, means, cov, covariance_type)
    assert st.log_likelihood == pytest.approx(log_prob_norm.sum(), rel=1e-10)
    resp = np.exp(log_resp)
    np.testing.assert_allclose(st.nk, resp.sum(axis=0), rtol=1e-9)
    # the scoring kernel (final pass) gives the same log-likelihood, N_k and hard counts
    score = EStepKernel(params, centre, moments=False)
    sc = score.new_stats(d)
    score.accumulate(sc, X - centre, w, (0, 0))
    assert sc.log_likelihood == pytest.approx(st.log_likelihood, rel=1e-12)
    np.testing.assert_allclose(sc.nk, st.nk, rtol=1e-12)
    np.testing.assert_array_equal(sc.hard_counts, np.bincount(log_resp.argmax(axis=1), minlength=k))
    new = st.m_step(centre, 1e-6)
    nk, m, c = skg._estimate_gaussian_parameters(X, resp, 1e-6, covariance_type)
    np.testing.assert_allclose(new.means, m, rtol=1e-9)
    # sklearn's tied/diag/spherical updates use uncentred sums (data sit at 1e3 here), so
    # near-zero entries get an absolute tolerance relative to the covariance scale.
    np.testing.assert_allclose(new.covariances, c, rtol=1e-7, atol=1e-8 * np.abs(c).max())


def _sk_log_resp(X, weights, means, cov, covariance_type):
    pc = skg._compute_precision_cholesky(cov, covariance_type)
    weighted = skg._estimate_log_gaussian_prob(X, means, pc, covariance_type) + np.log(weights)
    from scipy.special import logsumexp

    norm = logsumexp(weighted, axis=1)
    return norm, weighted - norm[:, None]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("d", [5, 60])
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_nearest_centre_task_is_hard_assignment(covariance_type, d, weighted):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, d))
    w = rng.uniform(0.0, 3.0, size=len(X)) if weighted else np.ones(len(X))
    # the fifth centre is far from every row: an empty component
    centres = np.vstack([rng.normal(size=(4, d)), np.full((1, d), 50.0)])
    centre = np.average(X, axis=0, weights=w)
    task = NearestCentreTask(centres, centre, covariance_type)
    st = task.new_stats(d)
    for block in np.array_split(np.arange(len(X)), 3):  # several blocks add up
        task.accumulate(st, X[block] - centre, w[block])
    labels = np.argmin(((X[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
    resp = np.eye(5)[labels] * w[:, None]
    nk, m, c = skg._estimate_gaussian_parameters(X, resp, 1e-6, covariance_type)
    new = st.m_step(centre, 1e-6)
    np.testing.assert_array_equal(st.hard_counts, np.bincount(labels, minlength=5))
    assert st.hard_counts[4] == 0
    np.testing.assert_allclose(new.weights, nk / nk.sum(), rtol=1e-9)
    np.testing.assert_allclose(new.means[:4], m[:4], rtol=1e-9)
    np.testing.assert_allclose(new.covariances[:4], c[:4], rtol=1e-8)
    # the empty component: covariance regCovar * I (its mean is the centre, sklearn's 0)
    np.testing.assert_allclose(new.covariances[4], c[4], atol=1e-12)


@pytest.mark.parametrize("block_cache", ["auto", "spark"])
@pytest.mark.parametrize("covariance_type", ["full", "spherical"])
def test_block_caches_match_sklearn_em(spark, block_cache, covariance_type):
    from spark_em.datasets import sample_mixture

    X, _, _ = sample_mixture(3000, k=3, d=4, covariance_type="full", seed=5, separation=3.0)
    X = X + 100.0
    weights, means, cov = _sk_start(X, 3, covariance_type, 1)
    start = GaussianMixtureModel.fromParameters(weights, means, cov, covariance_type)
    pc = skg._compute_precision_cholesky(cov, covariance_type)
    sk = SkGM(3, covariance_type=covariance_type, max_iter=8, tol=0.0, weights_init=weights,
              means_init=means, precisions_init=_precisions(pc, covariance_type)).fit(X)
    model = GaussianMixture(
        k=3, covarianceType=covariance_type, maxIter=8, tol=0.0, initialModel=start,
        blockCache=block_cache,
    ).fit(to_df(spark, X, partitions=3))
    np.testing.assert_allclose(model.weights, sk.weights_, rtol=1e-6)
    np.testing.assert_allclose(model.means, sk.means_, rtol=1e-6)
    np.testing.assert_allclose(model.covariances, sk.covariances_, rtol=1e-6)
    assert model.summary.logLikelihood == pytest.approx(sk.score(X) * len(X), rel=1e-9)
    assert sum(model.summary.clusterSizes) == len(X)


def _precisions(pc, covariance_type):
    if covariance_type == "full":
        return np.einsum("kij,klj->kil", pc, pc)
    if covariance_type == "tied":
        return pc @ pc.T
    return pc**2


def test_local_block_files_are_removed_after_fit(spark, tmp_path):
    import glob
    import tempfile

    X = np.random.default_rng(0).normal(size=(500, 2))
    base = spark.sparkContext.getConf().get("spark.local.dir", None) or tempfile.gettempdir()
    before = set(glob.glob(f"{base.split(',')[0]}/spark-em-blocks-*"))
    GaussianMixture(k=2, maxIter=2, seed=0).fit(to_df(spark, X))
    assert set(glob.glob(f"{base.split(',')[0]}/spark-em-blocks-*")) == before
    with pytest.raises(ValueError, match="blockCache"):
        GaussianMixture(k=2, blockCache="disk").fit(to_df(spark, X))
