"""A short fit from an initial model (a warm refit, a nightly update): its first E-step is
taken by the validation pass, so a ``maxIter=1`` fit reads the data once -- as many Spark
jobs as a ``maxIter=0`` fit -- and still ends on scikit-learn's parameters after one
iteration from the same start, for every covariance type and store, for a model whose mean
is far from the data's (moments re-centred exactly) and one so far that they lose digits
(the iteration then takes its E-step again)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGM

from spark_em import GaussianMixture, GaussianMixtureModel
from spark_em.core.mixture import COVARIANCE_TYPES
from spark_em.data.datasets import sample_mixture

from .conftest import to_df
from .test_estimator import precisions_of, start_parameters
from .test_validation import jobs_run_by

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

K, D = 3, 3


@pytest.fixture(scope="module")
def rows():
    X, labels, _ = sample_mixture(300, k=K, d=D, covariance_type="full", seed=5, separation=4.0)
    return X + 50.0, labels  # the data's mean far from the origin


def start(X, labels, covariance_type, shift=0.0):
    """test_estimator's rough start (one row per true cluster as means, unit-ish
    covariances), its means moved by ``shift`` and its covariances scaled by
    ``(1 + |shift|)^2``, with unequal weights."""
    _, means, cov = start_parameters(X, labels, covariance_type)
    return np.array([0.5, 0.3, 0.2]), means + shift, cov * (1.0 + abs(shift)) ** 2


def sklearn_one_iteration(X, w, m, c, covariance_type):
    sk = SkGM(
        K,
        covariance_type=covariance_type,
        max_iter=1,
        tol=0.0,
        weights_init=w,
        means_init=m,
        precisions_init=precisions_of(c, covariance_type),
    )
    return sk.fit(X)


def warm_fit(df, model, covariance_type, store, max_iter=1):
    return GaussianMixture(
        k=K,
        covarianceType=covariance_type,
        maxIter=max_iter,
        tol=0.0,
        initialModel=model,
        blockCache=store,
        featuresCol=[f"f{j}" for j in range(D)],
    ).fit(df)


@pytest.fixture(scope="module")
def frames(spark, rows, tmp_path_factory):
    """The rows as feature columns: a DataFrame for the local and Spark stores, a plain
    Parquet scan for the Parquet store."""
    X, _ = rows
    df = to_df(spark, X).selectExpr(*(f"features[{j}] AS f{j}" for j in range(D)))
    path = str(tmp_path_factory.mktemp("short-fit") / "rows")
    df.write.parquet(path)
    return {"local": df, "spark": df, "parquet": spark.read.parquet(path)}


@pytest.mark.parametrize("store", ["local", "parquet", "spark"])
def test_one_iteration_from_an_initial_model_reads_the_data_once(spark, rows, frames, store):
    X, labels = rows
    df = frames[store]
    model = GaussianMixtureModel.fromParameters(*start(X, labels, "full"))
    counts = [
        len(jobs_run_by(spark, lambda n=n: warm_fit(df, model, "full", store, max_iter=n)))
        for n in (0, 1, 2)
    ]
    # maxIter=1 runs no job more than validating the data; the next iteration is one pass
    assert counts[1] == counts[0] and counts[2] == counts[1] + 1, counts


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("separation", [4.0, 300.0])
def test_every_type_reads_the_data_once_also_with_far_components(
    spark, covariance_type, separation
):
    """Clusters 300 standard deviations apart: the iteration takes a far component's
    moments about its own mean, and the first E-step's statistics are re-centred there
    (re-centred on the data's centre they would lose digits and need a second pass)."""
    X, labels, _ = sample_mixture(
        300, k=K, d=D, covariance_type="full", seed=6, separation=separation
    )
    df = to_df(spark, X)
    means = np.stack([X[labels == j].mean(axis=0) for j in range(K)])
    w, _, c = start(X, labels, covariance_type)
    model = GaussianMixtureModel.fromParameters(w, means, c, covarianceType=covariance_type)

    def fit(n):
        return GaussianMixture(
            k=K, covarianceType=covariance_type, maxIter=n, tol=0.0, initialModel=model
        ).fit(df)

    counts = [len(jobs_run_by(spark, lambda n=n: fit(n))) for n in (0, 1)]
    assert counts[0] == counts[1], counts
    sk = sklearn_one_iteration(X, w, means, c, covariance_type)
    got = fit(1)
    np.testing.assert_allclose(got.means, sk.means_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got.covariances, sk.covariances_, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_weighted_rows_in_both_dtypes(spark, rows, dtype):
    """Weights 1 and 2 are rows once and twice (sklearn on the repeated rows); float32
    within its accuracy contract."""
    X, labels = rows
    weights = np.random.default_rng(3).integers(1, 3, X.shape[0]).astype(float)
    w, m, c = start(X, labels, "full", shift=3.0)
    sk = sklearn_one_iteration(np.repeat(X, weights.astype(int), axis=0), w, m, c, "full")
    df = spark.createDataFrame(
        [(x.tolist(), float(v)) for x, v in zip(X, weights)], "features array<double>, w double"
    )
    got = GaussianMixture(
        k=K,
        maxIter=1,
        tol=0.0,
        weightCol="w",
        dtype=dtype,
        initialModel=GaussianMixtureModel.fromParameters(w, m, c),
    ).fit(df)
    rtol = 1e-9 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(got.weights, sk.weights_, rtol=rtol)
    np.testing.assert_allclose(got.means, sk.means_, rtol=rtol, atol=rtol * np.abs(X).max())
    np.testing.assert_allclose(got.covariances, sk.covariances_, rtol=rtol * 10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("store", ["local", "parquet", "spark"])
def test_one_iteration_from_an_initial_model_is_sklearns(rows, frames, covariance_type, store):
    X, labels = rows
    w, m, c = start(X, labels, covariance_type, shift=3.0)  # the model's mean is off the data's
    sk = sklearn_one_iteration(X, w, m, c, covariance_type)
    model = GaussianMixtureModel.fromParameters(w, m, c, covarianceType=covariance_type)
    got = warm_fit(frames[store], model, covariance_type, store)
    np.testing.assert_allclose(got.weights, sk.weights_, rtol=1e-9)
    np.testing.assert_allclose(got.means, sk.means_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got.covariances, sk.covariances_, rtol=1e-8, atol=1e-10)
    assert got.summary.logLikelihoodHistory == [pytest.approx(sk.lower_bound_, rel=1e-10)]


def test_a_model_far_from_the_data_still_ends_on_sklearns_iteration(rows, frames):
    """Means 1e6 away: the first E-step's moments about the model's mean lose every digit
    of the data's spread; the iteration takes its E-step again about the data's centre."""
    X, labels = rows
    w, m, c = start(X, labels, "diag")
    far = m + 1e6
    sk = sklearn_one_iteration(X, w, far, c * 1e12, "diag")
    model = GaussianMixtureModel.fromParameters(w, far, c * 1e12, covarianceType="diag")
    got = warm_fit(frames["local"], model, "diag", "local")
    np.testing.assert_allclose(got.means, sk.means_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got.covariances, sk.covariances_, rtol=1e-7)


def test_an_initial_models_dimension_is_the_first_guess_of_d(spark, rows, frames):
    """An ``array<double>`` column does not say d in its schema: a warm fit takes the initial
    model's as its first guess (no job to find one) -- as many jobs as on feature columns,
    whose schema gives d -- and rows of another length still get the dimension error."""
    X, labels = rows
    model = GaussianMixtureModel.fromParameters(*start(X, labels, "full"))
    array_df = to_df(spark, X)

    def fit(df, n=1, features="features"):
        return GaussianMixture(
            k=K, maxIter=n, tol=0.0, initialModel=model, blockCache="local", featuresCol=features
        ).fit(df)

    on_array = len(jobs_run_by(spark, lambda: fit(array_df)))
    on_columns = len(jobs_run_by(spark, lambda: fit(frames["local"], features=["f0", "f1", "f2"])))
    assert on_array == on_columns
    np.testing.assert_allclose(
        fit(array_df).means, fit(frames["local"], features=["f0", "f1", "f2"]).means, rtol=1e-12
    )
    short = to_df(spark, X[:, :2])
    with pytest.raises(
        ValueError, match="initialModel has dimension 3 but featuresCol 'features' has dimension 2"
    ):
        fit(short)
