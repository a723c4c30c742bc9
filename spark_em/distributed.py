"""The only module that knows how Spark executes a pass over the data.

* :func:`prepare` validates the input and caches the features as numpy blocks (rows of
  ``X`` as raw float64 bytes of an ``(n, d)`` array, weights likewise: in local block files,
  or in Spark's cache at most 256 KiB per row), then runs one validation pass that
  materialises the cache and returns counts, the weighted mean (the fit's centre ``c0``)
  and a weighted reservoir sample for initialisation.
* :func:`run_pass` ships a list of per-model tasks to the executors — a broadcast variable on
  classic Spark, the function's closure on Spark Connect (no SparkContext there) — computes
  one packed statistics row per Spark task with ``mapInArrow``, tree-reduces those rows, and
  returns the summed :class:`~spark_em.stats.SuffStats` of every task.  Several models (for
  instance ``nInit`` restarts) share every scan of the data.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from .arrow_blocks import BAD_KINDS, list_to_matrix, weights_to_numpy
from .columns import describe_features as _describe
from .columns import feature_array, feature_dimension, weight_column
from .errors import InvalidInputError
from .stats import SuffStats

BLOCK_SCHEMA = T.StructType(
    [
        T.StructField("X", T.BinaryType(), False),
        T.StructField("w", T.BinaryType(), False),
        T.StructField("n", T.LongType(), False),
    ]
    + [T.StructField(f"bad_{kind}", T.LongType(), False) for kind in BAD_KINDS]
)
PAYLOAD_SCHEMA = T.StructType([T.StructField("payload", T.BinaryType(), False)])


def is_connect(spark: SparkSession) -> bool:
    """True for a Spark Connect session (no SparkContext, no broadcast variables)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


# ---------------------------------------------------------------------------------------
# Tree reduction of packed rows
# ---------------------------------------------------------------------------------------
def _payload_batch(arr: np.ndarray) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array([np.ascontiguousarray(arr, dtype=np.float64).tobytes()], pa.binary())],
        ["payload"],
    )


def _fold(batches, merge) -> np.ndarray | None:
    acc = None
    for batch in batches:
        col = batch.column(0)
        for i in range(len(col)):
            arr = np.frombuffer(col[i].as_buffer(), dtype=np.float64)
            acc = arr.copy() if acc is None else merge(acc, arr)
    return acc


def _reducer(merge):
    def reduce_partition(batches):
        acc = _fold(batches, merge)
        if acc is not None:
            yield _payload_batch(acc)

    return reduce_partition


def tree_collect(
    df: DataFrame, num_partitions: int, merge: Callable, depth: int = 2
) -> np.ndarray | None:
    """Merge one packed float64 row per partition of ``df`` into one array on the driver.

    Like ``RDD.treeAggregate``: while many rows remain, a shuffle into fewer partitions plus a
    merging ``mapInArrow`` adds a level, so the driver receives about
    ``num_partitions ** (1/depth)`` rows whatever the partition count.
    """
    depth = max(int(depth), 1)
    scale = max(int(math.ceil(num_partitions ** (1.0 / depth))), 2)
    parts = num_partitions
    while parts > scale + int(math.ceil(parts / scale)):
        parts = int(math.ceil(parts / scale))
        df = df.repartition(parts).mapInArrow(_reducer(merge), PAYLOAD_SCHEMA)
    # As Arrow (no pickled rows): the validation pass's rows carry whole samples.
    return _fold(df.toArrow().to_batches(), merge)


# ---------------------------------------------------------------------------------------
# Shipping parameters: broadcast (classic) or closure (Connect)
# ---------------------------------------------------------------------------------------
class _Shipment:
    """Holds an object for the executors; ``get`` is called inside tasks."""

    def __init__(self, spark: SparkSession, obj):
        self._bc = None
        self._obj = None
        if is_connect(spark):
            self._obj = obj
        else:
            self._bc = spark.sparkContext.broadcast(obj)

    def getter(self) -> Callable[[], object]:
        if self._bc is not None:
            bc = self._bc
            return lambda: bc.value
        obj = self._obj
        return lambda: obj

    def release(self) -> None:
        if self._bc is not None:
            self._bc.destroy()
            self._bc = None


