"""What every block store is: where one fit's validated feature blocks live, how a pass's
payload reaches the tasks, how a task reads its chunks, and the release of all of it.

A store is a context manager: leaving it -- after a fit, an error, or a
``KeyboardInterrupt`` between iterations -- releases every file, cache and broadcast
variable it made.  The first pass (:meth:`BlockStore.open`) reads the input, validates it
and puts the blocks in place; later passes (:func:`spark_em.data.passes.run_pass`) read them.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from ...core.precision import FLOAT64, Precision
from ...core.tuning import TASKS_PER_CORE
from ..env import SparkEnv
from ..passes import PASS_SCHEMA, make_task, run_pass
from ..validation import ValidationStats
from .arrow_batches import first_pass_row_bytes, without_size_check


@dataclass(frozen=True)
class StoreInput:
    """What every store is made from: the session and its kind, the feature dimension, the
    input as ``(x array<double>[, w double])`` rows, the reduce's depth, the row groups of a
    plain Parquet scan for a store that reads them itself (the Parquet store's passes, the
    local-file store's first pass: :class:`~spark_em.data.stores.parquet.ParquetLayout`),
    the type of the stored blocks (the ``dtype`` Param, :mod:`spark_em.core.precision`),
    whether NaN and null elements are missing values (kept as NaN in the blocks)
    rather than invalid, and ``keys``: the segment keys of a fit with segmentCol
    (``selected`` then has a column ``s``, each row's key), which a store that keeps
    each segment's rows apart (``BlockStore.keyed``) gives its chunks as codes (indices in
    ``keys``); ``weighted``: whether the rows have a weightCol (``selected``'s column ``w``;
    without one every weight is 1, no column of them is selected, and a store need not
    keep them).  ``d`` None (the input read through Spark, without
    segments): the first pass's tasks find it (:func:`~spark_em.data.arrow_blocks.
    task_dimension`) and the opened store takes theirs; ``d_exact``: every row has ``d``
    values (listed feature columns), not a first guess or a declared size that rows of
    another length may disprove."""

    spark: SparkSession
    env: SparkEnv
    d: int | None
    selected: DataFrame
    aggregation_depth: int = 2
    parquet: object = None
    precision: Precision = FLOAT64
    missing: bool = False  # missingValues="marginalize": NaN and nulls are missing values
    keys: tuple | None = None
    weighted: bool = True  # False: no weightCol, every row's weight is 1
    d_exact: bool = False  # every row has d values (listed feature columns)


class BlockStore:
    """Base class; subclasses set ``name`` and implement ``_first_pass_rows``,
    ``_pass_rows`` and ``_release``.  Every store is built from one :class:`StoreInput`."""

    name = "?"
    # whether every chunk a pass reads belongs to one segment (Chunk.code): the store keeps
    # each segment's rows apart, so a pass can give per-segment statistics (KeyedSummarizer)
    keyed = False

    def __init__(self, source: StoreInput):
        self.spark, self.env, self.d = source.spark, source.env, source.d
        self.aggregation_depth = source.aggregation_depth
        self.precision = source.precision
        self.missing = source.missing
        self.fit_id = uuid.uuid4().hex[:12]  # this fit's own identity (files, caches, tags)
        self.num_tasks = max(self.env.default_parallelism, 1)
        # a bound of the bytes of one input row, where the first pass may read the input
        # without Spark's per-row Arrow size check (.arrow_batches)
        self._row_bytes = first_pass_row_bytes(
            self.env.connect,
            self.env.default_parallelism,
            source.d,
            source.d_exact,
            source.weighted,
            source.keys is not None,
        )
        self._opened = False
        self._released = False
        self.first_pass = None  # the first pass's PassProfile, once opened

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> BlockStore:
        return self

    def __exit__(self, *exc) -> bool:
        self.release()
        return False

    def open(self, validator, also=(), centre=None) -> tuple[ValidationStats, list]:
        """The first pass: read the input, put the blocks in place, return what
        ``validator`` (a :class:`~spark_em.data.validation.ValidationSummarizer`) learned
        and the statistics of the summarizers ``also`` (a warm start's first E-step), which
        see the valid rows centred on ``centre`` in the same pass.  A store made without d
        takes the one its tasks agreed on (``stats.d`` >= 1); where they found none (every
        row null), or disagreed, it stays without d, to be released (no pass can read it):
        the caller finds d otherwise."""
        (stats, *more), self.first_pass = run_pass(
            self, [validator, *also], centre, "validate and prepare the data"
        )
        self._opened = True
        if self.d is None and stats.d >= 1:
            self.d = int(stats.d)
        if self.d is not None:
            self._after_open(stats)
        return stats, more

    def release(self) -> None:
        """Remove everything the store made; safe to call twice."""
        if not self._released:
            self._released = True
            self._release()

    # ------------------------------------------------------------------ passes
    @contextlib.contextmanager
    def pass_rows(self, payload, label: str):
        """The DataFrame of one pass: one row of packed statistics per task."""
        if self._released:
            raise RuntimeError("this block store was released")
        with self._job_label(label):
            if self._opened:
                with self._pass_rows(payload) as rows:
                    yield rows
            else:
                with self._first_pass_rows(payload) as rows:
                    yield rows

    # ------------------------------------------------------------------ for subclasses
    def _after_open(self, stats: ValidationStats) -> None:
        pass

    @contextlib.contextmanager
    def _merged_input(self, frame) -> Iterator[DataFrame]:
        """For the first pass of a store that copies its input: ``frame`` with its
        partitions merged into at most TASKS_PER_CORE tasks per core, so that the
        statistics rows, the reduce (and the files) do not grow with the input's partition
        count; ``num_tasks`` is that bound.  Read, within the block, without Spark's
        per-row Arrow size check where that check cannot end a batch
        (:func:`~.arrow_batches.without_size_check`)."""
        self.num_tasks = max(1, TASKS_PER_CORE * self.env.default_parallelism)
        with without_size_check(frame, self._row_bytes) as read:
            yield read.coalesce(self.num_tasks)

    def _index_job(self, get_payload, read_chunks):
        """The rows of a pass whose ``num_tasks`` tasks need only their index (they read
        their own share of files): an RDD of one-element partitions where there is a
        SparkContext -- the same job as a DataFrame costs about 0.03 s more per pass
        (planning it, the Arrow round trip of its input: 0.273-0.285 against 0.247 s a
        pass at 1M x 16, K=8, Parquet store) -- else (Spark Connect) ``mapInArrow`` over
        ``spark.range``."""
        n = self.num_tasks
        if self.env.has_spark_context:
            fn = make_task(get_payload, read_chunks, self.d, arrow=False)
            return self.spark.sparkContext.parallelize(range(n), n).mapPartitions(fn)
        fn = make_task(get_payload, read_chunks, self.d)
        return self.spark.range(0, n, 1, n).mapInArrow(fn, PASS_SCHEMA)

    @contextlib.contextmanager
    def _shipped(self, payload):
        """A getter of ``payload`` for the tasks: a broadcast variable, destroyed after the
        pass, where there is a SparkContext; the function's closure on Spark Connect."""
        if self.env.has_spark_context:
            bc = self.spark.sparkContext.broadcast(payload)
            try:
                yield lambda: bc.value
            finally:
                bc.destroy()
        else:
            yield lambda: payload

    @contextlib.contextmanager
    def _job_label(self, label: str):
        """Name the pass's jobs: a job description (classic, in the Spark UI), or a job tag
        (Spark Connect); the thread's previous value is restored afterwards."""
        text = f"spark-em {self.fit_id}: {label}"
        if self.env.connect:
            tag = "spark-em-" + self.fit_id + "-" + re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")
            try:
                self.spark.addTag(tag)
            except Exception:  # a server without tags: the jobs run unnamed
                yield
                return
            try:
                yield
            finally:
                self.spark.removeTag(tag)
            return
        sc = self.spark.sparkContext
        key = "spark.job.description"
        old = sc.getLocalProperty(key)
        sc.setLocalProperty(key, text)
        try:
            yield
        finally:
            sc.setLocalProperty(key, old)

    def _first_pass_rows(self, payload):
        raise NotImplementedError

    def _pass_rows(self, payload):
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError
