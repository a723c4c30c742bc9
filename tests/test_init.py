"""Initialisation on the driver sample, against scikit-learn's k-means."""

import numpy as np
import pytest
from sklearn.cluster import KMeans

from spark_em.core.initialisation import kmeans_plusplus, lloyd
from spark_em.data.datasets import sample_mixture


@pytest.mark.parametrize("d,k", [(2, 3), (30, 8)])
def test_lloyd_matches_sklearn_kmeans_from_the_same_seeds(d, k):
    X, _, _ = sample_mixture(4000, k=k, d=d, covariance_type="full", seed=7, separation=2.0)
    seeds = kmeans_plusplus(X, k, np.random.default_rng(0))
    for max_iter in (1, 3, 300):
        ours = lloyd(X, seeds, max_iter=max_iter, tol=1e-4)
        sk = KMeans(k, init=seeds, n_init=1, max_iter=max_iter, tol=1e-4, algorithm="lloyd").fit(X)
        np.testing.assert_allclose(ours, sk.cluster_centers_, rtol=1e-10, atol=1e-10)
