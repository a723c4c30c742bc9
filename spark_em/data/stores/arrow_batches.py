"""The Arrow batches of a first pass that reads its input through classic Spark, without
Spark's per-row size check where that check can never end a batch.

Spark (4.1 and later) ends each Arrow batch it sends to a Python task at
``spark.sql.execution.arrow.maxRecordsPerBatch`` rows (10,000 by default) or when the batch
reaches ``spark.sql.execution.arrow.maxBytesPerBatch`` bytes (64 MiB), whichever comes first.
For the bytes it measures the batch again after every row (``ArrowWriter.sizeInBytes``): some
15 % of the JVM's samples in a first pass over 1M x 16 cached rows (Java Flight Recorder).
It skips the check only where the byte limit is ``Int.MaxValue``, a setting of the session
that holds for every Arrow operator of a query.

So the first pass reads its input in a clone of the user's session
(``SparkSession.cloneSession``: its settings, temporary views and functions copied) whose
byte limit is ``Int.MaxValue`` only where the check cannot end any batch of that query:

* every row has d values: the features are listed columns (``x`` is their array) -- not a
  vector column (its ML attributes are not enforced), nor where d is a guess (an initial
  model's, the most frequent length), nor with a segment key (a string of any length) --
  so that ``maxRecordsPerBatch`` rows of :func:`row_bytes` bytes stay below the byte limit;
* the pass's statistics rows are merged on the driver, with no reduce level (a
  ``mapInArrow`` over rows that hold the validation sample): at most
  :data:`~spark_em.data.reduce.DRIVER_MERGE_ROWS` tasks (:func:`first_pass_row_bytes`);
* the input's plan runs no Python of its own (a pandas or Arrow UDF, ``mapInPandas``,
  ``mapInArrow``, a Python UDTF) whose batches the limit also bounds -- nor in the plan of a
  cache it reads, which refills the cache in the same job -- and no RDD, whose lineage the
  plan does not show (:func:`_runs_python`).

The same batches, then, without the check; the user's session is not changed, and each fit
has its own clone.  After the first pass the clone gets the user's byte limit back
(:func:`without_size_check` is a context manager around the pass), for any later query in
it.  Elsewhere -- Spark Connect, a Spark without the limit or without ``cloneSession`` --
the input is read as it is.  One difference a user can see: ``spark.interruptAll()`` of the
user's session does not stop the first pass's jobs, which carry the clone's session tag
(job tags added with ``spark.addTag`` are copied, ``sc.cancelAllJobs()`` stops them; the
later passes of Spark's cache already ran in a session of their own).

Measured on local[2], 1M x 16 cached rows given as 16 feature columns, K=8 full, median of
15 first passes each way, alternated in one process: 0.515 -> 0.449 s on local files,
0.636 -> 0.546 s on Spark's cache (0.540 -> 0.451 and 0.712 -> 0.570 s at the first version,
without the plan check's 8-23 ms).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

from pyspark.sql import DataFrame

from ...core.tuning import TASKS_PER_CORE
from ..reduce import DRIVER_MERGE_ROWS

log = logging.getLogger("spark_em")

MAX_BYTES_PER_BATCH = "spark.sql.execution.arrow.maxBytesPerBatch"
NO_BYTE_LIMIT = 2**31 - 1  # Int.MaxValue: Spark's writer then never measures the batch
# the Python operators of a physical plan (ArrowEvalPython, BatchEvalPython, MapInPandas,
# MapInArrow, FlatMapGroupsInPandas/InArrow, ArrowWindowPython, AggregateInPandas,
# TransformWithStateInPySpark, Python UDTFs and data sources...), whose Arrow batches the
# same limit bounds, and the scans of RDDs, whose lineage a plan does not show (a column
# or function named so is a false alarm: the check stays)
_PYTHON = re.compile(r"Python|Pandas|InArrow|PySpark|ExistingRDD|ExternalRDD|RDDScan")


def row_bytes(d: int | None, weighted: bool, keyed: bool) -> int | None:
    """An upper bound of the Arrow bytes of one row of a first pass's input (``x``: d
    float64 values, their validity bits, the list's offset and validity bit; ``w``: a
    float64 and its bit; the struct's bit, with room to spare); None where there is none:
    d not known, or a segment key (a string of any length)."""
    if d is None or keyed:
        return None
    return 9 * d + (16 if weighted else 0) + 32


def first_pass_row_bytes(
    connect: bool, parallelism: int, d: int | None, exact: bool, weighted: bool, keyed: bool
) -> int | None:
    """:func:`row_bytes` where a store's first pass may run without the check (classic
    Spark; d from the schema, ``exact``; no reduce level over its statistics rows, which
    needs at most DRIVER_MERGE_ROWS tasks: ``_merged_input`` makes at most TASKS_PER_CORE
    per core); None elsewhere."""
    if connect or not exact or TASKS_PER_CORE * max(parallelism, 1) > DRIVER_MERGE_ROWS:
        return None
    return row_bytes(d, weighted, keyed)


@contextlib.contextmanager
def without_size_check(frame: DataFrame, bytes_per_row: int | None) -> Iterator[DataFrame]:
    """Within the block: ``frame`` in a clone of its session whose Arrow byte limit is
    Int.MaxValue, where the session's record limit keeps every batch of rows of at most
    ``bytes_per_row`` bytes below its byte limit and the plan runs no Python of its own;
    else ``frame`` itself (see the module's docstring).  On leaving the block the clone gets
    the user's limit back, for any later query in it (never in place of the block's
    error)."""
    clone, limit = None, None
    if bytes_per_row is not None:
        try:
            session = frame.sparkSession
            jsession = session._jsparkSession
            conf = jsession.sessionState().conf()
            records, limit = int(conf.arrowMaxRecordsPerBatch()), int(conf.arrowMaxBytesPerBatch())
            if limit < NO_BYTE_LIMIT and 0 < records and records * bytes_per_row < limit:
                if not _runs_python(frame):
                    clone = jsession.cloneSession()
                    clone.conf().set(MAX_BYTES_PER_BATCH, str(NO_BYTE_LIMIT))
                    jdf = session._jvm.org.apache.spark.sql.classic.Dataset.ofRows(
                        clone, frame._jdf.queryExecution().analyzed()
                    )
                    frame = DataFrame(jdf, session)
        except Exception as exc:  # an older Spark: the input as it is, as correct
            log.info("spark-em: the first pass keeps Spark's Arrow size check (%s)", exc)
            clone = None
    try:
        yield frame
    finally:
        if clone is not None:
            with contextlib.suppress(Exception):
                clone.conf().set(MAX_BYTES_PER_BATCH, str(limit))


def _runs_python(frame: DataFrame) -> bool:
    """Whether the physical plan Spark would run for ``frame`` may run Python, or an RDD
    whose lineage it does not show: the names in its tree as ``explain`` prints it, which
    takes in the plans of the caches it reads (a cache refills a missing partition in the
    same job), its subqueries and an adaptive plan's first form.  Planning only, no job:
    8-23 ms at a fit's first pass (the plan's JSON, with every cache's, took 0.1 s)."""
    plan = frame._jdf.queryExecution().executedPlan().toString()
    return _PYTHON.search(plan) is not None
