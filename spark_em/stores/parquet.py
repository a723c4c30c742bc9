"""Parquet files read by the tasks themselves: the store of plain Parquet scans.

When the DataFrame given to ``fit`` is a plain scan of Parquet files
(:mod:`spark_em.stores.parquet_scan`), every pass is one Spark job over the files' row
groups whose tasks read them directly with pyarrow and decode the features in the task
(Spark ML vectors dense and sparse, numeric arrays, numeric columns): no Spark cache, no
transfer through the block manager into Python.  A first, small job lists the row groups on
the executors, which also shows whether they can open the files at all.  Row groups are
spread over the tasks by size (largest first, each to the least loaded task).  Parameters
travel in a broadcast variable (classic) or the function's closure (Spark Connect).
"""

from __future__ import annotations

import contextlib
import heapq
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..arrow_blocks import columns_to_matrix, combine_rows, list_to_matrix, vectors_to_matrix
from ..passes import PASS_SCHEMA, make_task
from ..tuning import unit_rows
from .base import BlockStore
from .parquet_scan import ParquetScan


class ParquetUnavailable(Exception):
    """The files cannot be read by the tasks; the message says why."""


@dataclass(frozen=True)
class ColumnSpec:
    """How the features (and weights) are stored: ``kind`` is ``vector`` (Spark ML vector
    struct), ``array`` (numeric list) or ``columns`` (one numeric column per feature);
    ``names`` the columns of the features, ``weight`` the weight column or None."""

    kind: str
    names: tuple[str, ...]
    weight: str | None

    @property
    def columns(self) -> list[str]:
        return list(self.names) + ([self.weight] if self.weight else [])


class ParquetStore(BlockStore):
    name = "parquet"

    def __init__(self, spark, env, d, aggregation_depth, scan: ParquetScan, spec: ColumnSpec):
        super().__init__(spark, env, d, aggregation_depth)
        self.spec = spec
        units = _list_row_groups(spark, env, scan.files, spec)
        self.num_tasks = max(1, min(env.default_parallelism, len(units)))
        self.assignment = _balance(units, self.num_tasks)
        self.files = len(scan.files)
        self.row_groups = len(units)

    @contextlib.contextmanager
    def _pass_rows(self, payload):
        with self._shipped(payload) as get_payload:
            reader = read_row_groups(self.assignment, self.spec, self.d)
            fn = make_task(get_payload, reader, self.d)
            n = self.num_tasks
            yield self.spark.range(0, n, 1, n).mapInArrow(fn, PASS_SCHEMA)

    _first_pass_rows = _pass_rows  # every pass reads the files; the first also validates

    def _release(self) -> None:
        pass  # nothing stored: broadcasts are destroyed after each pass


def _balance(units: list[tuple[str, int, int]], tasks: int) -> list[list[tuple[str, int]]]:
    """Row groups ``(path, index, rows)`` over ``tasks``: largest first to the least loaded."""
    heap = [(0, t) for t in range(tasks)]
    out: list[list[tuple[str, int]]] = [[] for _ in range(tasks)]
    for path, index, rows in sorted(units, key=lambda u: (-u[2], u[0], u[1])):
        load, t = heapq.heappop(heap)
        out[t].append((path, index))
        heapq.heappush(heap, (load + rows, t))
    for share in out:
        share.sort()  # file order inside a task: sequential reads
    return out


# ---------------------------------------------------------------------------------------
# Inside tasks
# ---------------------------------------------------------------------------------------
def open_parquet(path: str):
    import pyarrow.parquet as pq

    if "://" in path:
        from pyarrow import fs

        filesystem, inner = fs.FileSystem.from_uri(path)
        return pq.ParquetFile(filesystem.open_input_file(inner))
    return pq.ParquetFile(path)


def _physical_names(schema: pa.Schema, wanted: list[str]) -> list[str]:
    """The file's own names of ``wanted`` columns (Spark matches names case-insensitively)."""
    names = schema.names
    out = []
    for name in wanted:
        if name in names:
            out.append(name)
            continue
        folded = [n for n in names if n.lower() == name.lower()]
        if len(folded) != 1:
            raise KeyError(f"has no column {name!r}")
        out.append(folded[0])
    return out


