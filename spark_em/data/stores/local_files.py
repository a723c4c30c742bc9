"""Local block files: classic Spark whose executors run on this machine (``local[...]``,
``local-cluster[...]``).

The first pass reads the input, validates it and writes each task's valid rows to one file
of rows ``[w, x_1 .. x_d]`` (``[x_1 .. x_d]`` without a weightCol, whose weights are all 1;
input partitions merged into at most TASKS_PER_CORE tasks per core; a plain Parquet scan's
row groups read by the tasks themselves with pyarrow, one task per core, when the driver
could list them: :func:`~spark_em.data.stores.parquet_layout`;
with segmentCol and a few segments, one file per task and segment,
``part-<task>-s<code>.bin``, so that every chunk of a pass belongs to one segment: ``keyed``,
:mod:`spark_em.engine.update`): all float64, or --
``dtype="float32"`` -- the float64 weight and float32 features ``x - ref`` after a header
holding the file's float64 reference ``ref`` (the mean of its first batch of rows), so that
the cast loses no digits to an offset of the features (:class:`BlockLayout`). Every later
pass is one job over ``P`` (the default parallelism) tiny partitions whose tasks read their
share of the files directly (from the OS page cache, or from disk when the data exceed
memory): no transfer from Spark's block manager into the Python workers, which costs more
than the E-step itself. The pass's payload goes to a file next to the blocks, so the pass's
job (an RDD of one element per task, :meth:`BlockStore._index_job`) is built once per fit.

The files live in Spark's own per-application local directory (under ``spark.local.dir`` /
``SPARK_LOCAL_DIRS``), which Spark deletes when the application ends; a directory left by a
driver killed outright is removed by the next fit (:mod:`.block_dirs`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pickle
import shutil
import tempfile

import numpy as np

from ...core.precision import Precision
from ...core.tuning import MIN_UNIT_ROWS, UNITS_PER_TASK, unit_rows
from ..arrow_blocks import decode_batch, task_dimension
from ..passes import PASS_SCHEMA, make_task, task_partition
from ..segments import segment_parts
from .base import BlockStore
from .block_dirs import PREFIX, OwnerLock, local_roots, remove_stale_block_dirs
from .parquet import assign, read_row_groups


class LocalFileStore(BlockStore):
    name = "local"

    def __init__(self, source):
        super().__init__(source)
        self.selected = source.selected  # (x array<double>[, w double][, s: segment key])
        self.keys = source.keys
        self.keyed = source.keys is not None
        self.weighted = source.weighted
        # a plain Parquet scan's row groups (not with segments: the files' reader has no
        # segment keys), read directly by the first pass
        self.parquet = source.parquet if not self.keyed else None
        root = self.env.local_dir or tempfile.gettempdir()
        for local_root in local_roots(self.spark, root):
            remove_stale_block_dirs(local_root)
        self.block_dir = tempfile.mkdtemp(prefix=f"{PREFIX}{self.fit_id}-", dir=root)
        self._owner = OwnerLock.take(self.block_dir)
        self._params = os.path.join(self.block_dir, "params.pkl")
        self._frame = None

    def _layout(self) -> BlockLayout:
        return BlockLayout(self.d, self.precision, self.weighted)

    @contextlib.contextmanager
    def _first_pass_rows(self, payload):
        if self.parquet is not None:
            yield self._parquet_first_pass(payload)
            return
        # One job reads the (merged) input, validates it and writes the block files.  Its
        # reduce takes the merge's bound, 2 tasks per core (above 16 cores, a shuffle level
        # even for an input of fewer partitions): asking for the exact count planned the
        # input's query a second time (0.015-0.03 s) and, with adaptive execution, ran its
        # shuffles twice
        layout = self._layout()
        writer = _input_writer(self.block_dir, layout, self.missing, self.keys)
        fn = make_task(lambda: payload, writer, self.d)
        with self._merged_input(self.selected) as frame:
            yield frame.mapInArrow(fn, PASS_SCHEMA)

    def _parquet_first_pass(self, payload):
        """The first pass over a plain Parquet scan: the tasks read their row groups with
        pyarrow (as the Parquet store's passes do), validate the rows and write the block
        files -- no transfer of the rows from Spark into Python, which is most of that
        pass otherwise."""
        assignment = assign(self.parquet, self.env.default_parallelism)
        self.num_tasks = len(assignment)
        reader = read_row_groups(
            assignment,
            self.parquet.spec,
            self.d,
            False,
            self.precision.max_value,
            self.missing,
        )
        layout = self._layout()
        return self._index_job(lambda: payload, _chunk_writer(self.block_dir, layout, reader))

    def _after_open(self, stats) -> None:
        layout = self._layout()
        units = local_units(self.block_dir, layout, self.env.default_parallelism)
        tasks = max(1, min(self.env.default_parallelism, len(units)))
        self.num_tasks = tasks
        # one job object for every later pass: the parameters change in the file only
        self._frame = self._index_job(
            _file_getter(self._params), _unit_reader(units, layout, tasks)
        )

    @contextlib.contextmanager
    def _pass_rows(self, payload):
        tmp = self._params + ".tmp"
        with open(tmp, "wb") as f:
            pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, self._params)
        yield self._frame

    def _release(self) -> None:
        shutil.rmtree(self.block_dir, ignore_errors=True)
        self._owner.close()


# ---------------------------------------------------------------------------------------
# Inside tasks
# ---------------------------------------------------------------------------------------
class BlockLayout:
    """The rows of a block file: a float64 weight (only when ``weighted``: without a
    weightCol every weight is 1 and none is stored), then the d features in the store's type
    (``precision``); float32 files start with a header of d float64 values, the reference
    ``ref`` their features are stored about (``x - ref``, computed in float64)."""

    def __init__(self, d: int | None, precision: Precision, weighted: bool = True):
        self.d, self.precision = d, precision
        self.single = precision.dtype != np.float64
        self.weighted = weighted
        x = ("x", np.dtype(precision.dtype).newbyteorder("<"), (d or 0,))
        self.row = np.dtype([("w", "<f8"), x] if weighted else [x])
        self.header = 8 * (d or 0) if self.single else 0
        self.max_value = precision.max_value

    def of_width(self, d: int) -> BlockLayout:
        """This layout, for rows of ``d`` features where it has no d of its own (a first
        pass whose tasks find d, :func:`~spark_em.data.arrow_blocks.task_dimension`)."""
        return self if self.d is not None else BlockLayout(d, self.precision, self.weighted)

    def rows_in(self, size: int) -> int:
        """The rows of a file of ``size`` bytes."""
        return max(0, size - self.header) // max(self.row.itemsize, 1)

    def encode(self, X: np.ndarray, w: np.ndarray, ref: np.ndarray | None) -> np.ndarray:
        if not self.weighted and ref is None:  # float64 features alone: X's own bytes
            return np.ascontiguousarray(X, dtype="<f8")
        rows = np.empty(X.shape[0], dtype=self.row)
        if self.weighted:
            rows["w"] = w
        if ref is None:
            rows["x"] = X
        else:
            np.subtract(X, ref, out=rows["x"], casting="same_kind")  # in float64, rounded once
        return rows

    def read(self, path: str, start: int, n: int):
        """``(X (n, d), w (n,), None)``, with the file's ``ref`` for float32 rows."""
        rows = np.fromfile(path, self.row, count=n, offset=self.header + start * self.row.itemsize)
        w = np.ascontiguousarray(rows["w"]) if self.weighted else np.ones(rows.shape[0])
        if not self.single:
            return rows["x"], w, None
        ref = np.fromfile(path, "<f8", count=self.d)
        return rows["x"], w, None, ref


class _BlockFileWriter:
    """Appends one task's rows to ``part-<partition>.bin`` (with segmentCol, its rows of segment
    ``code``: ``part-<partition>-s<code>.bin``); renamed into place on close, so that a
    failed or retried task never leaves a partial file behind.  A float32 file's reference
    is the mean of the first rows written (its header)."""

    def __init__(self, root: str, layout: BlockLayout, code: int | None = None):
        pid, attempt = task_partition()
        name = f"part-{pid:06d}" + ("" if code is None else f"-s{code}")
        self.final = os.path.join(root, f"{name}.bin")
        self.tmp = os.path.join(root, f".{name}-{attempt}.tmp")
        self.file = open(self.tmp, "wb")
        self.layout = layout
        self.ref: np.ndarray | None = None

    def write(self, X: np.ndarray, w: np.ndarray) -> None:
        if self.layout.single and self.ref is None:
            if X.shape[0] == 0:
                return
            self.ref = X.mean(axis=0)
            self.ref.astype("<f8").tofile(self.file)
        self.layout.encode(X, w, self.ref).tofile(self.file)

    def close(self) -> None:
        self.file.close()
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        self.file.close()
        with contextlib.suppress(OSError):
            os.remove(self.tmp)


def _input_writer(block_dir: str, layout: BlockLayout, missing: bool = False, keys=None):
    if keys is not None:
        return _keyed_input_writer(block_dir, layout, missing, keys)

    def decoded(batches):
        # the layout's d, or (None) the task's own: arrow_blocks.task_dimension
        for batch, d in task_dimension(batches, layout.d):
            yield decode_batch(batch, d, layout.max_value, missing)

    return _chunk_writer(block_dir, layout, decoded)


def _chunk_writer(block_dir: str, layout: BlockLayout, read_chunks):
    """The first pass's chunk reader over ``read_chunks`` (decoded ``(X, w, bad)``
    chunks): each task's valid rows written to its block file as they pass (a layout
    without d takes the width of the task's chunks)."""

    def read(batches):
        writer = None
        try:
            for X, w, bad in read_chunks(batches):
                if writer is None:
                    writer = _BlockFileWriter(block_dir, layout.of_width(X.shape[1]))
                writer.write(X, w)
                yield X, w, bad
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if writer is not None:
            writer.close()

    return read


def _keyed_input_writer(block_dir: str, layout: BlockLayout, missing: bool, keys):
    """The first pass of a store that keeps the segments apart: each batch's rows split
    by segment (the column ``s``, coded by its index in ``keys``), each segment's to its
    own file, each segment's chunk yielded with its code."""

    def read(batches):
        writers: dict[int, _BlockFileWriter] = {}
        try:
            for part, code in segment_parts(batches, keys):
                X, w, bad = decode_batch(part, layout.d, layout.max_value, missing)
                if code not in writers:
                    writers[code] = _BlockFileWriter(block_dir, layout, code)
                writers[code].write(X, w)
                yield X, w, bad, None, code
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
        for writer in writers.values():
            writer.close()
        # an earlier attempt of this task may have left files of segments this one lacks
        mine = {os.path.basename(w.final) for w in writers.values()}
        pid = task_partition()[0]
        for path in glob.glob(os.path.join(block_dir, f"part-{pid:06d}-s*.bin")):
            if os.path.basename(path) not in mine:
                with contextlib.suppress(OSError):
                    os.remove(path)

    return read


def _file_getter(path: str):
    def get():
        with open(path, "rb") as f:
            return pickle.load(f)

    return get


def _unit_reader(units, layout: BlockLayout, num_tasks: int):
    def read(batches):
        for _ in batches:  # the task's input is its index only
            pass
        for path, start, n, code in units[task_partition()[0] :: num_tasks]:
            chunk = layout.read(path, start, n)
            if code is None:
                yield chunk
            else:  # (X, w, bad, ref, code): a keyed store's chunk
                yield (*chunk, None, code) if len(chunk) == 3 else (*chunk, code)

    return read


# ---------------------------------------------------------------------------------------
# On the driver
# ---------------------------------------------------------------------------------------
def local_units(root: str, layout: BlockLayout, parallelism: int) -> list[tuple]:
    """``(file, first row, rows, segment code or None)`` work units covering every block
    file under ``root``: at most about UNIT_BYTES each, and at least UNITS_PER_TASK per
    task (balance)."""
    files = []
    for name in sorted(os.listdir(root)):
        if name.endswith(".bin"):
            path = os.path.join(root, name)
            tail = name[: -len(".bin")].rsplit("-", 1)[-1]
            code = int(tail[1:]) if tail.startswith("s") else None
            files.append((path, layout.rows_in(os.path.getsize(path)), code))
    total = sum(n for _, n, _ in files)
    per_task = -(-total // (UNITS_PER_TASK * max(parallelism, 1)))
    step = max(MIN_UNIT_ROWS, min(unit_rows(layout.d + 1), per_task))
    units = []
    for path, n, code in files:
        units.extend((path, start, min(step, n - start), code) for start in range(0, n, step))
    return units
