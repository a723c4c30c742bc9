"""Tree reduction of packed rows: what each task of a pass sends back, merged into one value
on the driver without the driver's memory growing with the number of tasks.  The rows come
as a DataFrame (binary columns, from ``mapInArrow``) or, for the passes whose tasks need
only their index on classic Spark, as an RDD of tuples of bytes."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
from pyspark import RDD
from pyspark.sql import DataFrame

# Up to this many rows the driver merges them itself; above it, shuffle levels merge them
# first (like RDD.treeAggregate).  A statistics row at d=64, K=32 is 1 MB, so the driver
# holds at most a few tens of MB.
DRIVER_MERGE_ROWS = 32


def packed_bytes(values: np.ndarray) -> bytes:
    """A float64 vector as raw bytes: one cell of a packed row."""
    return np.ascontiguousarray(values, dtype=np.float64).tobytes()


def packed_batch(columns: Sequence[np.ndarray], names: Sequence[str]) -> pa.RecordBatch:
    """One Arrow row: each float64 vector as the raw bytes of a binary column."""
    return pa.RecordBatch.from_arrays(
        [pa.array([packed_bytes(c)], pa.binary()) for c in columns], list(names)
    )


def _merge_rows(merges):
    """Merge two rows of arrays column by column (``merges[j]`` for column ``j``); None
    stands for no row yet (the zero of ``treeAggregate``)."""

    def merge(a, b):
        if a is None or b is None:
            return b if a is None else a
        return [m(x, y) for m, x, y in zip(merges, a, b)]

    return merge


def _fold(batches, merges) -> list[np.ndarray] | None:
    acc, merge = None, _merge_rows(merges)
    for batch in batches:
        cols = [batch.column(j) for j in range(len(merges))]
        for i in range(batch.num_rows):
            values = [np.frombuffer(c[i].as_buffer(), dtype=np.float64) for c in cols]
            acc = [v.copy() for v in values] if acc is None else merge(acc, values)
    return acc


def _reducer(merges, names):
    def reduce_partition(batches):
        acc = _fold(batches, merges)
        if acc is not None:
            yield packed_batch(acc, names)

    return reduce_partition


def _arrays(row) -> list[np.ndarray]:
    return [np.frombuffer(c, dtype=np.float64) for c in row]


def _tree_collect_rdd(rdd: RDD, num_partitions: int, merges, depth: int):
    merge = _merge_rows(merges)
    if num_partitions > DRIVER_MERGE_ROWS:
        return rdd.map(_arrays).treeAggregate(None, merge, merge, depth)
    # ``rdd`` itself, collected: the local-file store builds its passes' RDD once per fit,
    # and a new RDD over it (a map) would be pickled and built in the JVM again at every
    # pass (10 ms a pass)
    acc = None
    for row in rdd.collect():
        values = _arrays(row)
        acc = [v.copy() for v in values] if acc is None else merge(acc, values)
    return acc


def tree_collect(
    df: DataFrame | RDD,
    num_partitions: int,
    merges: Sequence[Callable],
    depth: int = 2,
    schema=None,
) -> list[np.ndarray] | None:
    """Merge the rows of ``df`` (binary columns of float64 bytes, column ``j`` merged by
    ``merges[j]``) into one list of arrays on the driver; None when ``df`` has no rows.
    ``df`` may also be an RDD of tuples of such bytes (merged by ``RDD.treeAggregate`` above
    DRIVER_MERGE_ROWS for ``num_partitions``).

    ``num_partitions`` (an upper bound is fine) and ``depth`` choose the shuffle levels, as
    ``RDD.treeAggregate`` does: the driver receives about ``num_partitions ** (1/depth)``
    rows, and none at all are added for up to :data:`DRIVER_MERGE_ROWS` partitions.
    ``schema``: the rows' schema, when the caller knows it (saves asking a Connect server).
    """
    if isinstance(df, RDD):
        return _tree_collect_rdd(df, num_partitions, merges, max(int(depth), 1))
    schema = df.schema if schema is None else schema
    names = schema.fieldNames()
    depth = max(int(depth), 1)
    scale = max(int(math.ceil(num_partitions ** (1.0 / depth))), 2)
    parts = num_partitions
    while parts > DRIVER_MERGE_ROWS and parts > scale + int(math.ceil(parts / scale)):
        parts = int(math.ceil(parts / scale))
        df = df.repartition(parts).mapInArrow(_reducer(merges, names), schema)
    # As Arrow (no pickled rows): the validation pass's rows carry whole samples.
    return _fold(df.toArrow().to_batches(), merges)
