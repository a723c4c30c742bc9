"""The data layer: every block store against the local math on the same data, the first
pass's measurements, the tree reduction, and the release of everything a store made."""

from __future__ import annotations

import glob
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spark_em import GaussianMixture
from spark_em.core.estep import EStepKernel, log_responsibilities
from spark_em.core.mixture import GaussianParams
from spark_em.core.summarizers import Chunk
from spark_em.data.passes import run_pass
from spark_em.data.prepare import prepare
from spark_em.data.reduce import packed_batch, tree_collect

STORES = ("local", "spark", "parquet")


def _write_parquet(path, X, w=None, row_group_size=40):
    feats = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), X.shape[1])
    cols = {"features": feats.cast(pa.list_(pa.float64()))}
    if w is not None:
        cols["w"] = pa.array(w)
    pq.write_table(pa.table(cols), str(path), row_group_size=row_group_size)
    return str(path)


@pytest.fixture(scope="module")
def weighted(spark, tmp_path_factory):
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(c, 1.0, size=(100, 3)) for c in (-4.0, 0.0, 4.0)]) + 1e4
    w = rng.uniform(0.1, 3.0, size=X.shape[0])
    path = _write_parquet(tmp_path_factory.mktemp("weighted") / "x.parquet", X, w)
    return X, w, path


def _frame(spark, path, store):
    # a plain scan for the Parquet store, several partitions for the others
    df = spark.read.parquet(path)
    return df if store == "parquet" else df.repartition(5)


def _local_root(spark):
    return spark.sparkContext.getConf().get("spark.local.dir").split(",")[0]


def _block_dirs(spark):
    root = _local_root(spark)
    return set(glob.glob(f"{root}/spark-em-blocks-*") + glob.glob(f"{root}/*/spark-em-blocks-*"))


@pytest.mark.parametrize("store_name", STORES)
def test_first_pass_measures_the_data(spark, weighted, store_name):
    X, w, path = weighted
    store, data = prepare(
        _frame(spark, path, store_name),
        "features",
        "w",
        sample_size=50,
        seed=1,
        block_cache=store_name,
    )
    with store:
        assert data.store_name == store_name == store.name
        assert (data.d, data.n_rows) == (3, 300)
        assert data.weight_sum == pytest.approx(w.sum(), rel=1e-12)
        np.testing.assert_allclose(data.centre, w @ X / w.sum(), rtol=1e-13)
        assert data.sample.shape == (50, 3)  # real rows of the data
        rows = {tuple(x) for x in X}
        assert all(tuple(s) in rows for s in data.sample)
        assert data.rows_skipped == 0


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("store_name", STORES)
def test_run_pass_equals_local_statistics(spark, weighted, store_name, covariance_type):
    X, w, path = weighted
    means = np.array([[-4.0] * 3, [0.5] * 3, [4.0] * 3]) + 1e4
    cov = {
        "full": np.stack([np.eye(3)] * 3),
        "tied": np.eye(3) * 2,
        "diag": np.ones((3, 3)),
        "spherical": np.array([1.0, 2.0, 0.5]),
    }[covariance_type]
    params = GaussianParams.from_covariances([0.2, 0.5, 0.3], means, cov, covariance_type)
    store, data = prepare(_frame(spark, path, store_name), "features", "w", block_cache=store_name)
    with store:
        kernel = EStepKernel(params, data.centre)
        # two models in one pass: the same kernel twice gives the same statistics twice
        (dist, again), profile = run_pass(store, [kernel, kernel], data.centre)
    assert profile.tasks >= 1 and profile.pass_s > 0 and profile.kernel_s > 0
    local = kernel.new_stats(3)
    kernel.accumulate(local, Chunk(X, w, data.centre))
    for name in ("nk", "sk", "second", "hard_counts"):
        np.testing.assert_allclose(getattr(dist, name), getattr(local, name), rtol=1e-10, atol=1e-8)
        np.testing.assert_array_equal(getattr(dist, name), getattr(again, name))
    assert dist.log_likelihood == pytest.approx(local.log_likelihood, rel=1e-12)
    assert (dist.weight_sum, dist.n_rows) == (pytest.approx(w.sum(), rel=1e-12), 300)
    # and the M-step from the distributed statistics equals sklearn's on the same data
    from sklearn.mixture import _gaussian_mixture as skg

    resp = (
        np.exp(log_responsibilities(params, X)[1]) * w[:, None]
    )  # weights as fractional responsibilities
    nk, sk_means, _ = skg._estimate_gaussian_parameters(X, resp, 1e-6, covariance_type)
    new = dist.m_step(data.centre, 1e-6)
    np.testing.assert_allclose(new.means, sk_means, rtol=1e-10)
    np.testing.assert_allclose(new.weights, nk / nk.sum(), rtol=1e-10)


