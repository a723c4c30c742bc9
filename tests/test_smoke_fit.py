"""End-to-end: a fit on well-separated blobs recovers the generating means (closed truth)."""

import numpy as np

from spark_em import GaussianMixture

from .conftest import to_df


def test_fit_recovers_generating_means(spark, blobs):
    X, labels, truth = blobs
    model = GaussianMixture(k=3, seed=3, tol=1e-6).fit(to_df(spark, X))
    # match components to the truth by nearest mean
    order = [int(np.argmin(np.linalg.norm(truth["means"] - m, axis=1))) for m in model.means]
    assert sorted(order) == [0, 1, 2]
    emp = np.stack([X[labels == j].mean(axis=0) for j in order])
    np.testing.assert_allclose(model.means, emp, atol=0.05)
    assert model.summary.numIter >= 2
    assert sum(model.summary.clusterSizes) == len(X)
