"""Bad input: each case raises a specific error naming the column, the problem and the row count,
and a failed fit leaves nothing cached."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors, VectorUDT
from pyspark.sql import functions as F
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


@pytest.mark.parametrize(
    "schema,features", [(ARRAY, "features"), ("a double, b double", ["a", "b"])]
)
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
    [
        ({"covarianceType": "banana"}, "covarianceType"),
        ({"initMode": "guess"}, "initMode"),
        ({"regCovar": -1.0}, "regCovar"),
        ({"tol": -1.0}, "tol"),
        ({"nInit": 0}, "nInit"),
        ({"maxIter": -1}, "maxIter"),
    ],
)
def test_bad_parameters(spark, clean_cache, params, words):
    msg = fit_error(spark, with_rows(good_rows(), {}), exc=ValueError, **params)
    assert words in msg


def test_initial_model_that_does_not_fit_the_data(spark, clean_cache):
    from spark_em import GaussianMixtureModel

    init = GaussianMixtureModel.fromParameters(
        [0.5, 0.5], np.zeros((2, 3)), np.stack([np.eye(3)] * 2)
    )
    msg = fit_error(spark, with_rows(good_rows(), {}), exc=ValueError, initialModel=init)
    assert "dimension" in msg


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag"])
def test_singular_covariance_says_raise_reg_covar(spark, clean_cache, covariance_type):
    # a constant feature next to a varying one: every covariance is singular without regCovar
    rows = [([float(x), 7.0],) for x in np.random.default_rng(1).normal(size=40)]
    msg = fit_error(
        spark,
        rows,
        exc=IllDefinedCovarianceError,
        regCovar=0.0,
        covarianceType=covariance_type,
        seed=0,
    )
    assert "increase regCovar" in msg
    # ... and the same data fit once regCovar is positive
    df = spark.createDataFrame(rows, ARRAY)
    model = GaussianMixture(
        k=2, maxIter=3, regCovar=1e-6, covarianceType=covariance_type, seed=0
    ).fit(df)
    assert np.all(np.isfinite(model.covariances))
    wait_for_no_cache(spark)  # a successful fit unpersists too


# ---------------------------------------------------------------- extreme magnitudes
@pytest.mark.parametrize(
    "value,weight,words",
    [
        (1e76, 1.0, "'features': 1 rows have values beyond +-1e+75"),
        (-1e200, 1.0, "'features': 1 rows have values beyond +-1e+75"),
        (1e300, 1.0, "'features': 1 rows have values beyond +-1e+75"),
        (1.0, 1e76, "weightCol 'w': 1 rows have weights above 1e+75"),
        (1.0, 1e308, "weightCol 'w': 1 rows have weights above 1e+75"),
    ],
    ids=["value-1e76", "value-1e200", "value-1e300", "weight-1e76", "weight-1e308"],
)
def test_extreme_magnitudes_get_our_message(spark, clean_cache, value, weight, words):
    rows = [(r, 1.0) for r in good_rows()]
    rows[4] = ([value, 0.5], weight)
    msg = fit_error(spark, rows, ARRAY + ", w double", weightCol="w")
    assert words in msg and "rescale" in msg


def test_the_largest_allowed_magnitudes_fit_without_overflow(spark, clean_cache):
    """Values up to 1e75 and weights up to 1e75 are accepted: their statistics (w x^2 summed)
    stay finite, and the fit is the one of the rescaled data, rescaled."""
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(c, 1.0, size=(30, 2)) for c in (-5.0, 5.0)])
    w = rng.uniform(0.2, 1.0, size=60)
    big, heavy = 1e74, 1e75

    def fit(scale, wscale):
        df = spark.createDataFrame(
            [([float(a) for a in x * scale], float(v * wscale)) for x, v in zip(X, w)],
            ARRAY + ", w double",
        )
        return GaussianMixture(
            k=2, weightCol="w", seed=3, maxIter=3, tol=0.0, regCovar=1e-6 * scale**2
        ).fit(df)

    small, large = fit(1.0, 1.0), fit(big, heavy)
    assert np.abs(X * big).max() <= 1e75 and np.all(np.isfinite(large.covariances))
    np.testing.assert_allclose(large.means / big, small.means, rtol=1e-9)
    np.testing.assert_allclose(large.covariances / big**2, small.covariances, rtol=1e-9)
    np.testing.assert_allclose(large.weights, small.weights, rtol=1e-9)


def test_a_total_weight_that_is_not_finite_is_named():
    """Unreachable through a fit (weights <= 1e75 and values <= 1e75 keep every sum finite),
    but the check stays: its message names the weight column."""
    from spark_em.data.validation import ValidationStats, check_validation

    stats = ValidationStats.empty(2, 10)
    stats.n_rows, stats.weight_sum = 3.0, math.inf
    with pytest.raises(InvalidInputError, match="weightCol 'w': the weights' total is not finite"):
        check_validation(stats, "features", "w", skip_invalid=False)
    stats.weight_sum, stats.weighted_sum = 3.0, np.array([math.inf, 0.0])
    with pytest.raises(InvalidInputError, match="weightCol 'w': the weights' total is not finite"):
        check_validation(stats, "features", "w", skip_invalid=False)


# ---------------------------------------------------------------- before any Spark job
def jobs_run_by(spark, action) -> list:
    """The Spark jobs ``action()`` started (in this thread's job group)."""
    sc = spark.sparkContext
    group = f"spark-em-validation-{time.time_ns()}"
    sc.setJobGroup(group, "bad input check")
    try:
        action()
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)
    return list(sc.statusTracker().getJobIdsForGroup(group))