@pytest.mark.parametrize("partitions,depth", [(1, 2), (12, 2), (70, 2), (70, 3)])
def test_tree_collect_merges_one_row_per_partition(spark, partitions, depth):
    def one_row(batches):
        from pyspark import TaskContext

        for _ in batches:
            pass
        pid = TaskContext.get().partitionId()
        yield packed_batch([np.array([1.0, float(pid)]), np.array([float(pid)])], ["a", "b"])

    rows = spark.range(0, 200, numPartitions=partitions).mapInArrow(one_row, "a binary, b binary")
    a, b = tree_collect(rows, partitions, (np.add, np.maximum), depth)
    np.testing.assert_array_equal(a, [partitions, partitions * (partitions - 1) / 2])
    np.testing.assert_array_equal(b, [partitions - 1])


@pytest.mark.parametrize("partitions,depth", [(1, 2), (12, 2), (70, 2), (70, 3)])
def test_tree_collect_merges_an_rdd_of_byte_rows(spark, partitions, depth):
    """The index-only passes of classic Spark (local files, Parquet) return an RDD of byte
    tuples: merged on the driver up to DRIVER_MERGE_ROWS partitions, by treeAggregate above."""

    def one_row(it):
        from pyspark import TaskContext

        pid = TaskContext.get().partitionId()
        yield (np.array([1.0, float(pid)]).tobytes(), np.array([float(pid)]).tobytes())

    rows = spark.sparkContext.parallelize(range(partitions), partitions).mapPartitions(one_row)
    a, b = tree_collect(rows, partitions, (np.add, np.maximum), depth)
    np.testing.assert_array_equal(a, [partitions, partitions * (partitions - 1) / 2])
    np.testing.assert_array_equal(b, [partitions - 1])


def test_spark_cache_blocks_merge_back_into_the_same_chunks():
    """Block rows of at most ``max_rows`` rows are read back as chunks of at least
    ``chunk_rows`` rows whatever Arrow batches Spark cuts them into; invalid rows are
    dropped and counted once."""
    from spark_em.data.arrow_blocks import BAD_KINDS
    from spark_em.data.stores.cache_blocks import encode_blocks, read_blocks

    rng = np.random.default_rng(5)
    X = rng.normal(size=(23, 3))
    w = rng.uniform(0.5, 2.0, size=23)
    X[5, 1] = np.nan
    inputs = [
        pa.RecordBatch.from_arrays(
            [pa.array(list(X[a:b]), pa.list_(pa.float64())), pa.array(w[a:b])], ["x", "w"]
        )
        for a, b in ((0, 13), (13, 23))
    ]
    table = pa.Table.from_batches(list(encode_blocks(3, max_rows=4)(iter(inputs))))
    keep = np.ones(23, bool)
    keep[5] = False
    assert table.column("n").to_pylist() == [4, 4, 4, 4, 4, 2]
    batch = table.combine_chunks().to_batches()[0]
    cuts = [
        [batch],
        [batch.slice(i, 1) for i in range(batch.num_rows)],
        [batch.slice(0, 2), batch.slice(2)],
    ]
    for batches in cuts:
        chunks = list(read_blocks(3, chunk_rows=6)(batches))
        assert [c[0].shape[0] for c in chunks] == [8, 8, 6]
        np.testing.assert_array_equal(np.concatenate([c[0] for c in chunks]), X[keep])
        np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), w[keep])
        bad = sum(c[2] for c in chunks)
        assert bad[BAD_KINDS.index("non_finite")] == 1 and bad.sum() == 1
    first = list(read_blocks(3, chunk_rows=6)([batch]))[0][0]
    assert not first.flags.owndata  # inside one Arrow batch: a view, no copy


