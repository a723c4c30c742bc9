"""The distributed layer against the local math on the same data."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from pyspark import StorageLevel

from spark_em.distributed import prepare, run_pass, tree_collect
from spark_em.gaussian import GaussianParams
from spark_em.stats import EStepKernel


@pytest.fixture(scope="module")
def weighted(spark):
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(c, 1.0, size=(100, 3)) for c in (-4.0, 0.0, 4.0)]) + 1e4
    w = rng.uniform(0.1, 3.0, size=X.shape[0])
    df = spark.createDataFrame(
        pd.DataFrame({"features": list(X), "w": w}), "features array<double>, w double"
    ).repartition(5)
    return X, w, df


def test_prepare_caches_and_measures_the_data(spark, weighted):
    X, w, df = weighted
    data = prepare(df, "features", "w", sample_size=50, seed=1)
    block_dir = getattr(data, "block_dir", None)  # local block files instead of Spark's cache
    try:
        if block_dir is None:
            assert data.blocks.storageLevel == StorageLevel.MEMORY_AND_DISK_DESER
            assert data.blocks.is_cached
        else:
            assert os.path.isdir(block_dir)
        assert (data.d, data.n_rows) == (3, 300)
        assert data.weight_sum == pytest.approx(w.sum(), rel=1e-12)
        np.testing.assert_allclose(data.centre, w @ X / w.sum(), rtol=1e-13)
        # the reservoir sample holds real rows of the data
        assert data.sample.shape == (50, 3)
        rows = {tuple(x) for x in X}
        assert all(tuple(s) in rows for s in data.sample)
    finally:
        data.unpersist()
    assert not data.blocks.is_cached
    assert block_dir is None or not os.path.exists(block_dir)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_run_pass_equals_local_statistics(spark, weighted, covariance_type):
    X, w, df = weighted
    means = np.array([[-4.0] * 3, [0.5] * 3, [4.0] * 3]) + 1e4
    cov = {"full": np.stack([np.eye(3)] * 3), "tied": np.eye(3) * 2,
           "diag": np.ones((3, 3)), "spherical": np.array([1.0, 2.0, 0.5])}[covariance_type]
    params = GaussianParams.from_covariances([0.2, 0.5, 0.3], means, cov, covariance_type)
    data = prepare(df, "features", "w")
    try:
        kernel = EStepKernel(params, data.centre)
        # two models in one pass: the same kernel twice must give the same statistics twice
        dist, again = run_pass(data, [kernel, kernel])
    finally:
        data.unpersist()
    local = kernel.new_stats(3)
    kernel.accumulate(local, X - data.centre, w, (0, 0))
    for name in ("nk", "sk", "second", "hard_counts"):
        np.testing.assert_allclose(getattr(dist, name), getattr(local, name), rtol=1e-10, atol=1e-8)
        np.testing.assert_array_equal(getattr(dist, name), getattr(again, name))
    assert dist.log_likelihood == pytest.approx(local.log_likelihood, rel=1e-12)
    assert (dist.weight_sum, dist.n_rows) == (pytest.approx(w.sum(), rel=1e-12), 300)
    # and the M-step from the distributed statistics equals sklearn's on the same data
    from sklearn.mixture import _gaussian_mixture as skg

    sk_params = params.log_resp(X)[1]
    resp = np.exp(sk_params) * w[:, None]  # weights as fractional responsibilities
    nk, sk_means, _ = skg._estimate_gaussian_parameters(X, resp, 1e-6, covariance_type)
    new = dist.m_step(data.centre, 1e-6)
    np.testing.assert_allclose(new.means, sk_means, rtol=1e-10)
    np.testing.assert_allclose(new.weights, nk / nk.sum(), rtol=1e-10)


@pytest.mark.parametrize("partitions,depth", [(1, 2), (12, 2), (30, 3)])
def test_tree_collect_sums_one_row_per_partition(spark, partitions, depth):
    from spark_em.distributed import PAYLOAD_SCHEMA, _payload_batch

    def one_row(batches):
        from pyspark import TaskContext

        for _ in batches:
            pass
        pid = TaskContext.get().partitionId()
        yield _payload_batch(np.array([1.0, float(pid)]))

    rows = spark.range(0, 200, numPartitions=partitions).mapInArrow(one_row, PAYLOAD_SCHEMA)
    total = tree_collect(rows, partitions, np.add, depth)
    np.testing.assert_array_equal(total, [partitions, partitions * (partitions - 1) / 2])


def test_small_block_rows_merge_back_into_the_same_chunks():
    """The Spark-cache layout: block rows of at most ``max_rows`` rows, merged back into
    chunks of at least ``chunk_rows`` rows whatever Arrow batches Spark cuts them into."""
    import pyarrow as pa

    from spark_em.arrow_blocks import BAD_KINDS
    from spark_em.distributed import _make_blocks_fn, iter_blocks

    rng = np.random.default_rng(5)
    X = rng.normal(size=(23, 3))
    w = rng.uniform(0.5, 2.0, size=23)
    X[5, 1] = np.nan  # an invalid row: dropped and counted once
    inputs = [
        pa.RecordBatch.from_arrays([pa.array(list(X[a:b]), pa.list_(pa.float64())),
                                    pa.array(w[a:b])], ["x", "w"])
        for a, b in ((0, 13), (13, 23))
    ]
    table = pa.Table.from_batches(list(_make_blocks_fn(3, max_rows=4)(iter(inputs))))
    keep = np.ones(23, bool)
    keep[5] = False
    # 12 valid rows in the first input batch, 10 in the second
    assert table.column("n").to_pylist() == [4, 4, 4, 0, 4, 4, 2] or table.column(
        "n"
    ).to_pylist() == [4, 4, 4, 4, 4, 2]
    assert sum(table.column(f"bad_{kind}").to_numpy().sum() for kind in BAD_KINDS) == 1
    batch = table.combine_chunks().to_batches()[0]
    cuts = [[batch], [batch.slice(i, 1) for i in range(batch.num_rows)],
            [batch.slice(0, 2), batch.slice(2)]]
    results = [list(iter_blocks(batches, 3, chunk_rows=6)) for batches in cuts]
    for chunks in results:
        assert [key for _, _, key in chunks] == [0, 1, 2]
        assert [Xc.shape[0] for Xc, _, _ in chunks] == [8, 8, 6]
        np.testing.assert_array_equal(np.concatenate([c[0] for c in chunks]), X[keep])
        np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), w[keep])
    assert not results[0][0][0].flags.owndata  # inside one Arrow batch: a view, no copy


def test_spark_cache_holds_one_block_row_per_cached_batch(spark, weighted, monkeypatch):
    """blockCache="spark" writes its cache one small block row per cached batch (not one
    batch of 10000 rows, i.e. a whole partition, which ran a 1 GiB heap out of memory on
    large data), passes read it back exactly, and the session's setting is left as it was."""
    from spark_em import distributed

    X, w, df = weighted
    monkeypatch.setattr(distributed, "_STORED_BLOCK_BYTES", 8 * 3 * 4)  # 4 rows per block
    key = "spark.sql.inMemoryColumnarStorage.batchSize"
    params = GaussianParams.from_covariances(
        [0.5, 0.5], np.array([[-4.0] * 3, [4.0] * 3]) + 1e4, np.stack([np.eye(3)] * 2), "full"
    )
    try:
        for user in (None, "777"):
            if user is not None:
                spark.conf.set(key, user)
            data = prepare(df, "features", "w", block_cache="spark")
            try:
                assert spark.conf.get(key, None) == user
                cached = spark._jsparkSession.sharedState().cacheManager().lookupCachedData(
                    data.blocks._jdf
                )
                batches = cached.get().cachedRepresentation().cacheBuilder().cachedColumnBuffers()
                block_rows = data.blocks.count()
                assert block_rows >= 300 // 4
                assert batches.count() == block_rows
                kernel = EStepKernel(params, data.centre)
                (stats,) = run_pass(data, [kernel])
                local = kernel.new_stats(3)
                kernel.accumulate(local, X - data.centre, w, (0, 0))
                np.testing.assert_allclose(stats.sk, local.sk, rtol=1e-10, atol=1e-8)
                assert stats.n_rows == 300
            finally:
                data.unpersist()
    finally:
        spark.conf.unset(key)
