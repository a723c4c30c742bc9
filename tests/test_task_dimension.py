"""The first pass finds d itself (issue 23, point 4): where neither the schema nor a Parquet
listing gives the features' dimension (an array column read through Spark: a cached,
filtered or joined DataFrame), each task of the first pass takes the length of its first
non-null, non-empty vector, and the fit runs no job of its own to look at a first row.
Tasks that disagree, or find none, leave the store without d and the fit finds it as
before (tests/test_dimension.py: the most frequent length wins).

Truths: the same rows given as feature columns (d from the schema, the other path); with
k=1 the closed-form weighted mean and covariance of the good rows (+ regCovar)."""

from __future__ import annotations

import numpy as np
import pytest

from spark_em import GaussianMixture
from spark_em.errors import InvalidRowsError

REG = 1e-6
ARRAY = "features array<double>"


def in_partitions(spark, parts: list[list], schema: str = ARRAY):
    """A DataFrame whose partition i holds the rows ``parts[i]``, in order."""
    rdd = spark.sparkContext.parallelize(parts, len(parts)).flatMap(lambda part: part)
    sizes = rdd.glom().map(len).collect()
    assert sizes == [len(p) for p in parts]
    return spark.createDataFrame(rdd, schema)


def jobs_of(spark, name: str, fn):
    """``(fn(), the number of Spark jobs it ran)``, counted in a job group of its own."""
    sc = spark.sparkContext
    sc.setJobGroup(name, name)
    try:
        out = fn()
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    return out, len(sc.statusTracker().getJobIdsForGroup(name))


@pytest.mark.parametrize("store", ["local", "spark"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_array_column_fit_runs_no_job_for_d_and_matches_the_columns(spark, store, dtype):
    X = np.random.default_rng(4).normal(size=(300, 3)) * [1.0, 2.0, 0.5]
    halves = (X[:150], X[150:])
    array = in_partitions(spark, [[(x.tolist(),) for x in h] for h in halves])
    # the same rows in the same partitions (float32 blocks: the same references too)
    columns = in_partitions(
        spark, [[tuple(x.tolist()) for x in h] for h in halves], "a double, b double, c double"
    )

    def fit(df, features, k=2):
        gm = GaussianMixture(k=k, maxIter=1, seed=3, blockCache=store, dtype=dtype)
        return gm.setFeaturesCol(features).fit(df)

    fit(array, "features")  # warm-up: Python workers, code paths
    model, jobs = jobs_of(spark, f"d-{store}-{dtype}", lambda: fit(array, "features"))
    # the first pass and one EM pass: no job to find a first row's length
    assert jobs == 2, jobs
    reference = fit(columns, ["a", "b", "c"])
    for key in ("weights", "means", "covariances"):
        np.testing.assert_allclose(getattr(model, key), getattr(reference, key), rtol=1e-12)


def closed_form(good):
    return good.mean(axis=0), np.cov(good.T, bias=True) + REG * np.eye(good.shape[1])


@pytest.mark.parametrize("store", ["local", "spark"])
def test_a_partition_of_null_vectors_says_nothing_about_d(spark, store):
    good = np.random.default_rng(5).normal(size=(60, 2)) * [1.0, 3.0]
    df = in_partitions(spark, [[(None,)] * 7, [(x.tolist(),) for x in good]])
    gm = GaussianMixture(k=1, maxIter=3, regCovar=REG, initMode="random", blockCache=store)
    model, jobs = jobs_of(spark, f"nulls-{store}", lambda: gm.setHandleInvalid("skip").fit(df))
    assert jobs == 4, jobs  # the first pass, the random start's, and EM's two (k=1: converged)
    assert {k: v for k, v in model.summary.numRowsSkipped.items() if v} == {"null_vector": 7}
    mean, cov = closed_form(good)
    np.testing.assert_allclose(model.means[0], mean, rtol=1e-12)
    np.testing.assert_allclose(model.covariances[0], cov, rtol=1e-10)
    with pytest.raises(InvalidRowsError, match="7 rows have null features"):
        gm.setHandleInvalid("error").fit(df)


@pytest.mark.parametrize("store", ["local", "spark"])
def test_tasks_that_disagree_leave_d_to_the_most_frequent_length(spark, store, caplog):
    """Task 0 starts with a row of length 5, task 1 with rows of length 2: they disagree,
    and d is the most frequent length, 2."""
    rng = np.random.default_rng(6)
    good = rng.normal(size=(40, 2)) + [1.0, -2.0]
    df = in_partitions(
        spark,
        [
            [(rng.normal(size=5).tolist(),)] + [(x.tolist(),) for x in good[:20]],
            [(x.tolist(),) for x in good[20:]],
        ],
    )
    gm = GaussianMixture(
        k=1, maxIter=3, regCovar=REG, initMode="random", blockCache=store, handleInvalid="skip"
    )
    with caplog.at_level("WARNING", logger="spark_em"):
        model = gm.fit(df)
    assert {k: v for k, v in model.summary.numRowsSkipped.items() if v} == {"wrong_length": 1}
    assert "rows by length: 2: 40, 5: 1" in caplog.text
    mean, cov = closed_form(good)
    np.testing.assert_allclose(model.means[0], mean, rtol=1e-12)
    np.testing.assert_allclose(model.covariances[0], cov, rtol=1e-10)


def test_an_input_of_null_vectors_is_refused_as_before(spark):
    df = in_partitions(spark, [[(None,)] * 3, [(None,)] * 2])
    with pytest.raises(Exception, match="null in every row"):
        GaussianMixture(k=1, maxIter=1, blockCache="local").fit(df)


@pytest.mark.parametrize("first", ["own partition", "first row"])
def test_an_empty_vector_first_gives_the_same_fit_however_partitioned(spark, first):
    """An empty vector alone in its partition (that task finds no length: it disagrees
    with the others) or first in a partition (that task takes the next row's length) is one
    ``wrong_length`` row either way: d is the most frequent length, 2."""
    good = np.random.default_rng(7).normal(size=(30, 2)) + [3.0, 0.0]
    rows = [(x.tolist(),) for x in good]
    parts = [[([],)], rows] if first == "own partition" else [[([],)] + rows[:15], rows[15:]]
    gm = GaussianMixture(k=1, maxIter=3, regCovar=REG, initMode="random", handleInvalid="skip")
    model = gm.fit(in_partitions(spark, parts))
    assert {k: v for k, v in model.summary.numRowsSkipped.items() if v} == {"wrong_length": 1}
    mean, cov = closed_form(good)
    np.testing.assert_allclose(model.means[0], mean, rtol=1e-12)
    np.testing.assert_allclose(model.covariances[0], cov, rtol=1e-10)


def test_task_dimension_takes_the_first_vector_with_a_value():
    import pyarrow as pa

    from spark_em.data.arrow_blocks import task_dimension

    def batch(values):
        return pa.record_batch([pa.array(values, pa.list_(pa.float64()))], ["x"])

    nulls, empty, three = batch([None, None]), batch([None, []]), batch([[1.0, 2.0, 3.0], []])
    found = lambda batches, d=None: [(b.num_rows, k) for b, k in task_dimension(batches, d)]  # noqa: E731
    # batches before the first vector with a value wait for it, and all get its length
    assert found([nulls, empty, three, nulls]) == [(2, 3), (2, 3), (2, 3), (2, 3)]
    assert found([nulls, nulls]) == [(2, 0), (2, 0)]  # nothing but nulls: says nothing
    assert found([nulls, empty]) == [(2, 1), (2, 1)]  # empty vectors: never agrees but d=1
    assert found([batch([])]) == [(0, 0)]
    assert found([nulls, three], 5) == [(2, 5), (2, 5)]  # a known d is kept


def test_validation_stats_with_the_tasks_own_d_merge_in_any_order():
    """Sums over every order and grouping of the tasks' statistics: a task of null rows
    (d 0) adds only its counts; two lengths disagree, and stay so whatever they meet."""
    import itertools

    from spark_em.data.validation import DISAGREE, ValidationStats

    def task(d, rows, nulls):
        st = ValidationStats.empty(d, 5)
        bad = np.zeros(len(st.bad))
        bad[0] = nulls
        if rows:
            X = np.arange(rows * d, dtype=float).reshape(rows, d)
            st.add_rows(X, np.ones(rows), bad, seed=1)
        else:
            st.bad += bad
        return ValidationStats.unpack(st.pack())  # as a task sends them

    two, two_b, none = task(2, 4, 1), task(2, 3, 0), task(0, 0, 6)
    for order in itertools.permutations([two, two_b, none]):
        left = (order[0] + order[1]) + order[2]
        right = order[0] + (order[1] + order[2])
        for total in (left, right):
            assert total.d == 2 and total.n_rows == 7 and total.bad[0] == 7
            np.testing.assert_array_equal(total.centre, (two + two_b).centre)
    three = task(3, 2, 2)
    for order in itertools.permutations([two, three, none]):
        for total in ((order[0] + order[1]) + order[2], order[0] + (order[1] + order[2])):
            assert total.d == DISAGREE and total.bad[0] == 9
            again = ValidationStats.unpack(total.pack())
            assert again.d == DISAGREE and again.bad[0] == 9


def test_blocks_found_at_another_width_are_refused():
    """A block of Spark's cache recomputed by a task that found another d (an input whose
    rows changed) is refused, not read as rows of the fit's width; d-wide blocks found by
    the tasks themselves (``d`` None) read back as they were."""
    import pyarrow as pa

    from spark_em.data.stores.cache_blocks import encode_blocks, read_blocks

    X = np.random.default_rng(8).normal(size=(12, 3))
    batch = pa.record_batch(
        [pa.array(list(X), pa.list_(pa.float64())), pa.array(np.ones(12))], ["x", "w"]
    )
    table = pa.Table.from_batches(list(encode_blocks(None, max_rows=5)(iter([batch]))))
    blocks = table.combine_chunks().to_batches()
    (chunk,) = list(read_blocks(3, chunk_rows=100)(blocks))
    np.testing.assert_array_equal(chunk[0], X)
    with pytest.raises(ValueError, match="another width than d=2"):
        list(read_blocks(2, chunk_rows=100)(blocks))