class _Stop(KeyboardInterrupt):
    pass


def _stop_at_second_iteration(event):
    from spark_em.progress import IterationInfo

    if isinstance(event, IterationInfo) and event.iteration == 2:
        raise _Stop()


@pytest.mark.parametrize("store_name", STORES)
def test_every_way_out_of_a_fit_releases_the_store(spark, weighted, store_name):
    """Success, an error, and a KeyboardInterrupt between iterations: no block files, no
    parameter files, no persisted RDDs (Spark's cache or checkpoints) are left."""
    X, w, path = weighted
    df = _frame(spark, path, store_name)
    before_dirs = _block_dirs(spark)
    before_rdds = set(spark.sparkContext._jsc.getPersistentRDDs().keySet())

    def leftovers():
        rdds = set(spark.sparkContext._jsc.getPersistentRDDs().keySet()) - before_rdds
        return _block_dirs(spark) - before_dirs, rdds

    seen = []

    def watch(event):
        seen.append(
            (
                _block_dirs(spark) - before_dirs,
                len(set(spark.sparkContext._jsc.getPersistentRDDs().keySet()) - before_rdds),
            )
        )
        _stop_at_second_iteration(event)

    gm = GaussianMixture(k=3, maxIter=5, tol=0.0, seed=1, blockCache=store_name, weightCol="w")
    gm.fit(df)
    assert leftovers() == (set(), set())
    gm.progress = watch
    with pytest.raises(_Stop):
        gm.fit(df)
    # while the fit ran, the store held its blocks where expected
    if store_name == "local":
        assert seen[0][0], "local block files should exist during the fit"
    if store_name == "spark":
        assert seen[0][1] >= 1, "Spark's checkpoint should exist during the fit"
    assert leftovers() == (set(), set())

    def fail_after_init(event):
        from spark_em.progress import InitialisationDone

        if isinstance(event, InitialisationDone):
            raise RuntimeError("boom")

    gm.progress = fail_after_init
    with pytest.raises(RuntimeError, match="boom"):
        gm.fit(df)
    assert leftovers() == (set(), set())


def test_explicit_block_caches_that_cannot_work_say_why(spark, weighted):
    X, w, path = weighted
    not_plain = spark.read.parquet(path).where("w > 0")
    with pytest.raises(
        ValueError, match=r"blockCache='parquet' needs .*plain Parquet scan.*Filter"
    ):
        GaussianMixture(k=2, blockCache="parquet").fit(not_plain)
    with pytest.raises(ValueError, match="blockCache must be one of"):
        GaussianMixture(k=2, blockCache="disk").fit(not_plain)


def test_parquet_store_decodes_vectors_arrays_and_columns(spark, tmp_path, monkeypatch):
    """Spark ML vectors (dense and sparse), array<float> and numeric columns written by
    Spark, read by the tasks with pyarrow (the Parquet store's passes, the local store's
    first pass): the same fit as Spark's cache on the same rows."""
    from pyspark.ml.linalg import DenseVector, SparseVector, VectorUDT
    from pyspark.sql import types as T

    import spark_em.data.stores.local_files as local_files

    direct = []
    real = local_files.read_row_groups
    monkeypatch.setattr(
        local_files, "read_row_groups", lambda *a, **k: direct.append(1) or real(*a, **k)
    )

    rng = np.random.default_rng(8)
    X = np.concatenate([rng.normal(c, 1.0, size=(120, 3)) for c in (-5.0, 0.0, 5.0)])
    X[::7, 1] = 0.0  # zeros that sparse vectors leave out
    vecs = [
        SparseVector(3, {j: float(v) for j, v in enumerate(x) if v != 0.0})
        if i % 2
        else DenseVector(x)
        for i, x in enumerate(X)
    ]
    schema = T.StructType(
        [
            T.StructField("vec", VectorUDT()),
            T.StructField("arr", T.ArrayType(T.FloatType())),
            T.StructField("a", T.DoubleType()),
            T.StructField("b", T.FloatType()),
            T.StructField("c", T.IntegerType()),
        ]
    )
    Xi = np.round(X * 100)  # exactly representable in float and int columns
    rows = [
        (v, [float(f) for f in xi.astype(np.float32)], float(xi[0]), float(xi[1]), int(xi[2]))
        for v, xi in zip(vecs, Xi)
    ]
    path = str(tmp_path / "layouts.parquet")
    spark.createDataFrame(rows, schema).coalesce(2).write.parquet(path)
    for features, truth in (("vec", X), ("arr", Xi), (["a", "b", "c"], Xi)):
        fits = {}
        for store_name in ("parquet", "local", "spark"):  # local: its first pass reads the files
            fits[store_name] = GaussianMixture(
                k=3, maxIter=5, tol=0.0, seed=2, featuresCol=features, blockCache=store_name
            ).fit(spark.read.parquet(path))
        assert len(direct) == 1  # the local store's first pass read the files
        direct.clear()
        b = fits["spark"]
        for a in (fits["parquet"], fits["local"]):
            np.testing.assert_allclose(a.means, b.means, rtol=1e-9, atol=1e-9)
            assert a.summary.logLikelihood == pytest.approx(b.summary.logLikelihood, rel=1e-12)
            assert a.summary.numRows == len(truth)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_local_store_reads_a_plain_parquet_scan_itself(spark, tmp_path, monkeypatch, dtype):
    """On a local master the local-file store's first pass reads a plain Parquet scan's row
    groups with pyarrow (no transfer from Spark): the same invalid-row counts, rows and fit
    as the same rows read through Spark (a DataFrame that is not a plain scan), and the
    files were read directly only for the plain scan."""
    import spark_em.data.stores.local_files as local_files

    rng = np.random.default_rng(12)
    X = np.concatenate([rng.normal(c, 1.0, size=(150, 3)) for c in (-5.0, 0.0, 5.0)]) + 1e3
    w = rng.uniform(0.2, 2.0, size=X.shape[0])
    X[7, 1] = np.nan  # an invalid row
    X[9, 2] = 1e300  # a huge value
    w[11] = -1.0  # a negative weight
    path = _write_parquet(tmp_path / "lake.parquet", X, w, row_group_size=64)
    direct = []
    real = local_files.read_row_groups
    monkeypatch.setattr(
        local_files, "read_row_groups", lambda *a, **k: direct.append(1) or real(*a, **k)
    )
    fits = {}
    for name, df in (
        ("plain", spark.read.parquet(path)),
        ("through Spark", spark.read.parquet(path).repartition(3)),
    ):
        before = len(direct)
        fits[name] = GaussianMixture(
            k=3,
            maxIter=4,
            tol=0.0,
            seed=5,
            weightCol="w",
            blockCache="local",
            handleInvalid="skip",
            dtype=dtype,
        ).fit(df)
        assert (len(direct) > before) == (name == "plain")
    a, b = fits["plain"], fits["through Spark"]
    assert a.summary.numRows == b.summary.numRows == X.shape[0] - 3
    assert a.summary.numRowsSkipped == b.summary.numRowsSkipped
    assert sum(a.summary.numRowsSkipped.values()) == 3
    # float32 blocks hold x - ref, ref the mean of the first rows each task writes: the
    # two paths round differently, within the float32 accuracy contract (test_float32)
    rel = 1e-9 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(a.means, b.means, rtol=rel)
    assert a.summary.logLikelihood == pytest.approx(b.summary.logLikelihood, rel=rel)


