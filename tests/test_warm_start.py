"""Warm start detects convergence (sklearn's ``test_convergence_detected_with_warm_start``):
with ``initialModel`` the first change is measured against the log-likelihood the initial
model's fit ended with, so refits with ``maxIter=1`` report ``converged`` exactly when
sklearn's ``warm_start`` refits do.  And ``transform`` adds its columns in MLlib's order."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pyspark.ml.clustering import GaussianMixture as MLlibGM
from pyspark.ml.functions import array_to_vector
from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGM

from spark_em import ConvergenceWarning, GaussianMixture, GaussianMixtureModel
from spark_em.data.datasets import sample_mixture

from .conftest import to_df

K = 3


@pytest.fixture(scope="module")
def data(spark):
    X, labels, _ = sample_mixture(300, k=K, d=2, covariance_type="full", seed=8, separation=3.0)
    means = np.stack([X[np.flatnonzero(labels == j)[0]] for j in range(K)])
    start = (np.full(K, 1.0 / K), means, np.stack([np.eye(2) * s for s in (1.0, 2.0, 0.5)]))
    return X, to_df(spark, X), start


def refit(model, df, max_iter=1):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(k=K, maxIter=max_iter, tol=1e-3, initialModel=model).fit(df)


def test_refits_with_max_iter_1_converge_as_sklearn_warm_start(spark, data):
    X, df, (w, m, c) = data
    sk = SkGM(
        K,
        warm_start=True,
        max_iter=1,
        tol=1e-3,
        weights_init=w,
        means_init=m,
        precisions_init=np.linalg.inv(c),
    )
    model = GaussianMixtureModel.fromParameters(w, m, c)
    flags = []
    for _ in range(40):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SkConvergenceWarning)
            sk.fit(X)
        model = refit(model, df)
        s = model.summary
        assert s.numIter == 1 and s.logLikelihoodHistory[-1] == pytest.approx(
            sk.lower_bound_, rel=1e-9
        )
        flags.append((s.converged, bool(sk.converged_)))
        if sk.converged_:
            break
    assert flags[-1] == (True, True)  # converged, on the same refit as sklearn
    assert all(ours == theirs for ours, theirs in flags) and len(flags) > 3


def test_first_change_is_infinite_without_a_comparable_previous_fit(spark, data):
    X, df, (w, m, c) = data
    converged = refit(refit(GaussianMixtureModel.fromParameters(w, m, c), df, 300), df)
    assert converged.summary.converged  # from a converged fit on the same rows
    # the same parameters without a fit behind them: nothing to compare the first change to
    bare = GaussianMixtureModel.fromParameters(
        converged.weights, converged.means, converged.covariances
    )
    assert not refit(bare, df).summary.converged
    # a fit of other rows (here: the first 200) is not this fit's history
    other = refit(GaussianMixtureModel.fromParameters(w, m, c), to_df(spark, X[:200]), 300)
    assert other.summary.converged and not refit(other, df).summary.converged


def test_transform_adds_probability_then_prediction_as_mllib(spark, data):
    _, df, _ = data
    vectors = df.select(array_to_vector("features").alias("features"))
    mllib = MLlibGM(k=K, maxIter=2, seed=1).fit(vectors).transform(vectors).columns
    ours = refit(GaussianMixtureModel.fromParameters(*data[2]), vectors).transform(vectors)
    assert ours.columns == mllib == ["features", "probability", "prediction"]
