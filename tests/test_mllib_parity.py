"""Parity with Spark MLlib's pyspark.ml.clustering.GaussianMixture on the same DataFrames."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.clustering import GaussianMixture as MLlibGM
from pyspark.ml.linalg import Vectors

from spark_em import GaussianMixture
from spark_em.data.datasets import sample_mixture

# The data of pyspark.ml.clustering.GaussianMixture's own doctest.
DOCTEST_POINTS = [
    [-0.1, -0.05],
    [-0.01, -0.1],
    [0.9, 0.8],
    [0.75, 0.935],
    [-0.83, -0.68],
    [-0.91, -0.76],
]


def partition_of(labels) -> set[frozenset[int]]:
    """Group row indices by label: a clustering independent of how the labels are numbered."""
    groups: dict[int, set[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), set()).add(i)
    return {frozenset(g) for g in groups.values()}


def test_doctest_points_same_three_pairs(spark):
    df = spark.createDataFrame(
        [(i, Vectors.dense(p)) for i, p in enumerate(DOCTEST_POINTS)], ["id", "features"]
    )
    mllib = MLlibGM(k=3, tol=0.0001, seed=10, maxIter=10).fit(df)
    ours = GaussianMixture(k=3, tol=0.0001, seed=10, maxIter=10).fit(df)

    def clusters(model):
        rows = model.transform(df).orderBy("id").select("prediction").collect()
        return partition_of(r[0] for r in rows)

    pairs = {frozenset({0, 1}), frozenset({2, 3}), frozenset({4, 5})}
    assert clusters(mllib) == pairs  # MLlib's doctest result
    assert clusters(ours) == pairs
    assert sorted(ours.summary.clusterSizes) == sorted(mllib.summary.clusterSizes) == [2, 2, 2]


@pytest.mark.parametrize("d", [2, 4])
def test_same_log_likelihood_on_separated_data(spark, d):
    X, labels, _ = sample_mixture(
        2000, k=3, d=d, covariance_type="full", seed=100 + d, separation=10.0
    )
    df = spark.createDataFrame([(Vectors.dense(x),) for x in X], ["features"]).repartition(2)
    df.cache()
    mllib = MLlibGM(k=3, tol=1e-6, maxIter=200, seed=1).fit(df)
    ours = GaussianMixture(k=3, tol=1e-8, maxIter=200, seed=1).fit(df)
    df.unpersist()
    # both found the generating clusters (so they are at the same optimum) ...
    mllib_pred = [r[0] for r in mllib.transform(df).select("prediction").collect()]
    ours_pred = [r[0] for r in ours.transform(df).select("prediction").collect()]
    assert partition_of(mllib_pred) == partition_of(ours_pred)
    # ... and reach the same total log-likelihood
    assert ours.summary.logLikelihood == pytest.approx(mllib.summary.logLikelihood, rel=1e-3)
    # MLlib's means/weights agree with ours after matching components
    mllib_means = np.array([g.toArray() for g in mllib.gaussiansDF.toPandas()["mean"]])
    order = [int(np.argmin(np.linalg.norm(mllib_means - m, axis=1))) for m in ours.means]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(ours.means, mllib_means[order], atol=1e-3)
    np.testing.assert_allclose(ours.weights, np.asarray(mllib.weights)[order], atol=1e-3)
