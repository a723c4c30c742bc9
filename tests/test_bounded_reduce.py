"""Bounded reduce: however many partitions the input has, a pass (the first one, which
validates and places the blocks, and every EM pass) runs at most TASKS_PER_CORE tasks per
core, so the statistics rows it reduces -- and the shuffle and driver memory of the reduce --
do not grow with the input's partition count.  (scripts/bounded_reduce.py measures the time
and memory of 500 against 4 input partitions.)"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spark_em.core.estep import EStepKernel
from spark_em.core.mixture import GaussianParams
from spark_em.core.tuning import TASKS_PER_CORE
from spark_em.data.env import SparkEnv
from spark_em.data.passes import run_pass
from spark_em.data.prepare import prepare

PARTITIONS = 200


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(9)
    return np.concatenate([rng.normal(c, 1.0, size=(200, 3)) for c in (-3.0, 3.0)])


def _input(spark, X, store, tmp_path):
    if store == "parquet":  # one file per input partition
        for i, part in enumerate(np.array_split(X, PARTITIONS)):
            feats = pa.FixedSizeListArray.from_arrays(pa.array(part.ravel()), 3)
            pq.write_table(
                pa.table({"features": feats.cast(pa.list_(pa.float64()))}),
                str(tmp_path / f"part-{i:04d}.parquet"),
            )
        df = spark.read.parquet(str(tmp_path))
        assert len(df.inputFiles()) == PARTITIONS
        return df
    from spark_em.data.datasets import to_dataframe

    df = to_dataframe(spark, X, num_partitions=PARTITIONS)
    assert df.rdd.getNumPartitions() == PARTITIONS
    return df


@pytest.mark.parametrize("store_name", ["local", "spark", "parquet"])
def test_statistics_rows_do_not_grow_with_input_partitions(spark, rows, store_name, tmp_path):
    bound = TASKS_PER_CORE * SparkEnv.of(spark).default_parallelism
    store, data = prepare(
        _input(spark, rows, store_name, tmp_path), "features", block_cache=store_name
    )
    with store:
        assert store.name == store_name and data.n_rows == len(rows)
        assert 1 <= store.first_pass.tasks <= bound
        params = GaussianParams.from_covariances(
            [0.5, 0.5], [[-3.0] * 3, [3.0] * 3], np.stack([np.eye(3)] * 2), "full"
        )
        (stats,), profile = run_pass(store, [EStepKernel(params, data.centre)], data.centre)
    assert 1 <= profile.tasks <= bound
    assert stats.n_rows == len(rows)  # every row still counted once


def _heap_in_a_worker(_):
    """Inside a Spark task: freeze twice, then make and drop a reference cycle."""
    import gc
    import weakref

    from spark_em.data.passes import freeze_worker_heap

    freeze_worker_heap()
    frozen = gc.get_freeze_count()
    freeze_worker_heap()
    again = gc.get_freeze_count()

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    del a, b
    gc.collect()
    yield frozen, again, alive() is None


def test_a_worker_heap_is_frozen_once_and_later_cycles_are_still_collected(spark):
    """passes.freeze_worker_heap: in a reused worker the objects alive at the first call go
    to the permanent generation, a second call freezes nothing more, and garbage made
    afterwards -- a reference cycle, which only the collector frees -- is still collected;
    on the driver (no Spark task) it does nothing."""
    sc = spark.sparkContext
    rows = sc.parallelize(range(2), 2).mapPartitions(_heap_in_a_worker).collect()
    assert len(rows) == 2
    for frozen, again, collected in rows:
        assert frozen > 1000 and again == frozen and collected, rows
    code = """
import gc
from spark_em.data.passes import freeze_worker_heap
freeze_worker_heap()
print(gc.get_freeze_count())
"""
    env = {**os.environ, "SPARK_REUSE_WORKER": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0 and out.stdout.strip() == "0", (out.stdout, out.stderr)