# ---------------------------------------------------------------------------------------
# Preparation and validation
# ---------------------------------------------------------------------------------------
def _make_blocks_fn(d: int, max_rows: int | None = None):
    """Turn each Arrow batch of ``(x array<double>, w double)`` rows into block rows.

    Without ``max_rows`` an Arrow batch becomes one block row; with it, block rows of at most
    ``max_rows`` rows (sharing the batch's buffers: no copy).  The batch's bad-row counts go
    to its first block row."""

    def to_blocks(batches):
        for batch in batches:
            X, valid, counts = list_to_matrix(batch.column(0), d)
            w, wvalid, wcounts = weights_to_numpy(batch.column(1))
            counts.update(wcounts)
            keep = valid & wvalid
            if not keep.all():
                X, w = X[keep], w[keep]
            X = np.ascontiguousarray(X, dtype=np.float64)
            w = np.ascontiguousarray(w, dtype=np.float64)
            n = X.shape[0]
            bounds = np.append(np.arange(0, n, max_rows or max(n, 1)), n) if n else np.zeros(2, int)
            m = len(bounds) - 1
            cols = [
                pa.Array.from_buffers(
                    pa.binary(), m, [None, pa.py_buffer((bounds * 8 * d).astype(np.int32)),
                                     pa.py_buffer(X)]
                ),
                pa.Array.from_buffers(
                    pa.binary(), m, [None, pa.py_buffer((bounds * 8).astype(np.int32)),
                                     pa.py_buffer(w)]
                ),
                pa.array(np.diff(bounds).astype(np.int64), pa.int64()),
            ]
            for kind in BAD_KINDS:
                bad = np.zeros(m, np.int64)
                bad[0] = counts[kind]
                cols.append(pa.array(bad, pa.int64()))
            yield pa.RecordBatch.from_arrays(cols, schema=_BLOCK_ARROW_SCHEMA)

    return to_blocks


_BLOCK_ARROW_SCHEMA = pa.schema(
    [("X", pa.binary(), False), ("w", pa.binary(), False), ("n", pa.int64(), False)]
    + [(f"bad_{kind}", pa.int64(), False) for kind in BAD_KINDS]
)


def _binary_parts(col: pa.Array):
    """(value offsets as int64 numpy, data buffer) of a binary Arrow array."""
    offsets = np.frombuffer(col.buffers()[1], dtype=np.int32)
    return offsets[col.offset : col.offset + len(col) + 1].astype(np.int64), col.buffers()[2]