def test_parquet_store_counts_invalid_rows_by_column(spark, tmp_path):
    from spark_em import InvalidInputError

    X = np.random.default_rng(1).normal(size=(50, 2))
    X[3, 0] = np.inf
    path = _write_parquet(tmp_path / "bad.parquet", X, row_group_size=10)
    with pytest.raises(
        InvalidInputError, match=r"featuresCol 'features': 1 rows have NaN or infinite"
    ):
        GaussianMixture(k=2, blockCache="parquet").fit(spark.read.parquet(path))


def test_auto_reads_parquet_files_on_a_cluster_style_env(spark, weighted):
    """``auto`` chooses the files for a plain scan and Spark's cache otherwise, when the
    session is not local (the choice is the environment value's, not a master URL's)."""
    from dataclasses import replace

    from spark_em.data.columns import feature_array, weight_column
    from spark_em.data.env import SparkEnv
    from spark_em.data.stores import (
        ParquetStore,
        SparkCacheStore,
        StoreInput,
        choose_store,
        parquet_layout,
    )

    X, w, path = weighted
    env = replace(SparkEnv.of(spark), local_master=False)
    for df, expected in (
        (spark.read.parquet(path), ParquetStore),
        (spark.read.parquet(path).select("features", "w"), ParquetStore),
        (spark.read.parquet(path).repartition(2), SparkCacheStore),
    ):
        selected = df.select(
            feature_array(df, "features").alias("x"), weight_column(df, "w").alias("w")
        )
        layout = parquet_layout(env, "auto", df, "features", "w")
        store = choose_store("auto", StoreInput(spark, env, 3, selected, 2, layout))
        with store:
            assert isinstance(store, expected)


def test_validation_sample_does_not_depend_on_the_partitioning(spark, weighted):
    X, w, path = weighted
    samples = []
    for parts in (1, 7):
        df = spark.createDataFrame(
            pd.DataFrame({"features": list(X), "w": w}), "features array<double>, w double"
        ).repartition(parts)
        store, data = prepare(df, "features", "w", sample_size=40, seed=9, block_cache="spark")
        with store:
            samples.append((data.sample, data.centre))
    np.testing.assert_array_equal(samples[0][0], samples[1][0])
    np.testing.assert_allclose(samples[0][1], samples[1][1], rtol=1e-14)


def test_stale_block_dirs_of_dead_processes_are_removed(spark, tmp_path):
    import json
    import subprocess
    import sys

    from spark_em.data.stores.block_dirs import remove_stale_block_dirs

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    app = tmp_path / "spark-0000"
    stale = app / "spark-em-blocks-dead"
    live = app / "spark-em-blocks-live"
    for d, pid in ((stale, int(dead.stdout)), (live, os.getpid())):
        d.mkdir(parents=True)
        (d / "part-000000.bin").write_bytes(b"\0" * 64)
        (d / "owner.json").write_text(json.dumps({"pid": pid, "start": None}))
    assert remove_stale_block_dirs(str(tmp_path)) == [str(stale)]
    assert not stale.exists() and live.exists()


