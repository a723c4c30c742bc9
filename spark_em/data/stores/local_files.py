"""Local block files: classic Spark whose executors run on this machine (``local[...]``,
``local-cluster[...]``).

The first pass reads the input, validates it and writes each task's valid rows to one file
of rows ``[w, x_1 .. x_d]`` (input partitions merged into at most TASKS_PER_CORE tasks per
core; a plain Parquet scan's row groups read by the tasks themselves with pyarrow, one
task per core, when the driver could list them: :func:`~spark_em.data.stores.parquet_layout`;
with segmentCol and a few segments, one file per task and segment,
``part-<task>-s<code>.bin``, so that every chunk of a pass belongs to one segment: ``keyed``,
:mod:`spark_em.engine.update`): all float64, or --
``dtype="float32"`` -- a float64 weight and float32 features ``x - ref`` after a header
holding the file's float64 reference ``ref`` (the mean of its first batch of rows), so that
the cast loses no digits to an offset of the features (:class:`BlockLayout`). Every later
pass is one job over ``P`` (the default parallelism) tiny partitions whose tasks read their
share of the files directly (from the OS page cache, or from disk when the data exceed
memory): no transfer from Spark's block manager into the Python workers, which costs more
than the E-step itself. The pass's payload goes to a file next to the blocks, so the pass's
job (an RDD of one element per task, :meth:`BlockStore._index_job`) is built once per fit.

The files live in Spark's own per-application local directory (under ``spark.local.dir`` /
``SPARK_LOCAL_DIRS``), which Spark deletes when the application ends, also on SIGTERM (the
Python driver dies, pyspark's JVM sees its stdin close and exits through its shutdown hooks;
tested); a directory left by a driver killed outright (SIGKILL) is removed by the next fit
under any of the same local roots, once its owner is gone.  Whether it is gone is decided by
an advisory lock (``flock``) the store holds on the directory's ``owner.json`` for the fit's
whole life: the kernel drops it when the owner dies however it dies, and a live owner holds
it in any PID namespace (containers sharing one local directory), where its pid means
nothing (:class:`OwnerLock`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import os
import pickle
import shutil
import tempfile

import numpy as np
import pyarrow as pa

from ...core.precision import Precision
from ...core.tuning import MIN_UNIT_ROWS, UNITS_PER_TASK, unit_rows
from ..arrow_blocks import decode_rows
from ..passes import PASS_SCHEMA, make_task, task_partition
from ..segments import key_codes
from .base import BlockStore
from .parquet import balance, read_row_groups

PREFIX = "spark-em-blocks-"
_OWNER = "owner.json"


class LocalFileStore(BlockStore):
    name = "local"

    def __init__(self, source):
        super().__init__(source)
        self.selected = source.selected  # (x array<double>, w double[, s: segment key])
        self.keys = source.keys
        self.keyed = source.keys is not None
        # a plain Parquet scan's row groups (not with segments: the files' reader has no
        # segment keys), read directly by the first pass
        self.parquet = source.parquet if not self.keyed else None
        root = self.env.local_dir or tempfile.gettempdir()
        for local_root in _local_roots(self.spark, root):
            remove_stale_block_dirs(local_root)
        self.block_dir = tempfile.mkdtemp(prefix=f"{PREFIX}{self.fit_id}-", dir=root)
        self._owner = OwnerLock.take(self.block_dir)
        self._params = os.path.join(self.block_dir, "params.pkl")
        self._frame = None

    @contextlib.contextmanager
    def _first_pass_rows(self, payload):
        if self.parquet is not None:
            yield self._parquet_first_pass(payload)
            return
        # One job reads the (merged) input, validates it and writes the block files.
        frame = self._merged_input(self.selected)
        self.num_tasks = frame.rdd.getNumPartitions()  # classic: the exact count is cheap
        layout = BlockLayout(self.d, self.precision)
        writer = _input_writer(self.block_dir, layout, self.missing, self.keys)
        fn = make_task(lambda: payload, writer, self.d)
        yield frame.mapInArrow(fn, PASS_SCHEMA)

    def _parquet_first_pass(self, payload):
        """The first pass over a plain Parquet scan: the tasks read their row groups with
        pyarrow (as the Parquet store's passes do), validate the rows and write the block
        files -- no transfer of the rows from Spark into Python, which is most of that
        pass otherwise."""
        units = list(self.parquet.units)
        self.num_tasks = max(1, min(self.env.default_parallelism, len(units)))
        reader = read_row_groups(
            balance(units, self.num_tasks),
            self.parquet.spec,
            self.d,
            False,
            self.precision.max_value,
            self.missing,
        )
        layout = BlockLayout(self.d, self.precision)
        return self._index_job(lambda: payload, _chunk_writer(self.block_dir, layout, reader))

    def _after_open(self, stats) -> None:
        layout = BlockLayout(self.d, self.precision)
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
    """The rows of a block file: a float64 weight, then the d features in the store's type
    (``precision``); float32 files start with a header of d float64 values, the reference
    ``ref`` their features are stored about (``x - ref``, computed in float64)."""

    def __init__(self, d: int, precision: Precision):
        self.d = d
        self.single = precision.dtype != np.float64
        self.row = np.dtype(
            [("w", "<f8"), ("x", np.dtype(precision.dtype).newbyteorder("<"), (d,))]
        )
        self.header = 8 * d if self.single else 0
        self.max_value = precision.max_value

    def rows_in(self, size: int) -> int:
        """The rows of a file of ``size`` bytes."""
        return max(0, size - self.header) // self.row.itemsize

    def encode(self, X: np.ndarray, w: np.ndarray, ref: np.ndarray | None) -> np.ndarray:
        rows = np.empty(X.shape[0], dtype=self.row)
        rows["w"] = w
        if ref is None:
            rows["x"] = X
        else:
            rows["x"] = X - ref  # in float64, rounded once
        return rows

    def read(self, path: str, start: int, n: int):
        """``(X (n, d), w (n,), None)``, with the file's ``ref`` for float32 rows."""
        rows = np.fromfile(path, self.row, count=n, offset=self.header + start * self.row.itemsize)
        w = np.ascontiguousarray(rows["w"])
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

    def read(batches):
        writer = _BlockFileWriter(block_dir, layout)
        try:
            for batch in batches:
                X, w, bad = decode_rows(
                    batch.column(0), batch.column(1), layout.d, layout.max_value, missing
                )
                writer.write(X, w)
                yield X, w, bad
        except BaseException:
            writer.abort()
            raise
        writer.close()

    return read


def _chunk_writer(block_dir: str, layout: BlockLayout, read_chunks):
    """The first pass's chunk reader over ``read_chunks`` (decoded ``(X, w, bad)``
    chunks): each task's valid rows written to its block file as they pass."""

    def read(batches):
        writer = _BlockFileWriter(block_dir, layout)
        try:
            for X, w, bad in read_chunks(batches):
                writer.write(X, w)
                yield X, w, bad
        except BaseException:
            writer.abort()
            raise
        writer.close()

    return read


def _keyed_input_writer(block_dir: str, layout: BlockLayout, missing: bool, keys):
    """The first pass of a store that keeps the segments apart: each batch's rows split
    by segment (the third column, coded by its index in ``keys``), each segment's to its
    own file, each segment's chunk yielded with its code."""

    def read(batches):
        writers: dict[int, _BlockFileWriter] = {}
        coded = key_codes(keys)
        try:
            for batch in batches:
                codes = coded(batch.column(2))
                present = np.unique(codes)
                if present.size and present[0] < 0:
                    raise ValueError(
                        "a row's segment key is not among the keys the update found in its "
                        "input (did the input change during the update?)"
                    )
                for code in present.tolist():
                    part = batch if present.size == 1 else batch.filter(pa.array(codes == code))
                    X, w, bad = decode_rows(
                        part.column(0), part.column(1), layout.d, layout.max_value, missing
                    )
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


def _local_roots(spark, app_dir: str) -> list[str]:
    """Every configured local root (``SPARK_LOCAL_DIRS`` / ``spark.local.dir`` may name
    several; Spark puts this application's directory in one of them), else the parent of
    ``app_dir``."""
    roots = {os.path.dirname(os.path.abspath(app_dir))}
    try:
        sc = spark.sparkContext
        dirs = sc._jvm.org.apache.spark.util.Utils.getConfiguredLocalDirs(sc._jsc.sc().conf())
        roots.update(os.path.abspath(str(d)) for d in dirs)
    except Exception:  # only the application directory's own root is swept
        pass
    return sorted(roots)


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, Linux), to tell a reused pid."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class OwnerLock:
    """An exclusive ``flock`` on a block directory's ``owner.json``, held (by an open file
    descriptor) from the directory's creation to its removal.  The record says who holds it
    (pid, its start time, host) for people; the lock alone says whether the owner lives.

    The file is written and locked under a temporary name, then renamed into place: a sweep
    never finds an ``owner.json`` that is not locked yet."""

    def __init__(self, fd: int):
        self.fd = fd

    @classmethod
    def take(cls, block_dir: str) -> OwnerLock:
        pid = os.getpid()
        tmp = os.path.join(block_dir, f".{_OWNER}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            record = {"pid": pid, "start": _start_time(pid), "host": os.uname().nodename}
            os.write(fd, json.dumps({**record, "lock": "flock"}).encode())
            os.replace(tmp, os.path.join(block_dir, _OWNER))
        except BaseException:
            os.close(fd)
            raise
        return cls(fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the lock
            self.fd = -1


def _lock_held(path: str) -> bool | None:
    """Whether someone holds the ``flock`` of ``path`` (None: it cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        return None
    finally:
        os.close(fd)
    return False


def _owner_alive(block_dir: str) -> bool:
    path = os.path.join(block_dir, _OWNER)
    try:
        with open(path) as fh:
            owner = json.load(fh)
        pid = int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        # no owner file: a directory being created right now, or one from an older version;
        # only old enough ones are taken for stale
        try:
            import time

            return time.time() - os.path.getmtime(block_dir) < 3600
        except OSError:
            return False
    if owner.get("lock") == "flock":
        # the lock decides: the kernel dropped it if the owner died, in any PID namespace
        return _lock_held(path) is not False
    # an owner record of an older version (no lock): its pid, in this PID namespace
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    start = owner.get("start")
    return start is None or _start_time(pid) in (None, start)


def remove_stale_block_dirs(local_root: str) -> list[str]:
    """Remove block directories under ``local_root`` (in Spark's per-application
    directories ``spark-*/`` or directly) whose owner process is gone; returns them."""
    removed = []
    for pattern in (f"spark-*/{PREFIX}*", f"{PREFIX}*"):
        for path in glob.glob(os.path.join(local_root, pattern)):
            if os.path.isdir(path) and not _owner_alive(path):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed
