"""Concurrent fits in one shared session: two and four fits in threads, on every block store,
some of them of the same DataFrame.  Each gives bitwise the model it gives alone; the input
is read once per fit (no fit uses, or drops, another fit's cached blocks); afterwards the
user's session settings, thread properties, cached DataFrame and persisted RDDs are as
before."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark import StorageLevel

from spark_em import GaussianMixture
from spark_em.progress import ValidationDone

STORES = ("local", "spark", "parquet")
BATCH_SIZE = "spark.sql.inMemoryColumnarStorage.batchSize"
# four fits: two of the same DataFrame with different seeds, then two of another one
CONFIGS = [
    ("a", dict(k=3, seed=1)),
    ("a", dict(k=3, seed=2, covarianceType="diag")),
    ("b", dict(k=2, seed=3)),
    ("a", dict(k=2, seed=4, covarianceType="tied")),
]


@pytest.fixture(scope="module")
def parquet_inputs(tmp_path_factory):
    rng = np.random.default_rng(12)
    paths = {}
    for name, shift in (("a", 0.0), ("b", 30.0)):
        X = np.concatenate([rng.normal(c, 1.0, size=(120, 3)) for c in (-5.0, 0.0, 5.0)]) + shift
        feats = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 3)
        path = str(tmp_path_factory.mktemp(f"concurrent-{name}") / "x.parquet")
        pq.write_table(
            pa.table({"features": feats.cast(pa.list_(pa.float64()))}), path, row_group_size=90
        )
        paths[name] = path
    return paths


def _counting(acc):
    """A mapInArrow function that passes batches through and counts the rows read."""

    def count(batches):
        for batch in batches:
            acc.add(batch.num_rows)
            yield batch

    return count


def _frames(spark, paths, store, acc):
    """One DataFrame per input.  Local and Spark-cache stores: a plan that counts every row
    read from the input (a fit reads it once, in its first pass); the Parquet store needs
    the plain scan (its tasks read the files themselves on every pass)."""
    out = {}
    for name, path in paths.items():
        df = spark.read.parquet(path)
        if store != "parquet":
            df = df.mapInArrow(_counting(acc), df.schema).repartition(3)
        out[name] = df
    return out


def _fit(frames, name, params, store, barrier=None):
    gm = GaussianMixture(maxIter=2, tol=0.0, blockCache=store, **params)
    if barrier is not None:
        # every fit has its blocks in place before any goes on (and before any ends)
        gm.progress = lambda e: barrier.wait(timeout=300) if isinstance(e, ValidationDone) else None
    model = gm.fit(frames[name])
    return model.weights, model.means, model.covariances, model.summary.logLikelihoodHistory


def _session_state(spark, user_df):
    sc = spark.sparkContext
    return {
        "sql_conf": dict(spark.conf.getAll),
        "spark_conf": sorted(sc.getConf().getAll()),
        "job_description": sc.getLocalProperty("spark.job.description"),
        "user_df": (user_df.is_cached, str(user_df.storageLevel)),
        "rdds": sorted(sc._jsc.getPersistentRDDs().keySet()),
    }


@pytest.mark.parametrize("store", STORES)
def test_concurrent_fits_are_independent_and_leave_the_session_alone(spark, parquet_inputs, store):
    sc = spark.sparkContext
    acc = sc.accumulator(0)
    frames = _frames(spark, parquet_inputs, store, acc)
    # the user's own state: a session setting, a thread property, a cached DataFrame
    old_batch = spark.conf.get(BATCH_SIZE, None)
    spark.conf.set(BATCH_SIZE, "7777")
    sc.setLocalProperty("spark.job.description", "the user's job")
    user_df = (
        spark.read.parquet(parquet_inputs["b"])
        .where("features[0] > 30")
        .persist(StorageLevel.MEMORY_ONLY)
    )
    user_rows = sorted(tuple(r["features"]) for r in user_df.collect())
    try:
        before = _session_state(spark, user_df)
        alone, reads = [], []
        for name, params in CONFIGS:
            start = acc.value
            alone.append(_fit(frames, name, params, store))
            reads.append(acc.value - start)
        if store != "parquet":
            assert all(r >= 360 for r in reads)  # the input was read
        for n in (2, 4):
            barrier = threading.Barrier(n)
            start = acc.value
            with ThreadPoolExecutor(n) as pool:
                futures = [
                    pool.submit(_fit, frames, name, params, store, barrier)
                    for name, params in CONFIGS[:n]
                ]
                results = [f.result(timeout=900) for f in futures]
            for got, expected in zip(results, alone):
                for a, b in zip(got, expected):
                    np.testing.assert_array_equal(a, b)
            # each fit read the input once, as alone: no fit lost its blocks to another
            assert acc.value - start == sum(reads[:n])
            assert _session_state(spark, user_df) == before
        assert spark.conf.get(BATCH_SIZE) == "7777"
        assert user_df.is_cached and user_df.storageLevel == StorageLevel.MEMORY_ONLY
        assert sorted(tuple(r["features"]) for r in user_df.collect()) == user_rows
    finally:
        user_df.unpersist(blocking=True)
        sc.setLocalProperty("spark.job.description", None)
        if old_batch is None:
            spark.conf.unset(BATCH_SIZE)
        else:
            spark.conf.set(BATCH_SIZE, old_batch)