def test_each_pass_is_named_in_the_spark_ui(spark, weighted):
    """Classic Spark: every job of a fit carries a description naming the fit and the pass
    (the Spark UI's job list); the thread's own description is restored afterwards."""
    X, w, path = weighted
    sc = spark.sparkContext
    sc.setJobDescription("the user's own description")
    try:
        before = _job_descriptions(sc)
        gm = GaussianMixture(k=2, maxIter=2, seed=1, initMode="kmeans")  # a pass to initialise
        gm.fit(spark.read.parquet(path).repartition(2))
        assert sc.getLocalProperty("spark.job.description") == "the user's own description"
    finally:
        sc.setLocalProperty("spark.job.description", None)
    new = [d.split("|", 1)[1] for d in _job_descriptions(sc) if d not in before]
    names = {d.split(": ", 1)[1] for d in new if d.startswith("spark-em ")}
    assert {
        "validate and prepare the data",
        "initialise",
        "EM iteration 1",
        "EM iteration 2",
    } <= names
    assert len({d.split(":")[0] for d in new if d.startswith("spark-em ")}) == 1


def _job_descriptions(sc) -> list:
    it = sc._jsc.sc().statusStore().jobsList(None).iterator()
    out = []
    while it.hasNext():
        job = it.next()
        desc = job.description()
        out.append(f"{job.jobId()}|" + (desc.get() if desc.isDefined() else ""))
    return out


def test_parquet_store_finds_d_in_the_files_or_says_there_is_nothing(spark, tmp_path):
    """The listing job reads d from the first non-null row (no separate Spark job); files
    whose features are all null are an empty input."""
    from spark_em import InvalidInputError

    empty = str(tmp_path / "nulls.parquet")
    pq.write_table(pa.table({"features": pa.array([None, None], pa.list_(pa.float64()))}), empty)
    with pytest.raises(InvalidInputError, match="empty"):
        GaussianMixture(k=1, blockCache="parquet").fit(spark.read.parquet(empty))
    rows = [None] * 5 + [[1.0, 2.0, 3.0], [2.0, 1.0, 0.0], [0.5, 0.5, 0.5]]
    mixed = str(tmp_path / "mixed.parquet")
    pq.write_table(pa.table({"features": pa.array(rows, pa.list_(pa.float64()))}), mixed)
    with pytest.raises(InvalidInputError, match="5 rows have null features"):
        GaussianMixture(k=1, blockCache="parquet").fit(spark.read.parquet(mixed))


def test_local_store_reads_big_integers_and_decimal_weights_as_spark_does(spark, tmp_path):
    """int64 features beyond 2**53 (rounded to the nearest double, as Spark casts them)
    and a decimal weight column with a null (an invalid row): the local store's first pass
    over the plain scan keeps the same rows and fits the same model as through Spark."""
    import decimal

    rng = np.random.default_rng(21)
    X = np.concatenate([rng.normal(c, 1.0, size=(80, 2)) for c in (-6.0, 6.0)])
    big = (np.round(X * 1000).astype(np.int64) + 2**60).tolist()
    weights = [decimal.Decimal(f"{v:.2f}") for v in rng.uniform(0.5, 2.0, size=len(big))]
    weights[5] = None
    table = pa.table(
        {
            "a": pa.array([r[0] for r in big], pa.int64()),
            "b": pa.array([r[1] for r in big], pa.int64()),
            "w": pa.array(weights, pa.decimal128(6, 2)),
        }
    )
    path = str(tmp_path / "ints.parquet")
    pq.write_table(table, path, row_group_size=50)
    fits = {}
    for name, df in (
        ("plain", spark.read.parquet(path)),
        ("through Spark", spark.read.parquet(path).repartition(2)),
    ):
        fits[name] = GaussianMixture(
            k=2,
            maxIter=3,
            tol=0.0,
            seed=1,
            featuresCol=["a", "b"],
            weightCol="w",
            blockCache="local",
            handleInvalid="skip",
        ).fit(df)
    a, b = fits["plain"], fits["through Spark"]
    assert a.summary.numRows == b.summary.numRows == len(big) - 1
    assert a.summary.numRowsSkipped == b.summary.numRowsSkipped
    np.testing.assert_allclose(a.means, b.means, rtol=1e-12)
