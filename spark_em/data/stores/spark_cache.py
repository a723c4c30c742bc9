"""Spark's cache: the store of clusters and Spark Connect when the input is not a plain
Parquet scan.

The first pass turns the input into block rows (raw bytes of at most STORED_BLOCK_BYTES of
features each, float64 weights, and the counts of the invalid rows dropped from them; with
``dtype="float32"`` the features are float32 ``x - ref`` about a float64 reference ``ref``
of their task -- the mean of its first batch -- stored in each block row; with segmentCol,
each block row holds one segment's rows and its ``code``: ``keyed``) and, in the
same task, into the first pass's statistics (one more row per task, which only the first
pass reads: the blocks are not read back through Python to validate them).  Spark keeps
the rows MEMORY_AND_DISK, deserialized, one block row per stored object, under this fit's
own identity -- no setting of the user's session changes, and no other fit (of the same
DataFrame, in another thread) shares or drops the blocks:

* classic Spark: a local checkpoint of the blocks (rows, not columnar batches), released by
  unpersisting its RDD;
* Spark Connect (a client cannot unpersist a checkpoint; the server drops it only when its
  JVM collects it): the blocks are cached in a clone of the session whose
  ``spark.sql.inMemoryColumnarStorage.batchSize`` is 1, so that each cached columnar batch
  holds one block row; the plan carries the fit's id, so the cache entry is this fit's own.
  Released by ``unpersist`` and by closing the clone.  Input partitions are merged into at
most TASKS_PER_CORE tasks per core first, so the statistics rows and their reduce do not
grow with the input's partition count.  Passes read the blocks with ``mapInArrow`` and
merge consecutive block rows into kernel-sized chunks without copying.  Parameters travel
in a broadcast variable (classic) or the function's closure (Spark Connect).

Where the server refuses to keep data (Databricks serverless), the fit warns and every pass
recomputes the blocks from the input.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ...core.precision import FLOAT64, Precision
from ...core.tuning import BLOCK_ROWS_PER_ARROW_BATCH, STORED_BLOCK_BYTES, unit_rows
from ..arrow_blocks import BAD_KINDS, decode_rows, task_dimension
from ..passes import PASS_SCHEMA, TaskStatistics, make_task
from ..segments import key_codes
from .base import BlockStore

log = logging.getLogger("spark_em")

BLOCK_COLUMNS = ("X", "w", "n", "bad", "ref", "code")
BLOCK_SCHEMA = T.StructType(
    [
        T.StructField("X", T.BinaryType(), False),
        T.StructField("w", T.BinaryType(), False),
        T.StructField("n", T.LongType(), False),
        T.StructField("bad", T.BinaryType(), False),
        T.StructField("ref", T.BinaryType(), True),  # float32 blocks: their reference
        T.StructField("code", T.LongType(), True),  # with segmentCol: their segment
        # the first pass's statistics row of each task (null in block rows)
        T.StructField("stats", T.BinaryType(), True),
        T.StructField("profile", T.BinaryType(), True),
    ]
)
_BLOCK_ARROW_SCHEMA = pa.schema(
    [
        ("X", pa.binary(), False),
        ("w", pa.binary(), False),
        ("n", pa.int64(), False),
        ("bad", pa.binary(), False),
        ("ref", pa.binary(), True),
        ("code", pa.int64(), True),
        ("stats", pa.binary(), True),
        ("profile", pa.binary(), True),
    ]
)
CACHE_LEVEL = StorageLevel.MEMORY_AND_DISK_DESER
_BATCH_SIZE = "spark.sql.inMemoryColumnarStorage.batchSize"
_ARROW_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"


class SparkCacheStore(BlockStore):
    name = "spark"

    def __init__(self, source):
        super().__init__(source)
        # Connect: the fit's id in the plan, a cache entry no other plan can match (a classic
        # local checkpoint is the fit's own already: no column sent to every task for it)
        tag = [F.lit(self.fit_id).alias("fit")] if self.env.connect else []
        # the segment keys (segmentCol): each block holds one segment's rows (``keyed``)
        self.keys = source.keys
        self.keyed = source.keys is not None
        keyed = ["s"] if self.keyed else []
        self._tagged = self._merged_input(source.selected.select("x", "w", *keyed, *tag))
        self._clone = None
        self.cached = True
        self.blocks = self._pass_blocks = None

    def _keep(self, blocks):
        """``blocks`` kept by Spark (see the module docstring), or as they are where the
        server refuses."""
        try:
            if self.env.connect:
                return self._persist_in_clone(blocks)
            return blocks.localCheckpoint(eager=False, storageLevel=CACHE_LEVEL)
        except Exception as exc:
            if not self.env.connect:
                raise
            self._close_clone()
            self.cached = False
            log.warning(
                "spark-em: this Spark Connect server cannot keep the prepared features "
                "(%s); every EM pass re-reads the input. Fitting a materialised table is "
                "faster.",
                str(exc).splitlines()[0],
            )
            return blocks

    def _persist_in_clone(self, blocks):
        from pyspark.sql.connect.dataframe import DataFrame as ConnectDataFrame

        try:
            self._clone = self.spark.cloneSession()
            self._clone.conf.set(_BATCH_SIZE, "1")
            blocks = ConnectDataFrame(blocks._plan, session=self._clone)
        except Exception as exc:  # an older server: cache in the session as it is
            self._close_clone()
            log.info("spark-em: no session clone for the cache layout (%s)", exc)
        return blocks.persist(CACHE_LEVEL)

    def _close_clone(self) -> None:
        if self._clone is not None:
            with contextlib.suppress(Exception):
                self._clone.stop()
            self._clone = None

    def _after_open(self, stats) -> None:
        """Later passes read the kept blocks a few at a time (BLOCK_ROWS_PER_ARROW_BATCH per
        Arrow batch, not 10,000: the JVM then streams them while the Python worker computes)
        -- through a session of the fit's own, whose settings nobody else sees: a new
        session on classic Spark, the clone on Spark Connect."""
        self._pass_blocks = self.blocks.select(*BLOCK_COLUMNS)
        if not self.cached:
            return
        try:
            if self.env.connect:
                if self._clone is not None:
                    self._clone.conf.set(_ARROW_BATCH, str(BLOCK_ROWS_PER_ARROW_BATCH))
                return
            from pyspark.sql import DataFrame

            private = self.spark.newSession()
            private.conf.set(_ARROW_BATCH, str(BLOCK_ROWS_PER_ARROW_BATCH))
            jdf = self.spark._jvm.org.apache.spark.sql.classic.Dataset.ofRows(
                private._jsparkSession, self.blocks._jdf.queryExecution().analyzed()
            )
            self._pass_blocks = DataFrame(jdf, private).select(*BLOCK_COLUMNS)
        except Exception as exc:  # the session's own batches: slower, as correct
            log.info("spark-em: passes read the blocks in the session's Arrow batches (%s)", exc)

    @contextlib.contextmanager
    def _first_pass_rows(self, payload):
        # The blocks and the first pass's statistics come out of one task; this pass reads
        # only the statistics rows, which computes (and keeps) every block on the way.
        with self._shipped(payload) as get_payload:
            encode = encode_blocks(
                self.d,
                None,
                get_payload,
                self.precision,
                self.missing,
                self.keys,
            )
            self.blocks = self._keep(self._tagged.mapInArrow(encode, BLOCK_SCHEMA))
            yield self.blocks.where(F.col("stats").isNotNull()).select("stats", "profile")

    @contextlib.contextmanager
    def _pass_rows(self, payload):
        with self._rows_of(self._pass_blocks, payload) as rows:
            yield rows

    @contextlib.contextmanager
    def _rows_of(self, blocks, payload):
        with self._shipped(payload) as get_payload:
            reader = read_blocks(self.d, unit_rows(self.d), self.precision)
            fn = make_task(get_payload, reader, self.d)
            yield blocks.mapInArrow(fn, PASS_SCHEMA)

    def _release(self) -> None:
        blocks, self.blocks, self._pass_blocks = self.blocks, None, None
        if not self.cached or blocks is None:
            self._close_clone()
            return
        try:
            if self.env.connect:
                blocks.unpersist()
            else:
                rdd = _checkpoint_rdd(blocks)
                if rdd is not None:
                    rdd.unpersist(True)
        finally:
            self._close_clone()


def _checkpoint_rdd(df):
    """The JVM RDD behind a classic local checkpoint (a ``LogicalRDD``), or None."""
    try:
        plan = df._jdf.queryExecution().logical()
        return plan.rdd()
    except Exception:
        return None


# ---------------------------------------------------------------------------------------
# Inside tasks
# ---------------------------------------------------------------------------------------
def encode_blocks(
    d: int | None,
    max_rows: int | None = None,
    get_payload=None,
    precision: Precision = FLOAT64,
    missing: bool = False,
    keys=None,
):
    """Each Arrow batch of ``(x array<double>, w double)`` rows -> block rows of at most
    ``max_rows`` valid rows (float64: sharing the batch's decoded buffers, no copy; float32:
    ``x - ref`` rounded once, ``ref`` the mean of the task's first rows); the batch's
    invalid-row counts go to its first block row.  With ``keys`` (segmentCol's values, the
    batch's third column), each segment's rows go to block rows of their own, marked with
    its code.  With ``get_payload`` (the first pass's payload), the task also accumulates
    the pass's statistics over the valid rows and ends with one row of them (``n`` 0, no
    features) in the ``stats``/``profile`` columns.  ``max_rows`` None: the rows of
    STORED_BLOCK_BYTES; ``d`` None (not with ``keys``): the task's own
    (:func:`~spark_em.data.arrow_blocks.task_dimension`)."""
    single = precision.dtype != np.float64

    def to_blocks(batches):
        acc = TaskStatistics(get_payload(), d) if get_payload is not None else None
        ref, width = None, d
        for batch, code, width in _parts(batches, keys, d):
            X, w, bad = decode_rows(
                batch.column(0), batch.column(1), width, precision.max_value, missing
            )
            if acc is not None:
                acc.add(X, w, bad, None, code)
            stored = X
            if single:
                if ref is None and X.shape[0]:
                    ref = X.mean(axis=0)
                stored = (X - ref if X.shape[0] else X).astype(precision.dtype)
            rows = max_rows or max(1, STORED_BLOCK_BYTES // (precision.itemsize * max(width, 1)))
            yield _block_batch(stored, w, bad, width, rows, ref, code)
        if acc is not None:
            stats, profile = acc.packed()
            empty = np.zeros(0)
            cols = _block_columns(empty, empty, np.zeros(len(BAD_KINDS)), width or 0, 1, None)
            cols += [
                pa.array([stats.tobytes()], pa.binary()),
                pa.array([profile.tobytes()], pa.binary()),
            ]
            yield pa.RecordBatch.from_arrays(cols, schema=_BLOCK_ARROW_SCHEMA)

    return to_blocks


def _parts(batches, keys, d: int | None):
    """``(batch, segment code, d)`` for each part of the task's batches
    (:func:`_by_segment`); ``d`` None (no segments): the task's own
    (:func:`~spark_em.data.arrow_blocks.task_dimension`)."""
    if d is None:
        assert keys is None, "a first pass with segments knows d"
        for batch, found in task_dimension(batches, None):
            yield batch, None, found
        return
    for batch, code in _by_segment(batches, keys):
        yield batch, code, d


def _by_segment(batches, keys):
    """``(batch, None)`` for each batch; with ``keys``, ``(part, code)`` for each segment's
    rows of each batch (the third column coded by :func:`~spark_em.data.segments.key_codes`)."""
    if keys is None:
        for batch in batches:
            yield batch, None
        return
    coded = key_codes(keys)
    for batch in batches:
        codes = coded(batch.column(2))
        present = np.unique(codes)
        if present.size and present[0] < 0:
            raise ValueError(
                "a row's segment key is not among the keys the update found in its input "
                "(did the input change during the update?)"
            )
        for code in present.tolist():
            yield (batch if present.size == 1 else batch.filter(pa.array(codes == code))), code


def _block_columns(X, w, bad, d: int, max_rows: int, ref, code=None) -> list:
    n = w.shape[0]
    bounds = np.append(np.arange(0, n, max_rows), n) if n else np.zeros(2, int)
    m = len(bounds) - 1
    bad_rows = np.zeros((m, len(BAD_KINDS)), dtype=np.float64)
    bad_rows[0] = bad
    row_bounds = np.arange(m + 1, dtype=np.int32) * (8 * len(BAD_KINDS))
    size = X.dtype.itemsize * d
    refs = pa.nulls(m, pa.binary()) if ref is None else pa.array([ref.tobytes()] * m, pa.binary())
    codes = pa.nulls(m, pa.int64()) if code is None else pa.array([code] * m, pa.int64())
    return [
        pa.Array.from_buffers(
            pa.binary(), m, [None, pa.py_buffer((bounds * size).astype(np.int32)), pa.py_buffer(X)]
        ),
        pa.Array.from_buffers(
            pa.binary(), m, [None, pa.py_buffer((bounds * 8).astype(np.int32)), pa.py_buffer(w)]
        ),
        pa.array(np.diff(bounds).astype(np.int64), pa.int64()),
        pa.Array.from_buffers(
            pa.binary(), m, [None, pa.py_buffer(row_bounds), pa.py_buffer(bad_rows)]
        ),
        refs,
        codes,
    ]


def _block_batch(X, w, bad, d: int, max_rows: int, ref=None, code=None) -> pa.RecordBatch:
    cols = _block_columns(X, w, bad, d, max_rows, ref, code)
    m = len(cols[2])
    cols += [pa.nulls(m, pa.binary()), pa.nulls(m, pa.binary())]
    return pa.RecordBatch.from_arrays(cols, schema=_BLOCK_ARROW_SCHEMA)


def _binary_parts(col: pa.Array):
    """(value offsets as int64 numpy, data buffer) of a binary Arrow array."""
    offsets = np.frombuffer(col.buffers()[1], dtype=np.int32)
    return offsets[col.offset : col.offset + len(col) + 1].astype(np.int64), col.buffers()[2]


def read_blocks(d: int, chunk_rows: int, precision: Precision = FLOAT64):
    """Block rows -> ``(X (n, d), w (n,), bad)`` chunks of at least ``chunk_rows`` rows
    (float32 blocks: ``(X, w, bad, ref)``, a chunk never mixing two references; keyed
    blocks: ``(X, w, bad, ref or None, code)``, a chunk never mixing two segments).

    A block's ``X`` bytes follow the previous block's in the Arrow column, so a chunk inside
    one Arrow batch is a view, not a copy.  The chunks depend only on the sequence of block
    rows, not on how Spark cut them into Arrow batches."""
    dtype = precision.dtype
    size = np.dtype(dtype).itemsize

    def read(batches):
        xs, ws, rows, bad = [], [], 0, np.zeros(len(BAD_KINDS), dtype=np.int64)
        ref = None  # the reference of the blocks in xs (float32), as bytes
        code = None  # the segment of the blocks in xs (an update's)

        def chunk():
            out = (_joined(xs, d, dtype), _joined(ws), bad)
            r = None if ref is None else np.frombuffer(ref, np.float64)
            if code is not None:
                return (*out, r, code)
            return out if r is None else (*out, r)

        for batch in batches:
            ns = batch.column(2).to_numpy()
            refs = batch.column(4).to_pylist() if batch.column(4).null_count < len(ns) else None
            codes = batch.column(5).to_pylist() if batch.column(5).null_count < len(ns) else None
            xoff, xdata = _binary_parts(batch.column(0))
            woff, wdata = _binary_parts(batch.column(1))
            boff, bdata = _binary_parts(batch.column(3))
            counts = np.frombuffer(bdata, np.float64, (boff[-1] - boff[0]) // 8, boff[0])
            bad += counts.reshape(-1, len(BAD_KINDS)).sum(axis=0).astype(np.int64)
            i, nb = 0, len(ns)
            while i < nb:
                new_ref = refs is not None and refs[i] is not None and refs[i] != ref
                new_code = codes is not None and codes[i] != code
                if new_ref or new_code:
                    if xs:  # a block of another reference or segment starts a new chunk
                        yield chunk()
                        xs, ws, rows = [], [], 0
                        bad = np.zeros(len(BAD_KINDS), dtype=np.int64)
                    ref = refs[i] if new_ref else ref
                    code = codes[i] if new_code else code
                j = i
                while (
                    j < nb
                    and rows < chunk_rows
                    and (refs is None or refs[j] in (None, ref))
                    and (codes is None or codes[j] == code)
                ):
                    rows += int(ns[j])
                    j += 1
                if woff[j] > woff[i]:
                    count = (xoff[j] - xoff[i]) // size
                    if count != d * ((woff[j] - woff[i]) // 8):
                        # a block recomputed from an input whose rows changed (Spark's
                        # lineage reruns the first pass's tasks, which find d themselves)
                        raise ValueError(
                            f"blocks of another width than d={d}: the input's rows changed "
                            "during the fit (cache or checkpoint a non-deterministic input "
                            "before fitting it)"
                        )
                    xs.append(np.frombuffer(xdata, dtype, count, xoff[i]).reshape(-1, d))
                    ws.append(np.frombuffer(wdata, np.float64, (woff[j] - woff[i]) // 8, woff[i]))
                i = j
                if rows >= chunk_rows and xs:
                    yield chunk()
                    xs, ws, rows = [], [], 0
                    bad = np.zeros(len(BAD_KINDS), dtype=np.int64)
        if xs or bad.any():
            yield chunk()

    return read


def _joined(parts: list, d: int | None = None, dtype=np.float64) -> np.ndarray:
    if not parts:
        return np.zeros((0, d), dtype) if d is not None else np.zeros(0)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