@pytest.mark.parametrize(
    "params,exc,words",
    [
        (
            {"featuresCol": ["a", "flag"]},
            InvalidInputError,
            "feature column 'flag' has type boolean",
        ),
        ({"featuresCol": ["a", "s", "b"]}, InvalidInputError, "feature column 's' has type string"),
        ({"featuresCol": "flag"}, InvalidInputError, "featuresCol 'flag' has type boolean"),
        (
            {"featuresCol": ["a", "b"], "weightCol": "flag"},
            InvalidInputError,
            "weightCol 'flag' has type boolean",
        ),
        ({"featuresCol": ["a", "b"], "seed": 2**63}, ValueError, "seed must be None or an integer"),
        ({"featuresCol": ["a", "b"], "seed": -(2**63) - 1}, ValueError, "seed must be None or an"),
        ({"featuresCol": ["a", "b"], "k": 0}, ValueError, "k must be >= 1"),
    ],
    ids=[
        "boolean-in-list",
        "string-in-list",
        "boolean-column",
        "boolean-weight",
        "seed-2**63",
        "seed-below-long",
        "k-0",
    ],
)
def test_schema_and_param_errors_come_before_any_spark_job(spark, clean_cache, params, exc, words):
    df = spark.createDataFrame(
        [(float(i), float(i % 3), i % 2 == 0, str(i)) for i in range(20)],
        "a double, b double, flag boolean, s string",
    )

    def fit():
        with pytest.raises(exc, match=words.replace("*", r"\*")):
            GaussianMixture(k=params.pop("k", 2), **params).fit(df)

    assert jobs_run_by(spark, fit) == []


def test_seed_takes_any_spark_long_and_a_negative_one_is_reproducible(spark, clean_cache):
    df = spark.createDataFrame(with_rows(good_rows(60), {}), ARRAY).repartition(2)
    fits = [
        GaussianMixture(k=2, seed=s, maxIter=3, initMode="random").fit(df)
        for s in (-1, -1, -(2**63), 2**63 - 1)
    ]
    np.testing.assert_array_equal(fits[0].means, fits[1].means)
    assert all(np.all(np.isfinite(m.means)) for m in fits)
    with pytest.raises(TypeError, match='param "seed"'):
        GaussianMixture(seed=1.5)


# ---------------------------------------------------------------- awkward column names
@pytest.mark.parametrize("block_cache", ["auto", "parquet"])
def test_column_names_with_dots_and_backticks_work(spark, clean_cache, tmp_path, block_cache):
    """Feature, weight and output columns named with dots, backticks and spaces: fit,
    transform, score and clusterSizes give exactly what plain names give."""
    rng = np.random.default_rng(4)
    X = np.concatenate([rng.normal(c, 1.0, size=(40, 2)) for c in (-4.0, 4.0)])
    w = rng.uniform(0.5, 2.0, size=80)
    odd = {"vec": "fea`tures.v 1", "a": "a.x", "b": "b`y", "w": "w.t`"}
    rows = [([float(a) for a in x], float(x[0]), float(x[1]), float(v)) for x, v in zip(X, w)]

    def frame(names, where):
        schema = ", ".join(
            f"`{names[c].replace('`', '``')}` {t}"
            for c, t in (
                ("vec", "array<double>"),
                ("a", "double"),
                ("b", "double"),
                ("w", "double"),
            )
        )
        spark.createDataFrame(rows, schema).coalesce(1).write.parquet(str(tmp_path / where))
        return spark.read.parquet(str(tmp_path / where))

    results = []
    for names, where in (({c: c for c in odd}, "plain"), (odd, "odd")):
        df = frame(names, where)
        # Spark's cache / local files read the vector column, the Parquet store the columns
        for features in ([names["a"], names["b"]] if block_cache == "parquet" else names["vec"],):
            gm = GaussianMixture(
                k=2,
                seed=5,
                maxIter=4,
                tol=0.0,
                featuresCol=features,
                weightCol=names["w"],
                blockCache=block_cache,
                predictionCol="pred.x`",
                probabilityCol="p`rob.y",
            )
            model = gm.fit(df)
            out = (
                model.transform(df)
                .select(F.col("`pred.x```").alias("p"), F.col("`p``rob.y`").alias("q"))
                .collect()
            )
            results.append(
                (
                    where,
                    model.means,
                    model.score(df),
                    model.summary.clusterSizes,
                    [r["p"] for r in out],
                    np.array([r["q"].toArray() for r in out]),
                )
            )
    half = len(results) // 2
    for plain, awkward in zip(results[:half], results[half:]):
        np.testing.assert_array_equal(plain[1], awkward[1])
        assert plain[2] == awkward[2] and plain[3] == awkward[3] and plain[4] == awkward[4]
        np.testing.assert_array_equal(plain[5], awkward[5])


