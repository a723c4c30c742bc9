"""Spark's cache: the store of clusters and Spark Connect when the input is not a plain
Parquet scan.

The first pass turns the input into block rows (:mod:`.cache_blocks`: raw bytes of at most
STORED_BLOCK_BYTES of features each, float64 weights, and the counts of the invalid rows
dropped from them; with ``dtype="float32"`` the features are float32 ``x - ref`` about a
float64 reference ``ref`` of their task -- the mean of its first batch -- stored in each
block row; with segmentCol,
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

from pyspark import StorageLevel
from pyspark.sql import functions as F

from ...core.tuning import BLOCK_ROWS_PER_ARROW_BATCH, unit_rows
from ..passes import PASS_SCHEMA, make_task
from .base import BlockStore
from .cache_blocks import BLOCK_COLUMNS, BLOCK_SCHEMA, encode_blocks, read_blocks

log = logging.getLogger("spark_em")

CACHE_LEVEL = StorageLevel.MEMORY_AND_DISK_DESER
_BATCH_SIZE = "spark.sql.inMemoryColumnarStorage.batchSize"
_ARROW_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"


class SparkCacheStore(BlockStore):
    name = "spark"

    def __init__(self, source):
        super().__init__(source)
        # Connect: the fit's id in the plan, a cache entry no other plan can match (a classic
        # local checkpoint is the fit's own already: no column sent to every task for it)
        selected = source.selected
        if self.env.connect:
            selected = selected.select("*", F.lit(self.fit_id).alias("fit"))
        # the segment keys (segmentCol): each block holds one segment's rows (``keyed``)
        self.keys = source.keys
        self.keyed = source.keys is not None
        self._selected = selected
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
        if self.cached:
            try:
                if not self.env.connect:
                    self._pass_blocks = self._private_blocks()
                    return
                if self._clone is not None:
                    self._clone.conf.set(_ARROW_BATCH, str(BLOCK_ROWS_PER_ARROW_BATCH))
            except Exception as exc:  # the session's own batches: slower, as correct
                log.info(
                    "spark-em: passes read the blocks in the session's Arrow batches (%s)", exc
                )
        self._pass_blocks = self.blocks.select(*BLOCK_COLUMNS)

    def _private_blocks(self):
        """The kept blocks' columns in a new session (classic Spark) whose Arrow batches
        are BLOCK_ROWS_PER_ARROW_BATCH rows."""
        from pyspark.sql import DataFrame

        private = self.spark.newSession()
        private.conf.set(_ARROW_BATCH, str(BLOCK_ROWS_PER_ARROW_BATCH))
        jdf = self.spark._jvm.org.apache.spark.sql.classic.Dataset.ofRows(
            private._jsparkSession, self.blocks._jdf.queryExecution().analyzed()
        )
        return DataFrame(jdf, private).select(*BLOCK_COLUMNS)

    @contextlib.contextmanager
    def _first_pass_rows(self, payload):
        # The blocks and the first pass's statistics come out of one task; this pass reads
        # only the statistics rows, which computes (and keeps) every block on the way.
        with self._shipped(payload) as get_payload, self._merged_input(self._selected) as rows:
            encode = encode_blocks(
                self.d,
                None,
                get_payload,
                self.precision,
                self.missing,
                self.keys,
            )
            self.blocks = self._keep(rows.mapInArrow(encode, BLOCK_SCHEMA))
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