def _features(batch: pa.RecordBatch, spec: ColumnSpec, d: int):
    cols = [batch.column(j) for j in range(len(spec.names))]
    if spec.kind == "vector":
        return vectors_to_matrix(cols[0], d)
    if spec.kind == "array":
        arr = cols[0]
        if not pa.types.is_float64(arr.type.value_type):
            arr = arr.cast(pa.list_(pa.float64()))
        return list_to_matrix(arr, d)
    return columns_to_matrix(cols, d)


def read_row_groups(assignment, spec: ColumnSpec, d: int):
    """The chunk reader of a pass: this task's row groups, decoded in record batches of
    about UNIT_BYTES."""

    def read(batches):
        from pyspark import TaskContext

        for _ in batches:
            pass
        ctx = TaskContext.get()
        share = assignment[ctx.partitionId() if ctx is not None else 0]
        rows = unit_rows(d)
        current, pf, columns = None, None, None
        for path, index in share:
            if path != current:
                pf = open_parquet(path)
                columns = _physical_names(pf.schema_arrow, spec.columns)
                current = path
            for batch in pf.iter_batches(batch_size=rows, row_groups=[index], columns=columns,
                                         use_threads=False):
                X, valid, counts = _features(batch, spec, d)
                weights = batch.column(len(spec.names)) if spec.weight else None
                yield combine_rows(X, valid, counts, weights)

    return read


def _list_files(batches, spec: ColumnSpec):
    paths, groups, rows, errors = [], [], [], []
    for batch in batches:
        for path in batch.column(0).to_pylist():
            try:
                pf = open_parquet(path)
                _physical_names(pf.schema_arrow, spec.columns)
                meta = pf.metadata
                for i in range(meta.num_row_groups):
                    paths.append(path)
                    groups.append(i)
                    rows.append(meta.row_group(i).num_rows)
                    errors.append(None)
            except Exception as exc:  # reported to the driver, which falls back
                paths.append(path)
                groups.append(-1)
                rows.append(0)
                errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    yield pa.RecordBatch.from_arrays(
        [pa.array(paths, pa.string()), pa.array(groups, pa.int32()), pa.array(rows, pa.int64()),
         pa.array(errors, pa.string())],
        ["path", "row_group", "rows", "error"],
    )


def _list_row_groups(spark, env, files, spec: ColumnSpec) -> list[tuple[str, int, int]]:
    """``(path, row group, rows)`` of every row group, listed by a job on the executors;
    :class:`ParquetUnavailable` when a task cannot open a file or finds a column missing."""
    parts = max(1, min(len(files), env.default_parallelism))
    frame = spark.createDataFrame([(f,) for f in files], "path string").repartition(parts)
    table = frame.mapInArrow(
        lambda batches: _list_files(batches, spec),
        "path string, row_group int, rows long, error string",
    ).toArrow()
    errors = [(p, e) for p, e in zip(table.column("path").to_pylist(),
                                     table.column("error").to_pylist()) if e]
    if errors:
        path, error = errors[0]
        more = f" (and {len(errors) - 1} more files)" if len(errors) > 1 else ""
        raise ParquetUnavailable(f"the executors cannot read {path}{more}: {error}")
    return list(zip(table.column("path").to_pylist(), table.column("row_group").to_pylist(),
                    table.column("rows").to_pylist()))


def column_spec(df, features, weight_col) -> ColumnSpec | str:
    """How ``featuresCol``/``weightCol`` are stored, from the DataFrame's schema, or a
    reason why the tasks cannot decode them."""
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import types as T

    schema = df.schema
    if isinstance(features, (list, tuple)):
        return ColumnSpec("columns", tuple(features), weight_col or None)
    dt = schema[features].dataType
    if isinstance(dt, VectorUDT):
        return ColumnSpec("vector", (features,), weight_col or None)
    if isinstance(dt, T.ArrayType):
        return ColumnSpec("array", (features,), weight_col or None)
    if isinstance(dt, T.NumericType):
        return ColumnSpec("columns", (features,), weight_col or None)
    return f"featuresCol {features!r} has type {dt.simpleString()}"