@pytest.mark.parametrize("decoder", ["array", "columns"])
@pytest.mark.parametrize("missing", [False, True], ids=["nan-invalid", "nan-missing"])
@pytest.mark.parametrize(
    "bad",
    [None, math.nan, math.inf, -math.inf, 2e75, -2e75, 2e30],
    ids=["clean", "nan", "+inf", "-inf", "+huge", "-huge", "beyond-float32"],
)
def test_decoded_chunk_matches_row_by_row_checks(bad, missing, decoder):
    """The decoders' whole-chunk test (two reductions) and their row-wise checks agree with
    a row-by-row reference: one bad value in a chunk of clean rows, under float64's limit
    (MAX_ABS_VALUE) and float32's (its Precision's max_value), NaN invalid or a missing
    value (missingValues="marginalize")."""
    import pyarrow as pa

    from spark_em.core.precision import FLOAT32
    from spark_em.data.arrow_blocks import (
        BAD_KINDS,
        MAX_ABS_VALUE,
        columns_to_matrix,
        combine_rows,
        list_to_matrix,
    )

    rng = np.random.default_rng(3)
    X = rng.normal(size=(5000, 7)) * 1e3
    if bad is not None:
        X[1234, 5] = bad
    if decoder == "array":
        decoded = list_to_matrix(pa.array([list(r) for r in X], pa.list_(pa.float64())), 7, missing)
    else:
        decoded = columns_to_matrix([pa.array(c) for c in X.T], 7, missing)
    for max_value in (MAX_ABS_VALUE, FLOAT32.max_value):
        keep, kinds = [], dict.fromkeys(BAD_KINDS, 0)
        for row in X:  # the reference: each row on its own
            if any(math.isinf(v) or (math.isnan(v) and not missing) for v in row):
                kinds["non_finite"] += 1
            elif any(abs(v) > max_value for v in row if not math.isnan(v)):
                kinds["huge_value"] += 1
            else:
                keep.append(row)
        Xd, valid, counts = decoded[0].copy(), decoded[1].copy(), dict(decoded[2])
        got, w, bad_counts = combine_rows(Xd, valid, counts, None, max_value)
        np.testing.assert_array_equal(got, np.array(keep))  # NaN where NaN
        assert w.tolist() == [1.0] * len(keep)
        assert dict(zip(BAD_KINDS, bad_counts.tolist())) == kinds


@pytest.mark.parametrize("ties", ["none", "equal keys", "keys of -inf"])
def test_the_sample_is_ordered_by_key_then_by_content(ties):
    """The sample's canonical order (what is drawn from it must not depend on the order
    the tasks' statistics merged in): the largest key first, equal keys -- duplicate rows,
    or weights so small that log(u) / w is -inf -- by the rows' content (Python's sort)."""
    from spark_em.data.validation import ValidationStats

    rng = np.random.default_rng(3)
    stats = ValidationStats.empty(3, 100)
    rows = rng.integers(0, 3, (60, 3)).astype(float)
    keys = np.log(rng.random(60))
    if ties == "equal keys":
        keys[10:30] = keys[5]
    elif ties == "keys of -inf":
        keys[10:30] = -np.inf
    stats.keys, stats.sample_rows = keys, rows
    expected = sorted(zip((-k for k in keys), (tuple(r) for r in rows)))
    np.testing.assert_array_equal(stats.sample, np.array([r for _, r in expected]))
