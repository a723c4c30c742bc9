"""The block rows of Spark's cache, inside the tasks (:mod:`.spark_cache` keeps them).

:func:`encode_blocks` turns a first pass's Arrow batches of ``(x array<double>[, w double])``
rows into block rows -- raw bytes of at most STORED_BLOCK_BYTES of features, float64
weights, the counts of the invalid rows dropped from them (float32: ``x - ref`` about a
float64 reference of the task), a segment code with segmentCol -- and the pass's statistics
row; :func:`read_blocks` turns block rows back into kernel-sized chunks without copying.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pyspark.sql import types as T

from ...core.precision import FLOAT64, Precision
from ...core.tuning import STORED_BLOCK_BYTES
from ..arrow_blocks import BAD_KINDS, decode_batch, task_dimension
from ..passes import TaskStatistics
from ..segments import segment_parts

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


def encode_blocks(
    d: int | None,
    max_rows: int | None = None,
    get_payload=None,
    precision: Precision = FLOAT64,
    missing: bool = False,
    keys=None,
):
    """Each Arrow batch of ``(x array<double>[, w double])`` rows -> block rows of at most
    ``max_rows`` valid rows (float64: sharing the batch's decoded buffers, no copy; float32:
    ``x - ref`` rounded once, ``ref`` the mean of the task's first rows); the batch's
    invalid-row counts go to its first block row.  With ``keys`` (segmentCol's values, the
    batch's column ``s``), each segment's rows go to block rows of their own, marked with
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
            X, w, bad = decode_batch(batch, width, precision.max_value, missing)
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
    (:func:`~spark_em.data.segments.segment_parts`); ``d`` None (no segments): the task's own
    (:func:`~spark_em.data.arrow_blocks.task_dimension`)."""
    if d is None:
        assert keys is None, "a first pass with segments knows d"
        for batch, found in task_dimension(batches, None):
            yield batch, None, found
        return
    for batch, code in segment_parts(batches, keys):
        yield batch, code, d


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