def iter_blocks(batches, d: int, chunk_rows: int = 1):
    """Yield ``(X (n, d) float64, w (n,), chunk number)`` from cached block rows (inside a task).

    Consecutive block rows are merged into chunks of at least ``chunk_rows`` rows (the
    kernels' working size): a block's ``X`` bytes follow the previous block's in the Arrow
    column, so a chunk inside one Arrow batch is a view, not a copy.  The chunks depend only
    on the sequence of blocks, not on how Spark cut them into Arrow batches, so chunk
    numbers are the same in every pass."""
    xs_, ws_, rows, chunk = [], [], 0, 0
    for batch in batches:
        ns = batch.column(2).to_numpy()
        xoff, xdata = _binary_parts(batch.column(0))
        woff, wdata = _binary_parts(batch.column(1))
        i, nb = 0, len(ns)
        while i < nb:
            j = i
            while j < nb and rows < chunk_rows:
                rows += int(ns[j])
                j += 1
            if woff[j] > woff[i]:
                count = (xoff[j] - xoff[i]) // 8
                xs_.append(np.frombuffer(xdata, np.float64, count, xoff[i]).reshape(-1, d))
                ws_.append(np.frombuffer(wdata, np.float64, (woff[j] - woff[i]) // 8, woff[i]))
            i = j
            if rows >= chunk_rows and xs_:
                yield _joined(xs_), _joined(ws_), chunk
                xs_, ws_, rows, chunk = [], [], 0, chunk + 1
    if xs_:
        yield _joined(xs_), _joined(ws_), chunk


def _joined(parts: list) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _chunk_rows(d: int) -> int:
    """Rows per kernel chunk: about 8 MB of float64 features (as the local block files)."""
    return max(1, _UNIT_BYTES // (8 * d))


def _validation_layout(d: int) -> int:
    # n_rows, weight_sum, sum w x (d), bad counts, sample row count
    return 2 + d + len(BAD_KINDS) + 1


def _make_validation_fn(d: int, sample_size: int, seed: int, block_dir: str | None = None):
    from pyspark import TaskContext

    head = _validation_layout(d)
    chunk_rows = _chunk_rows(d)

    def validate(batches):
        ctx = TaskContext.get()
        pid = ctx.partitionId() if ctx is not None else 0
        rng = np.random.default_rng([seed, pid])
        out = np.zeros(head)
        keys, rows, weights = [], [], []
        kept, floor = 0, -np.inf
        writer = _LocalBlockWriter(block_dir, pid, ctx, d) if block_dir else None
        for batch in batches:
            bad = np.array(
                [np.asarray(batch.column(3 + j).to_numpy()).sum() for j in range(len(BAD_KINDS))]
            )
            out[2 + d : 2 + d + len(BAD_KINDS)] += bad
            for X, w, _ in iter_blocks([batch], d, chunk_rows):
                if writer is not None:
                    writer.write(X, w)
                out[0] += X.shape[0]
                out[1] += w.sum()
                out[2 : 2 + d] += w @ X
                # Weighted reservoir (A-Res): keep the rows with the largest log(u)/w.
                with np.errstate(divide="ignore"):
                    key = np.log(rng.random(X.shape[0])) / w
                if kept >= sample_size:
                    # only rows that beat the current reservoir's smallest key can enter
                    better = key > floor
                    key, X, w = key[better], X[better], w[better]
                if X.shape[0] > sample_size:
                    top = np.argpartition(-key, sample_size)[:sample_size]
                    key, X, w = key[top], X[top], w[top]
                keys.append(key)
                rows.append(X)
                weights.append(w)
                kept += key.shape[0]
                if kept > 2 * sample_size:  # shrink back to sample_size: memory stays flat
                    merged = _top_sample(keys, weights, rows, d, sample_size)
                    keys, weights, rows = [merged[:, 0]], [merged[:, 1]], [merged[:, 2:]]
                    kept = merged.shape[0]
                if kept >= sample_size:
                    floor = np.partition(np.concatenate(keys), -sample_size)[-sample_size]
        if writer is not None:
            writer.close()
        sample = _top_sample(keys, weights, rows, d, sample_size)
        out[-1] = sample.shape[0]
        yield _payload_batch(np.concatenate([out, sample.ravel()]))

    return validate


def _top_sample(keys, weights, rows, d, sample_size) -> np.ndarray:
    if not keys:
        return np.zeros((0, d + 2))
    key = np.concatenate(keys)
    sample = np.column_stack([key, np.concatenate(weights), np.concatenate(rows)])
    if sample.shape[0] > sample_size:
        sample = sample[np.argpartition(-key, sample_size)[:sample_size]]
    return sample


def _make_validation_merge(d: int, sample_size: int):
    head = _validation_layout(d)

    def merge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = a[:head] + b[:head]
        sa = a[head:].reshape(-1, d + 2)
        sb = b[head:].reshape(-1, d + 2)
        both = np.concatenate([sa, sb])
        sample = _top_sample([both[:, 0]], [both[:, 1]], [both[:, 2:]], d, sample_size)
        out[-1] = sample.shape[0]
        return np.concatenate([out, sample.ravel()])

    return merge


# ---------------------------------------------------------------------------------------
# Local block files (local mode only)
#
# In local mode the driver and every task share one machine and file system.  There the
# validation pass also writes each partition's validated blocks to one local file of
# float64 rows ``[w, x_1 .. x_d]``, and each later pass is a job over ``P`` (the default
# parallelism) tiny partitions whose tasks read their share of those files directly
# (from the OS page cache, or from disk when the data exceed memory).  This skips the
# transfer from Spark's block manager to the Python workers on every pass, which costs
# more than the E-step itself.  On a cluster or on Spark Connect the blocks are cached
# by Spark (MEMORY_AND_DISK) instead.
# ---------------------------------------------------------------------------------------
BLOCK_CACHES = ("auto", "spark")
_UNIT_BYTES = 8 << 20  # rows read per unit of work: about 8 MB


class _LocalBlockWriter:
    """Appends one task's blocks to ``part-<partition>.bin``; renamed into place on close
    so that a failed or retried task never leaves a partial file behind."""

    def __init__(self, root: str, pid: int, ctx, d: int):
        import os

        attempt = ctx.attemptNumber() if ctx is not None else 0
        self.final = os.path.join(root, f"part-{pid:06d}.bin")
        self.tmp = os.path.join(root, f".part-{pid:06d}-{attempt}.tmp")
        self.file = open(self.tmp, "wb")
        self.d = d

    def write(self, X: np.ndarray, w: np.ndarray) -> None:
        rows = np.empty((X.shape[0], self.d + 1))
        rows[:, 0] = w
        rows[:, 1:] = X
        rows.tofile(self.file)

    def close(self) -> None:
        import os

        self.file.close()
        os.replace(self.tmp, self.final)


def _local_block_dir(spark: SparkSession, block_cache: str) -> str | None:
    """A fresh local directory for block files, or None when Spark should cache the blocks."""
    import tempfile

    if block_cache not in BLOCK_CACHES:
        raise ValueError(f"blockCache must be one of {BLOCK_CACHES}, got {block_cache!r}")
    if block_cache != "auto" or is_connect(spark):
        return None
    sc = spark.sparkContext
    if not sc.master.startswith("local"):
        return None
    base = sc.getConf().get("spark.local.dir", None) or tempfile.gettempdir()
    return tempfile.mkdtemp(prefix="spark-em-blocks-", dir=base.split(",")[0])


def _local_units(root: str, d: int, parallelism: int) -> list[tuple[str, int, int]]:
    """``(file, first row, rows)`` work units covering every block file under ``root``:
    at most about 8 MB each, and at least 4 per task so that the tasks stay balanced."""
    import os

    row_bytes = 8 * (d + 1)
    files = []
    for name in sorted(os.listdir(root)):
        if name.endswith(".bin"):
            path = os.path.join(root, name)
            files.append((path, os.path.getsize(path) // row_bytes))
    total = sum(n for _, n in files)
    step = max(256, min(_UNIT_BYTES // row_bytes, -(-total // (4 * max(parallelism, 1)))))
    units = []
    for path, n in files:
        units.extend((path, start, min(step, n - start)) for start in range(0, n, step))
    return units


def iter_local_units(units, d: int):
    """Yield ``(X (n, d) float64, w (n,), key)`` for each unit (inside a task)."""
    for key, (path, start, n) in units:
        rows = np.fromfile(path, dtype=np.float64, count=n * (d + 1), offset=start * 8 * (d + 1))
        rows = rows.reshape(n, d + 1)
        yield rows[:, 1:], np.ascontiguousarray(rows[:, 0]), key


@dataclass
class PreparedData:
    """Cached feature blocks of one fit plus what the validation pass learned."""

    blocks: DataFrame
    d: int
    n_rows: int
    weight_sum: float
    centre: np.ndarray  # weighted mean, the fit's centre c0
    sample: np.ndarray  # (m, d) rows drawn with probability proportional to weight
    num_partitions: int
    aggregation_depth: int = 2
    cached: bool = True  # False where the server refuses to cache (see _persist)
    last_profile: dict | None = None  # timings of the last run_pass
    block_dir: str | None = None  # local block files (local mode), else None
    units: list | None = None  # (block key, (file, first row, rows)) work units
    local_pass_df: DataFrame | None = None  # the one pass DataFrame over local block files

    def unpersist(self) -> None:
        if self.block_dir is not None:
            import shutil

            shutil.rmtree(self.block_dir, ignore_errors=True)
            self.block_dir = None
        elif self.cached:
            self.blocks.unpersist()


def prepare(
    df: DataFrame,
    features: str | Sequence[str],
    weight_col: str | None = None,
    *,
    sample_size: int = 10_000,
    seed: int = 0,
    aggregation_depth: int = 2,
    block_cache: str = "auto",
) -> PreparedData:
    """Validate ``df``, cache its features as numpy blocks, and run the validation pass.

    ``block_cache``: ``"auto"`` keeps the blocks in local files in local mode (see
    :class:`_LocalBlockWriter`) and in Spark's cache otherwise; ``"spark"`` always uses
    Spark's cache (MEMORY_AND_DISK).

    Raises :class:`InvalidInputError` for: a missing or non-numeric feature column, an empty
    DataFrame, null/NaN/inf features, vectors of the wrong length, and null or negative
    weights — each with the number of offending rows.
    """
    arr = feature_array(df, features)
    wcol = weight_column(df, weight_col)
    d = feature_dimension(df, features, arr)
    if d is None:
        raise InvalidInputError(
            f"the input DataFrame is empty (or {_describe(features)} is null in every row): "
            "nothing to fit"
        )
    if d == 0:
        raise InvalidInputError(f"{_describe(features)} has vectors of length 0")
    spark = df.sparkSession
    sample_size = max(int(sample_size), 1)
    block_dir = _local_block_dir(spark, block_cache)
    selected = df.select(arr.alias("x"), wcol.alias("w"))
    cached = False
    cache_conf = contextlib.ExitStack()  # left when the cache is written, or on error
    if block_dir is None:
        # Small block rows, one per cached batch (see _CACHE_SETTINGS): the cache of a
        # partition is then written and read a few hundred KB at a time.
        cache_conf.enter_context(_session_conf(spark, _CACHE_SETTINGS))
        to_blocks = _make_blocks_fn(d, max(1, _STORED_BLOCK_BYTES // (8 * d)))
        try:
            blocks, cached = _persist(selected.mapInArrow(to_blocks, BLOCK_SCHEMA))
        except BaseException:
            cache_conf.close()
            raise
        rows = blocks.mapInArrow(_make_validation_fn(d, sample_size, seed), PAYLOAD_SCHEMA)
    else:
        # One job reads the input, validates it and writes the block files.
        to_blocks = _make_blocks_fn(d)
        validate = _make_validation_fn(d, sample_size, seed, block_dir)
        blocks = selected
        rows = selected.mapInArrow(lambda batches: validate(to_blocks(batches)), PAYLOAD_SCHEMA)
    units = None
    try:
        with cache_conf:  # the cache is written by the first job(s) over `blocks`
            # Count the partitions from the rows themselves: one per task, empty ones included.
            parts = _num_partitions(blocks)
            merge = _make_validation_merge(d, sample_size)
            acc = tree_collect(rows, parts, merge, aggregation_depth)
        if acc is None:  # a DataFrame with no partitions at all
            raise InvalidInputError("the input DataFrame is empty: nothing to fit")
        if block_dir is not None:
            cores = spark.sparkContext.defaultParallelism
            units = [((0, i), u) for i, u in enumerate(_local_units(block_dir, d, cores))]
            parts = max(1, min(cores, len(units)))
            blocks = spark.range(0, parts, 1, parts)
        head = _validation_layout(d)
        n_rows, wsum = int(acc[0]), float(acc[1])
        bad = dict(zip(BAD_KINDS, acc[2 + d : 2 + d + len(BAD_KINDS)].astype(int)))
        _raise_for_bad_rows(bad, features, weight_col, d)
        if n_rows == 0:
            raise InvalidInputError("the input DataFrame is empty: nothing to fit")
        if not wsum > 0:
            raise InvalidInputError(f"weightCol {weight_col!r}: the weights sum to zero")
        centre = acc[2 : 2 + d] / wsum
        sample = acc[head:].reshape(-1, d + 2)[:, 2:]
    except BaseException:
        cache_conf.close()
        if block_dir is None:
            if cached:
                blocks.unpersist()
        else:
            import shutil

            shutil.rmtree(block_dir, ignore_errors=True)
        raise
    return PreparedData(
        blocks, d, n_rows, wsum, centre, sample, parts, aggregation_depth, cached,
        block_dir=block_dir, units=units,
    )


# Spark's cache of the prepared blocks (blockCache="spark"), kept in bounded pieces so that
# data much larger than the JVM heap spill to disk instead of running it out of memory:
# * A DataFrame is cached as columnar batches of spark.sql.inMemoryColumnarStorage.batchSize
#   rows (default 10000).  With one block row per Arrow batch of 10000 input rows (1.3 MB at
#   d=16) one cached batch held a whole partition (128 MB and more), built in growing heap
#   buffers, serialized in one piece and pinned by the Java serializer's handle table until
#   the partition was written: 2 tasks ran a 1 GiB heap out of memory (OOM) while writing
#   the cache.  Now block rows hold at most _STORED_BLOCK_BYTES and each is its own cached
#   batch; the setting is read when the cache is planned and written, so it is set on the
#   session (a remote call on Spark Connect) for the preparation only, then restored.
# * pyspark's StorageLevel.MEMORY_AND_DISK is serialized in the JVM: the memory store keeps
#   each partition as 1 MiB byte chunks, which G1 allocates as "humongous" objects taking
#   two 1 MiB regions each on heaps under 2 GiB; the storage pool then filled the whole heap
#   (OOM again).  The deserialized level keeps the cached batches themselves (256 KiB
#   arrays, ordinary objects) and passes read them without deserializing.
# Passes merge the small blocks back into kernel-sized chunks without copying (iter_blocks).
_STORED_BLOCK_BYTES = 256 << 10
CACHE_LEVEL = StorageLevel.MEMORY_AND_DISK_DESER
_CACHE_SETTINGS = {"spark.sql.inMemoryColumnarStorage.batchSize": "1"}


@contextlib.contextmanager
def _session_conf(spark: SparkSession, settings: dict):
    """Set SQL configuration on the session for a block of jobs, then restore the user's
    values (or unset them when they were not set).  A setting the server refuses (some
    managed Spark Connect servers allow only listed keys) is skipped."""
    old = {}
    for key, value in settings.items():
        try:
            previous = spark.conf.get(key, None)
            spark.conf.set(key, value)
        except Exception:  # refused: the jobs run with the session's own value
            continue
        old[key] = previous
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def _persist(df: DataFrame) -> tuple[DataFrame, bool]:
    """``df`` cached MEMORY_AND_DISK (deserialized in the JVM: see _STORED_BLOCK_BYTES), and
    whether it is.  Some Spark Connect servers refuse caching (Databricks serverless:
    NOT_SUPPORTED_WITH_SERVERLESS); there the fit still works, recomputing the blocks from
    the input in every pass."""
    try:
        return df.persist(CACHE_LEVEL), True
    except Exception as exc:
        if not is_connect(df.sparkSession):
            raise
        warnings.warn(
            f"spark-em: this Spark Connect server cannot cache the prepared features ({exc}); "
            "every EM pass re-reads the input. Fitting a materialised table is faster.",
            RuntimeWarning,
            stacklevel=3,
        )
        return df, False


def _num_partitions(df: DataFrame) -> int:
    spark = df.sparkSession
    if not is_connect(spark):
        return df.rdd.getNumPartitions()
    # No RDDs on Connect: count the tasks that report.
    return df.mapInArrow(_count_partition, "c long").count()


def _count_partition(batches):
    for _ in batches:
        pass
    yield pa.RecordBatch.from_arrays([pa.array([1], pa.int64())], ["c"])


def _raise_for_bad_rows(bad: dict, features, weight_col, d: int) -> None:
    problems = []
    what = _describe(features)
    if bad["null_vector"]:
        problems.append(f"{what}: {bad['null_vector']} rows have null features")
    if bad["wrong_length"]:
        problems.append(
            f"{what}: {bad['wrong_length']} rows have a vector length other than d={d} "
            "(ragged or wrong-length vectors)"
        )
    if bad["null_element"]:
        problems.append(f"{what}: {bad['null_element']} rows have null values")
    if bad["non_finite"]:
        problems.append(f"{what}: {bad['non_finite']} rows have NaN or infinite values")
    if bad["null_weight"]:
        problems.append(f"weightCol {weight_col!r}: {bad['null_weight']} rows have null weights")
    if bad["negative_weight"]:
        problems.append(
            f"weightCol {weight_col!r}: {bad['negative_weight']} rows have negative or "
            "non-finite weights"
        )
    if problems:
        raise InvalidInputError("invalid input: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------
# One pass: statistics for several models
# ---------------------------------------------------------------------------------------
# Per-task timings appended to every statistics row (they add like the statistics):
# tasks, seconds waiting for input blocks, seconds in the kernels, seconds in the task.
PROFILE_FIELDS = ("tasks", "read_s", "kernel_s", "task_s")


def _make_stats_fn(get_payload, d: int, num_tasks: int | None = None):
    from time import perf_counter

    from pyspark import TaskContext

    def stats_partition(batches):
        t_start = perf_counter()
        centre, tasks, units = get_payload()
        ctx = TaskContext.get()
        pid = ctx.partitionId() if ctx is not None else 0
        stats = [task.new_stats(d) for task in tasks]
        if units is None:
            rows = _chunk_rows(d)
            source = ((X, w, (pid, i)) for X, w, i in iter_blocks(batches, d, rows))
        else:  # local block files: this task's share of the units
            for _ in batches:
                pass
            source = iter_local_units(units[pid::num_tasks], d)
        t_kernel = 0.0
        for X, w, key in source:
            t0 = perf_counter()
            Xc = X - centre  # centred once per block, shared by every model
            for task, st in zip(tasks, stats):
                task.accumulate(st, Xc, w, key)
            t_kernel += perf_counter() - t0
        t_task = perf_counter() - t_start
        profile = [1.0, t_task - t_kernel, t_kernel, t_task]
        yield _payload_batch(np.concatenate([st.pack() for st in stats] + [profile]))

    return stats_partition


def _run_local_pass(data: PreparedData, tasks: Sequence) -> np.ndarray:
    """A pass over local block files.  The tasks of the pass are written to a file next to
    the blocks (driver and tasks share the machine), so one DataFrame — planned once per
    fit — serves every pass: no broadcast, no new plan per iteration."""
    import os
    import pickle

    params_path = os.path.join(data.block_dir, "params.pkl")
    tmp = params_path + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump((data.centre, list(tasks)), f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, params_path)
    if data.local_pass_df is None:
        units = data.units

        def get_payload():
            with open(params_path, "rb") as f:
                centre, shipped = pickle.load(f)
            return centre, shipped, units

        fn = _make_stats_fn(get_payload, data.d, data.num_partitions)
        data.local_pass_df = data.blocks.mapInArrow(fn, PAYLOAD_SCHEMA)
    return tree_collect(data.local_pass_df, data.num_partitions, np.add, data.aggregation_depth)


def run_pass(data: PreparedData, tasks: Sequence) -> list[SuffStats]:
    """Sufficient statistics of every task over the whole data set, in one Spark job.

    A task has ``new_stats(d) -> SuffStats`` and ``accumulate(stats, Xc, w, block_key)``
    (see :mod:`spark_em.stats`).  Timings of the pass (driver wall time and the summed
    per-task timings of :data:`PROFILE_FIELDS`) are left in ``data.last_profile``.
    """
    from time import perf_counter

    t0 = perf_counter()
    if data.block_dir is not None:
        flat = _run_local_pass(data, tasks)
    else:
        spark = data.blocks.sparkSession
        shipment = _Shipment(spark, (data.centre, list(tasks), None))
        try:
            fn = _make_stats_fn(shipment.getter(), data.d, data.num_partitions)
            rows = data.blocks.mapInArrow(fn, PAYLOAD_SCHEMA)
            flat = tree_collect(rows, data.num_partitions, np.add, data.aggregation_depth)
        finally:
            shipment.release()
    data.last_profile = dict(zip(PROFILE_FIELDS, flat[-len(PROFILE_FIELDS) :].tolist()))
    data.last_profile["pass_s"] = perf_counter() - t0
    flat = flat[: -len(PROFILE_FIELDS)]
    out, offset = [], 0
    for task in tasks:
        empty = task.new_stats(data.d)
        size = empty.pack().shape[0]
        out.append(
            SuffStats.unpack(flat[offset : offset + size], empty.k, data.d, empty.covariance_type)
        )
        offset += size
    return out
