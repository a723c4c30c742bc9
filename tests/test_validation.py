"""Bad input: each case raises a specific error naming the column, the problem and the row count,
and a failed fit leaves nothing cached."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors, VectorUDT
from pyspark.sql import types as T

from spark_em import GaussianMixture, IllDefinedCovarianceError, InvalidInputError

ARRAY = "features array<double>"


def good_rows(n=20, d=2, seed=0):
    rng = np.random.default_rng(seed)
    return [[float(v) for v in row] for row in rng.normal(size=(n, d))]


@pytest.fixture
def clean_cache(spark):
    spark.catalog.clearCache()
    wait_for_no_cache(spark)
    yield
    wait_for_no_cache(spark)


def persistent_rdds(spark) -> int:
    return spark.sparkContext._jsc.getPersistentRDDs().size()


def wait_for_no_cache(spark, timeout=20.0):
    """Unpersisting is asynchronous on the block manager: poll until the storage is empty."""
    deadline = time.time() + timeout
    while persistent_rdds(spark) and time.time() < deadline:
        time.sleep(0.1)
    assert spark._jsparkSession.sharedState().cacheManager().isEmpty(), "a Dataset is still cached"
    assert persistent_rdds(spark) == 0, "an RDD is still persisted"


def fit_error(spark, rows, schema=ARRAY, exc=InvalidInputError, **params):
    df = spark.createDataFrame(rows, schema).repartition(2)
    params.setdefault("k", 2)
    params.setdefault("maxIter", 3)
    with pytest.raises(exc) as info:
        GaussianMixture(**params).fit(df)
    wait_for_no_cache(spark)  # nothing left behind by the failed fit
    return str(info.value)


def with_rows(rows, bad: dict):
    rows = [list(r) for r in rows]
    for i, value in bad.items():
        rows[i] = value
    return [(r,) for r in rows]


# ---------------------------------------------------------------- features values
@pytest.mark.parametrize(
    "value,count,words",
    [
        ([math.nan, 1.0], 2, "NaN or infinite"),
        ([math.inf, 1.0], 1, "NaN or infinite"),
        ([0.5, -math.inf], 3, "NaN or infinite"),
        (None, 2, "null features"),
        ([1.0, None], 2, "null values"),
    ],
    ids=["nan", "+inf", "-inf", "null-vector", "null-element"],
)
def test_bad_feature_values_in_array_column(spark, clean_cache, value, count, words):
    rows = with_rows(good_rows(), {3 + i: value for i in range(count)})
    msg = fit_error(spark, rows)
    assert "'features'" in msg and words in msg and f"{count} rows" in msg


def test_non_finite_values_in_vector_column(spark, clean_cache):
    rows = [(Vectors.dense(r),) for r in good_rows()]
    rows[5] = (Vectors.dense([math.nan, 0.0]),)
    rows[7] = (Vectors.sparse(2, [1], [-math.inf]),)
    schema = T.StructType([T.StructField("vec", VectorUDT())])
    msg = fit_error(spark, rows, schema, featuresCol="vec")
    assert "'vec'" in msg and "2 rows have NaN or infinite values" in msg


def test_nan_in_numeric_columns(spark, clean_cache):
    rows = [tuple(r) for r in good_rows()]
    rows[0] = (math.nan, 1.0)
    rows[1] = (None, 1.0)
    msg = fit_error(spark, rows, "a double, b double", featuresCol=["a", "b"])
    assert "['a', 'b']" in msg and "1 rows have NaN" in msg and "1 rows have null values" in msg


def test_ragged_arrays(spark, clean_cache):
    rows = with_rows(good_rows(), {4: [1.0, 2.0, 3.0], 9: [1.0]})
    msg = fit_error(spark, rows)
    assert "'features'" in msg and "2 rows have a vector length other than d=2" in msg


def test_wrong_length_vectors(spark, clean_cache):
    rows = [(Vectors.dense(r),) for r in good_rows()]
    rows[11] = (Vectors.sparse(5, [0], [1.0]),)
    schema = T.StructType([T.StructField("features", VectorUDT())])
    msg = fit_error(spark, rows, schema)
    assert "'features'" in msg and "1 rows have a vector length other than d=2" in msg


# ---------------------------------------------------------------- columns
def test_string_feature_column(spark, clean_cache):
    msg = fit_error(spark, [("a",), ("b",)], "features string")
    assert "'features'" in msg and "type string" in msg


def test_string_column_in_feature_list(spark, clean_cache):
    msg = fit_error(spark, [(1.0, "x"), (2.0, "y")], "a double, s string", featuresCol=["a", "s"])
    assert "'s'" in msg and "type string" in msg and "numeric" in msg


def test_array_of_strings(spark, clean_cache):
    msg = fit_error(spark, [(["1", "2"],)], "features array<string>")
    assert "'features'" in msg and "array<string>" in msg


@pytest.mark.parametrize("features", ["nope", ["a", "nope"]])
def test_missing_feature_column(spark, clean_cache, features):
    rows = [tuple(r) for r in good_rows()]
    msg = fit_error(spark, rows, "a double, b double", featuresCol=features)
    assert "'nope'" in msg and "does not exist" in msg


def test_missing_or_non_numeric_weight_column(spark, clean_cache):
    msg = fit_error(spark, with_rows(good_rows(), {}), weightCol="w")
    assert "weightCol 'w'" in msg and "does not exist" in msg
    rows = [(r, "heavy") for r in good_rows()]
    msg = fit_error(spark, rows, ARRAY + ", w string", weightCol="w")
    assert "weightCol 'w'" in msg and "string" in msg


@pytest.mark.parametrize("schema,features", [(ARRAY, "features"), ("a double, b double", ["a", "b"])])
def test_empty_dataframe(spark, clean_cache, schema, features):
    msg = fit_error(spark, [], schema, featuresCol=features)
    assert "empty" in msg


def test_all_rows_null_is_reported(spark, clean_cache):
    msg = fit_error(spark, [(None,), (None,)], ARRAY)
    assert "'features'" in msg and ("null" in msg or "empty" in msg)


# ---------------------------------------------------------------- k
@pytest.mark.parametrize("k", [0, -1])
def test_k_below_one(spark, clean_cache, k):
    msg = fit_error(spark, with_rows(good_rows(), {}), exc=ValueError, k=k)
    assert "k must be >= 1" in msg


def test_k_larger_than_rows(spark, clean_cache):
    msg = fit_error(spark, with_rows(good_rows(3), {}), k=5)
    assert "k=5" in msg and "3" in msg and "'features'" in msg


# ---------------------------------------------------------------- weights
@pytest.mark.parametrize(
    "bad,count,words",
    [(-1.0, 2, "negative"), (None, 3, "null weights"), (math.inf, 1, "non-finite")],
    ids=["negative", "null", "inf"],
)
def test_bad_weights(spark, clean_cache, bad, count, words):
    rows = [(r, 1.0) for r in good_rows()]
    for i in range(count):
        rows[2 + i] = (rows[2 + i][0], bad)
    msg = fit_error(spark, rows, ARRAY + ", w double", weightCol="w")
    assert "weightCol 'w'" in msg and f"{count} rows" in msg and words in msg


def test_all_zero_weights(spark, clean_cache):
    rows = [(r, 0) for r in good_rows()]
    msg = fit_error(spark, rows, ARRAY + ", w int", weightCol="w")
    assert "weightCol 'w'" in msg and "zero" in msg


# ---------------------------------------------------------------- parameters and covariances
@pytest.mark.parametrize(
    "params,words",
    [({"covarianceType": "banana"}, "covarianceType"), ({"initMode": "guess"}, "initMode"),
     ({"regCovar": -1.0}, "regCovar"), ({"tol": -1.0}, "tol"), ({"nInit": 0}, "nInit"),
     ({"maxIter": -1}, "maxIter")],
)
def test_bad_parameters(spark, clean_cache, params, words):
    msg = fit_error(spark, with_rows(good_rows(), {}), exc=ValueError, **params)
    assert words in msg


def test_initial_model_that_does_not_fit_the_data(spark, clean_cache):
    from spark_em import GaussianMixtureModel

    init = GaussianMixtureModel.fromParameters([0.5, 0.5], np.zeros((2, 3)), np.stack([np.eye(3)] * 2))
    msg = fit_error(spark, with_rows(good_rows(), {}), exc=ValueError, initialModel=init)
    assert "dimension" in msg


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag"])
def test_singular_covariance_says_raise_reg_covar(spark, clean_cache, covariance_type):
    # a constant feature next to a varying one: every covariance is singular without regCovar
    rows = [([float(x), 7.0],) for x in np.random.default_rng(1).normal(size=40)]
    msg = fit_error(spark, rows, exc=IllDefinedCovarianceError, regCovar=0.0,
                    covarianceType=covariance_type, seed=0)
    assert "increase regCovar" in msg
    # ... and the same data fit once regCovar is positive
    df = spark.createDataFrame(rows, ARRAY)
    model = GaussianMixture(k=2, maxIter=3, regCovar=1e-6, covarianceType=covariance_type,
                            seed=0).fit(df)
    assert np.all(np.isfinite(model.covariances))
    wait_for_no_cache(spark)  # a successful fit unpersists too
