"""The performance paths give the same numbers as scikit-learn.

* the blocked kernels (transposed chunks, the expanded form on the products for small d,
  the differences and syrk for large d,
  flushing of negligible responsibilities) against sklearn's own E- and M-step functions;
* every block store -- local block files (``blockCache="local"``, the default in local
  mode), Spark's cache (``"spark"``) and the Parquet files read by the tasks (``"parquet"``)
  -- against sklearn's EM from the same start, to 1e-6 relative.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGM
from sklearn.mixture import _gaussian_mixture as skg

from spark_em import GaussianMixture, GaussianMixtureModel
from spark_em.core.estep import EStepKernel
from spark_em.core.init_summarizers import NearestCentreSummarizer
from spark_em.core.mixture import GaussianParams
from spark_em.core.summarizers import Chunk
from spark_em.core.tuning import PRODUCTS_MAX_D

from .conftest import to_df

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

COVS = ("full", "tied", "diag", "spherical")


def _sk_start(X, k, covariance_type, seed):
    sk = SkGM(k, covariance_type=covariance_type, max_iter=2, random_state=seed).fit(X)
    return sk.weights_, sk.means_, sk.covariances_


# up to PRODUCTS_MAX_D full covariances take the expanded form on the products, above it
# the differences and one syrk per component
@pytest.mark.parametrize("d", [3, PRODUCTS_MAX_D, PRODUCTS_MAX_D + 1, 60])
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
        kernel.accumulate(st, Chunk(X[sl], w[sl], centre))
    log_prob_norm, log_resp = _sk_log_resp(X, weights, means, cov, covariance_type)
    assert st.log_likelihood == pytest.approx(log_prob_norm.sum(), rel=1e-10)
    resp = np.exp(log_resp)
    np.testing.assert_allclose(st.nk, resp.sum(axis=0), rtol=1e-9)
    # the scoring kernel (final pass) gives the same log-likelihood, N_k and hard counts
    score = EStepKernel(params, centre, moments=False)
    sc = score.new_stats(d)
    score.accumulate(sc, Chunk(X, w, centre))
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
    task = NearestCentreSummarizer(centres, centre, covariance_type)
    st = task.new_stats(d)
    for block in np.array_split(np.arange(len(X)), 3):  # several blocks add up
        task.accumulate(st, Chunk(X[block], w[block], centre))
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


@pytest.mark.parametrize("block_cache", ["local", "spark", "parquet"])
@pytest.mark.parametrize("covariance_type", ["full", "spherical"])
def test_block_caches_match_sklearn_em(spark, tmp_path, block_cache, covariance_type):
    from spark_em.data.datasets import sample_mixture

    X, _, _ = sample_mixture(3000, k=3, d=4, covariance_type="full", seed=5, separation=3.0)
    X = X + 100.0
    weights, means, cov = _sk_start(X, 3, covariance_type, 1)
    start = GaussianMixtureModel.fromParameters(weights, means, cov, covariance_type)
    pc = skg._compute_precision_cholesky(cov, covariance_type)
    sk = SkGM(
        3,
        covariance_type=covariance_type,
        max_iter=8,
        tol=0.0,
        weights_init=weights,
        means_init=means,
        precisions_init=_precisions(pc, covariance_type),
    ).fit(X)
    model = GaussianMixture(
        k=3,
        covarianceType=covariance_type,
        maxIter=8,
        tol=0.0,
        initialModel=start,
        blockCache=block_cache,
    ).fit(
        parquet_df(spark, X, tmp_path)
        if block_cache == "parquet"
        else to_df(spark, X, partitions=3)
    )
    np.testing.assert_allclose(model.weights, sk.weights_, rtol=1e-6)
    np.testing.assert_allclose(model.means, sk.means_, rtol=1e-6)
    np.testing.assert_allclose(model.covariances, sk.covariances_, rtol=1e-6)
    assert model.summary.logLikelihood == pytest.approx(sk.score(X) * len(X), rel=1e-9)
    assert sum(model.summary.clusterSizes) == len(X)


def parquet_df(spark, X, tmp_path, row_group_size=700):
    """``X`` as a Parquet file of several row groups, read back by Spark (a plain scan)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    feats = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), X.shape[1])
    path = str(tmp_path / "X.parquet")
    pq.write_table(
        pa.table({"features": feats.cast(pa.list_(pa.float64()))}),
        path,
        row_group_size=row_group_size,
    )
    return spark.read.parquet(path)


def _precisions(pc, covariance_type):
    if covariance_type == "full":
        return np.einsum("kij,klj->kil", pc, pc)
    if covariance_type == "tied":
        return pc @ pc.T
    return pc**2
