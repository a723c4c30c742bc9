"""``handleInvalid``: "error" (default) refuses invalid rows; "skip" leaves them out of the
fit (counted by kind in ``summary.numRowsSkipped``) and of score/bic/aic, and gives them null
outputs in ``transform``.  Truth: scikit-learn on the valid rows alone."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGM

from spark_em import GaussianMixture, GaussianMixtureModel, InvalidInputError
from spark_em.data.datasets import sample_mixture

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

K, N = 2, 200
GOOD = [0.5, -0.5]
# (features, weight, kind)
BAD = [
    (None, 1.0, "null_vector"),
    ([float("nan"), 1.0], 1.0, "non_finite"),
    ([float("inf"), 0.0], 1.0, "non_finite"),
    ([1.0], 1.0, "wrong_length"),
    ([1.0, None], 1.0, "null_element"),
    ([1e80, 0.0], 1.0, "huge_value"),
    (GOOD, None, "null_weight"),
    (GOOD, -1.0, "negative_weight"),
    (GOOD, 1e80, "huge_weight"),
]
SKIPPED = {
    "null_vector": 1,
    "non_finite": 2,
    "wrong_length": 1,
    "null_element": 1,
    "huge_value": 1,
    "null_weight": 1,
    "negative_weight": 1,
    "huge_weight": 1,
}
BAD_FEATURES = {N + i for i, (_, _, kind) in enumerate(BAD) if "weight" not in kind}


@pytest.fixture(scope="module")
def data(spark):
    X, labels, _ = sample_mixture(N, k=K, d=2, covariance_type="full", seed=4, separation=6.0)
    rows = [(i, x.tolist(), 1.0) for i, x in enumerate(X)]
    rows += [(N + i, f, w) for i, (f, w, _) in enumerate(BAD)]
    df = spark.createDataFrame(rows, "id long, features array<double>, w double").coalesce(2)
    means = np.stack([X[np.flatnonzero(labels == j)[0]] for j in range(K)])
    start = GaussianMixtureModel.fromParameters([0.5, 0.5], means, np.stack([np.eye(2)] * K))
    sk = SkGM(
        K,
        max_iter=5,
        tol=0.0,
        weights_init=[0.5, 0.5],
        means_init=means,
        precisions_init=np.stack([np.eye(2)] * K),
    ).fit(X)
    return X, df, start, sk


def fit(df, start, **params):
    return GaussianMixture(
        k=K, maxIter=5, tol=0.0, initialModel=start, weightCol="w", **params
    ).fit(df)


def test_error_is_the_default_and_names_every_kind(spark, data):
    _, df, start, _ = data
    with pytest.raises(InvalidInputError) as info:
        fit(df, start)
    for phrase in (
        "null features",
        "vector length other than d=2",
        "null values",
        "NaN or infinite",
        "beyond +-1e+75",
        "null weights",
        "negative",
        "weights above 1e+75",
    ):
        assert phrase in str(info.value)
    with pytest.raises(ValueError, match="handleInvalid must be one of"):
        fit(df, start, handleInvalid="keep")


def test_skip_fits_the_valid_rows_as_sklearn_does(spark, data, tmp_path):
    X, df, start, sk = data
    model = fit(df, start, handleInvalid="skip")
    s = model.summary
    assert s.numRowsSkipped == SKIPPED and s.numRows == N and s.weightSum == N
    np.testing.assert_allclose(model.weights, sk.weights_, rtol=1e-6)
    np.testing.assert_allclose(model.means, sk.means_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(model.covariances, sk.covariances_, rtol=1e-6, atol=1e-9)
    assert s.logLikelihoodHistory[-1] == pytest.approx(sk.lower_bound_, rel=1e-9)
    # the model carries the setting: transform gives invalid rows nulls, score leaves them out
    assert model.getHandleInvalid() == "skip"
    rows = model.transform(df).orderBy("id").select("id", "probability", "prediction").collect()
    for r in rows:
        assert (r["prediction"] is None) == (r["probability"] is None) == (r["id"] in BAD_FEATURES)
    good = [r for r in rows if r["id"] < N]
    np.testing.assert_array_equal([r["prediction"] for r in good], sk.predict(X))
    np.testing.assert_allclose(
        [r["probability"].toArray() for r in good], sk.predict_proba(X), rtol=1e-6, atol=1e-9
    )
    sk_final = model.toSklearn()
    assert model.score(df) == pytest.approx(sk_final.score(X), rel=1e-10)
    assert model.bic(df) == pytest.approx(sk_final.bic(X), rel=1e-10)
    assert sum(s.clusterSizes) == N + 3  # the rows with bad weights have good features
    model.save(str(tmp_path / "m"))
    loaded = GaussianMixtureModel.load(str(tmp_path / "m"))
    assert loaded.getHandleInvalid() == "skip" and loaded.summary.numRowsSkipped == SKIPPED
    # the same model with "error" refuses them again
    with pytest.raises(Exception, match="rows that cannot be scored"):
        loaded.setHandleInvalid("error").transform(df).collect()
    with pytest.raises(ValueError, match="handleInvalid must be one of"):
        loaded.setHandleInvalid("keep").transform(df)


def test_skip_in_model_selection(spark, data):
    _, df, _, _ = data
    gm = GaussianMixture(k=K, maxIter=3, weightCol="w", handleInvalid="skip")
    model, table = gm.fitSelect(df, ks=[2])
    assert model.summary.numRowsSkipped == SKIPPED and table.count() == 1
