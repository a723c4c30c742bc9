"""``model.sample(n, seed)``: rows drawn from the mixture on the executors, reproducible with
a seed.  Truths: the mixture's closed-form moments, scikit-learn's own ``sample`` and a fit
of the samples that recovers the parameters."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT

from spark_em import GaussianMixture, GaussianMixtureModel
from spark_em.core.mixture import COVARIANCE_TYPES
from spark_em.engine import sampling

WEIGHTS = np.array([0.2, 0.5, 0.3])
MEANS = np.array([[0.0, 0.0], [8.0, 1.0], [-3.0, 9.0]])
COVS = {
    "full": np.array(
        [[[1.0, 0.6], [0.6, 2.0]], [[0.5, -0.2], [-0.2, 0.3]], [[2.0, 0.0], [0.0, 1.0]]]
    ),
    "tied": np.array([[1.0, 0.4], [0.4, 0.8]]),
    "diag": np.array([[1.0, 2.0], [0.5, 0.3], [1.5, 1.0]]),
    "spherical": np.array([1.0, 0.4, 2.0]),
}


def model_of(covariance_type: str) -> GaussianMixtureModel:
    return GaussianMixtureModel.fromParameters(
        WEIGHTS, MEANS, COVS[covariance_type], covariance_type
    )


def collect(df) -> tuple[np.ndarray, np.ndarray]:
    rows = df.select(vector_to_array("features").alias("x"), "label").collect()
    return np.array([r["x"] for r in rows]), np.array([r["label"] for r in rows])


def mixture_moments(model) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the mixture in closed form."""
    w, m, c = model.weights, model.means, model.full_covariances()
    mean = w @ m
    second = np.einsum("k,kij->ij", w, c + np.einsum("ki,kj->kij", m, m))
    return mean, second - np.outer(mean, mean)


def test_draws_do_not_depend_on_how_a_partition_is_cut_into_batches():
    chol = np.linalg.cholesky(COVS["full"])
    cum = np.cumsum(WEIGHTS)
    whole = sampling.draw_rows(*sampling.partition_streams(5, 3), cum, MEANS, chol, 1000)
    streams = sampling.partition_streams(5, 3)
    parts = [sampling.draw_rows(*streams, cum, MEANS, chol, m) for m in (1, 299, 700)]
    np.testing.assert_array_equal(whole[0], np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(whole[1], np.concatenate([p[1] for p in parts]))
    other = sampling.draw_rows(*sampling.partition_streams(5, 4), cum, MEANS, chol, 1000)
    assert not np.array_equal(whole[0], other[0])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sample_moments_match_the_mixture_and_sklearn(spark, covariance_type, monkeypatch):
    monkeypatch.setattr(sampling, "ROWS_PER_PARTITION", 3000)  # several partitions
    n = 12_000
    model = model_of(covariance_type)
    df = model.sample(n, seed=11)
    assert df.rdd.getNumPartitions() == 4  # ceil(12000 / 3000)
    assert df.columns == ["features", "label"] and isinstance(
        df.schema["features"].dataType, VectorUDT
    )
    X, labels = collect(df)
    assert X.shape == (n, 2) and len(np.unique(X, axis=0)) == n  # streams never repeat
    mean, cov = mixture_moments(model)
    sk_X, sk_labels = model.toSklearn().set_params(random_state=0).sample(n)
    # label frequencies: binomial, 5 standard deviations
    freq = np.bincount(labels, minlength=3) / n
    sk_freq = np.bincount(sk_labels, minlength=3) / n
    sd = np.sqrt(WEIGHTS * (1 - WEIGHTS) / n)
    assert np.all(np.abs(freq - WEIGHTS) < 5 * sd) and np.all(np.abs(sk_freq - WEIGHTS) < 5 * sd)
    # moments: within a few standard errors of the closed form, as sklearn's sample is
    scale = np.sqrt(np.diag(cov))
    for sample_X in (X, sk_X):
        assert np.all(np.abs(sample_X.mean(axis=0) - mean) < 5 * scale / np.sqrt(n))
        np.testing.assert_allclose(np.cov(sample_X.T), cov, atol=0.05 * scale.max() ** 2)
    # each component's rows have that component's mean and covariance
    # (within 5 standard errors)
    full = model.full_covariances()
    for j in range(3):
        rows = X[labels == j]
        var = np.diag(full[j])
        assert np.all(np.abs(rows.mean(axis=0) - MEANS[j]) < 5 * np.sqrt(var / len(rows)))
        cov_se = np.sqrt((np.outer(var, var) + full[j] ** 2) / len(rows))
        assert np.all(np.abs(np.cov(rows.T) - full[j]) < 5 * cov_se)


def test_sample_is_reproducible_generated_on_executors_and_fits_back(spark):
    model = model_of("full")
    a = model.sample(20_000, seed=3)
    plan = a._jdf.queryExecution().executedPlan().toString()
    assert "MapInArrow" in plan and "Range" in plan  # no driver-side rows
    Xa, la = collect(a)
    conf = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(conf)
    spark.conf.set(conf, "700")
    try:
        Xb, lb = collect(model.sample(20_000, seed=3))
    finally:
        spark.conf.set(conf, before)
    np.testing.assert_array_equal(Xa, Xb)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(Xa, collect(model.sample(20_000, seed=4))[0])
    assert not np.array_equal(
        collect(model.sample(50, seed=None))[0], collect(model.sample(50, seed=None))[0]
    )
    np.testing.assert_array_equal(collect(model.sample(50))[0], collect(model.sample(50))[0])
    assert model.sample(0).count() == 0
    with pytest.raises(ValueError, match="n must be a non-negative integer"):
        model.sample(-1)

    fitted = GaussianMixture(k=3, seed=1, tol=1e-6).fit(a)
    order = [int(np.argmin(np.linalg.norm(fitted.means - m, axis=1))) for m in MEANS]
    assert sorted(order) == [0, 1, 2]
    # recovered within 5 standard errors (n_j = n w_j rows per component)
    n_j = 20_000 * WEIGHTS
    cov = COVS["full"]
    var = np.diagonal(cov, axis1=1, axis2=2)
    assert np.all(
        np.abs(fitted.weights[order] - WEIGHTS) < 5 * np.sqrt(WEIGHTS * (1 - WEIGHTS) / 20_000)
    )
    assert np.all(np.abs(fitted.means[order] - MEANS) < 5 * np.sqrt(var / n_j[:, None]))
    cov_se = np.sqrt((np.einsum("ki,kj->kij", var, var) + cov**2) / n_j[:, None, None])
    assert np.all(np.abs(fitted.covariances[order] - cov) < 5 * cov_se)
