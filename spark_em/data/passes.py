"""One pass over the data: the statistics of several summarizers in one Spark job.

:func:`run_pass` is the only way the EM loop, the initialisation and scoring reach the data:
it hands a store (:mod:`spark_em.data.stores`) the pass's payload -- the centre and the
summarizers (:mod:`spark_em.core.estep`, :mod:`spark_em.data.validation`) -- and gets back one row
per Spark task, tree-reduced (:mod:`spark_em.data.reduce`).  Each row has two columns: the
summarizers' packed statistics and, separately, the task's timings.  Several models (nInit
restarts, model-selection candidates) share every scan of the data.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from time import perf_counter

import numpy as np
from pyspark.sql import types as T

from ..core.summarizers import Chunk
from ..progress import PassProfile
from .reduce import packed_batch, packed_bytes, tree_collect

PASS_SCHEMA = T.StructType(
    [T.StructField("stats", T.BinaryType(), False), T.StructField("profile", T.BinaryType(), False)]
)
_PASS_COLUMNS = ("stats", "profile")

# A chunk reader runs inside a task: Arrow batches of the store's frame -> (X, w, bad) or,
# for float32 blocks, (X, w, bad, ref), and in a keyed store (X, w, bad, ref, code) (see
# spark_em.core.summarizers.Chunk).
ChunkReader = Callable[[Iterable], Iterable[tuple]]


def pack_all(stats_list: Sequence, summarizers: Sequence) -> np.ndarray:
    """One flat vector: each summarizer's packed statistics preceded by its length."""
    parts = []
    for s in stats_list:
        flat = s.pack()
        parts += [np.array([flat.shape[0]], dtype=np.float64), flat]
    return np.concatenate(parts) if parts else np.zeros(0)


def split_packed(flat: np.ndarray) -> list[np.ndarray]:
    out, o = [], 0
    while o < flat.shape[0]:
        n = int(flat[o])
        out.append(flat[o + 1 : o + 1 + n])
        o += 1 + n
    return out


def merge_all(merges: Sequence[Callable], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    parts = []
    for m, x, y in zip(merges, split_packed(a), split_packed(b)):
        z = m(x, y)
        parts += [np.array([z.shape[0]], dtype=np.float64), z]
    return np.concatenate(parts) if parts else np.zeros(0)


class TaskStatistics:
    """The statistics one task accumulates: chunks in (:meth:`add`), one packed row out
    (:meth:`packed`: the summarizers' statistics and the task's timings).  ``d`` None: a
    first pass whose tasks find d themselves (:func:`~spark_em.data.arrow_blocks.
    task_dimension`): the statistics are made for the width of the first chunk (0 for a
    task without chunks)."""

    def __init__(self, payload, d: int | None):
        self.t_start = perf_counter()
        self.centre, self.summarizers = payload
        self.stats = None if d is None else self._new(d)
        self.t_kernel = 0.0

    def _new(self, d: int) -> list:
        return [s.new_stats(d) for s in self.summarizers]

    def add(self, X, w, bad, ref=None, code=None) -> None:
        """Add one chunk of rows (``ref``: the reference of float32 blocks; ``code``: the
        segment of its rows in a keyed store; see :class:`~spark_em.core.summarizers.Chunk`)."""
        t0 = perf_counter()
        if self.stats is None:
            self.stats = self._new(X.shape[1])
        chunk = Chunk(X, w, self.centre, bad, ref, code)
        for s, st in zip(self.summarizers, self.stats):
            s.accumulate(st, chunk)
        self.t_kernel += perf_counter() - t0

    def packed(self) -> tuple[np.ndarray, np.ndarray]:
        t_task = perf_counter() - self.t_start
        profile = np.array([1.0, t_task - self.t_kernel, self.t_kernel, t_task])
        stats = self._new(0) if self.stats is None else self.stats
        return pack_all(stats, self.summarizers), profile


def task_partition() -> tuple[int, int]:
    """``(partition index, attempt number)`` of the running Spark task; ``(0, 0)`` outside
    one.  Tasks that read their own share of the data (files, row groups) pick it by index."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    return (ctx.partitionId(), ctx.attemptNumber()) if ctx is not None else (0, 0)


_heap_frozen = False  # in this process, by freeze_worker_heap


def freeze_worker_heap() -> None:
    """Once per reused Python worker: move the objects alive now (modules, functions,
    classes: some 110,000 in a worker that imported numpy, pyarrow and pyspark) to the
    garbage collector's permanent generation (``gc.freeze``).

    PySpark's daemon runs a full ``gc.collect()`` in a reused worker after every task. Over
    those objects it took 40 ms on an idle core and 70-110 ms beside a busy one (strace: the
    next pass's task waited in the worker's socket meanwhile), and the pass a worker runs
    next starts only after it: on local[2], a pass of the EM loop takes 0.1-0.3 s.  Frozen
    objects are still freed by reference counting; a garbage cycle that passes through one
    of them is never collected, and the objects frozen are those a full collection has
    just found alive.  Nothing happens outside a Spark task (a driver calling a task
    function) or in a worker that is not reused (``spark.python.worker.reuse=false``: the
    daemon collects nothing there, and a freeze would cost each task a full collection)."""
    global _heap_frozen
    # a flag, not gc.get_freeze_count(): that walks the permanent generation, 110,000
    # objects, 10 ms a task (py-spy)
    if _heap_frozen or os.environ.get("SPARK_REUSE_WORKER") != "1":
        return
    from pyspark import TaskContext

    if TaskContext.get() is not None:
        gc.collect()
        gc.freeze()
        _heap_frozen = True


def make_task(get_payload: Callable, read_chunks: ChunkReader, d: int | None, arrow: bool = True):
    """The ``mapInArrow`` function of a pass: reads its share of the data through
    ``read_chunks`` and yields one row of packed statistics and timings (``arrow=False``:
    the ``mapPartitions`` function of an RDD pass, whose row is a tuple of bytes).
    ``d`` None: a first pass whose tasks find d themselves (:class:`TaskStatistics`)."""

    def task(batches):
        freeze_worker_heap()
        acc = TaskStatistics(get_payload(), d)
        for chunk in read_chunks(batches):
            acc.add(*chunk)
        packed = acc.packed()
        yield packed_batch(packed, _PASS_COLUMNS) if arrow else tuple(map(packed_bytes, packed))

    return task


def run_pass(
    store, summarizers: Sequence, centre: np.ndarray | None = None, label: str = "pass"
) -> tuple[list, PassProfile]:
    """Statistics of every summarizer over the whole data, in one Spark job.

    ``centre``: rows are centred on it before the summarizers see them (``Chunk.Xc``);
    ``label`` names the job in the Spark UI (classic) or tags it (Connect).  Returns the
    statistics, one per summarizer, and the pass's :class:`PassProfile`.
    """
    t0 = perf_counter()
    summarizers = list(summarizers)
    merges = (partial(merge_all, [s.merge_packed for s in summarizers]), np.add)
    with store.pass_rows((centre, summarizers), label) as rows:
        out = tree_collect(rows, store.num_tasks, merges, store.aggregation_depth, PASS_SCHEMA)
    if out is None:  # a frame without partitions: nothing was read
        d = store.d if store.d is not None else 0  # (a first pass that was to find d)
        return [s.new_stats(d) for s in summarizers], PassProfile(pass_s=perf_counter() - t0)
    flat, prof = out
    stats = [s.unpack(part, store.d) for s, part in zip(summarizers, split_packed(flat))]
    profile = PassProfile(*(float(v) for v in prof), pass_s=perf_counter() - t0)
    return stats, profile
