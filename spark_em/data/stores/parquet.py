"""Parquet files read by the tasks themselves: the store of plain Parquet scans.

When the DataFrame given to ``fit`` is a plain scan of Parquet files
(:mod:`spark_em.data.stores.parquet_scan`), every pass is one Spark job over the files' row
groups whose tasks read them directly with pyarrow and decode the features in the task
(Spark ML vectors dense and sparse, numeric arrays, numeric columns): no Spark cache, no
transfer through the block manager into Python (an RDD job of one element per task on
classic Spark, a ``mapInArrow`` job on Spark Connect: :meth:`BlockStore._index_job`).  A
first, small job lists the row groups on the executors, which also shows whether they can
open the files at all.  On a local master the local-file store's first pass reads a plain
scan's row groups the same way (listed by the driver, :func:`list_row_groups_here`) before
it writes its block files.  Row groups are spread over the tasks by size (largest first,
each to the least loaded task).  Parameters travel in a broadcast variable (classic) or the
function's closure (Spark Connect).
"""

from __future__ import annotations

import contextlib
import heapq
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...core.tuning import unit_rows
from ..arrow_blocks import (
    MAX_ABS_VALUE,
    columns_to_matrix,
    combine_rows,
    list_to_matrix,
    vectors_to_matrix,
)
from ..passes import task_partition
from .base import BlockStore
from .parquet_scan import ParquetScan


class ParquetUnavailable(Exception):
    """The tasks cannot read the input's Parquet files themselves; the message says why."""


@dataclass(frozen=True)
class ParquetLayout:
    """The row groups of a plain Parquet scan as the executors (or, for a local master,
    the driver) listed them: ``units``
    ``(path, row group, rows)``, how the features are stored (``spec``) and the feature
    length of the first non-null row the listing saw (``d``, None if it saw none)."""

    units: tuple
    spec: ColumnSpec
    d: int | None


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

    def __init__(self, source):
        super().__init__(source)
        layout: ParquetLayout = source.parquet
        self.spec = layout.spec
        self.assignment = assign(layout, self.env.default_parallelism)
        self.num_tasks = len(self.assignment)
        self._trusted = False  # every row checked until the first pass found none invalid

    def _after_open(self, stats) -> None:
        # The files do not change during the fit: when the first pass found no invalid
        # row, later passes decode without checking each value again.
        self._trusted = not stats.bad.any() and not self.missing

    @contextlib.contextmanager
    def _pass_rows(self, payload):
        with self._shipped(payload) as get_payload:
            reader = read_row_groups(
                self.assignment,
                self.spec,
                self.d,
                self._trusted,
                self.precision.max_value,
                self.missing,
            )
            yield self._index_job(get_payload, reader)

    _first_pass_rows = _pass_rows  # every pass reads the files; the first also validates

    def _release(self) -> None:
        pass  # nothing stored: broadcasts are destroyed after each pass


def assign(layout: ParquetLayout, parallelism: int) -> list[list[tuple[str, int]]]:
    """The row groups ``(path, index)`` of each task of a pass over ``layout``: one task per
    core (at least one, at most one per row group), balanced by :func:`_balance`."""
    units = list(layout.units)
    return _balance(units, max(1, min(parallelism, len(units))))


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
    return pq.ParquetFile(path, memory_map=True)


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


def _features(batch: pa.RecordBatch, spec: ColumnSpec, d: int, missing: bool = False):
    cols = [batch.column(j) for j in range(len(spec.names))]
    if spec.kind == "vector":
        return vectors_to_matrix(cols[0], d, missing)
    if spec.kind == "array":
        arr = cols[0]
        if not pa.types.is_float64(arr.type.value_type):
            arr = arr.cast(pa.list_(pa.float64()), safe=False)  # as Spark: big ints round
        return list_to_matrix(arr, d, missing)
    return columns_to_matrix(cols, d, missing)


def _trusted_rows(batch: pa.RecordBatch, spec: ColumnSpec, d: int):
    """Rows known to be valid (the first pass checked every one): decoded without checks."""
    n = batch.num_rows
    if spec.kind == "array":
        values = batch.column(0).flatten()
        X = values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False).reshape(n, d)
    elif spec.kind == "columns":
        X = np.column_stack(
            [batch.column(j).to_numpy(zero_copy_only=False) for j in range(len(spec.names))]
        ).astype(np.float64, copy=False)
    else:
        return combine_rows(
            *vectors_to_matrix(batch.column(0), d), batch.column(1) if spec.weight else None
        )
    w = (
        batch.column(len(spec.names)).to_numpy(zero_copy_only=False).astype(np.float64)
        if spec.weight
        else np.ones(n)
    )
    return X, w, None


def read_row_groups(
    assignment,
    spec: ColumnSpec,
    d: int,
    trusted: bool = False,
    max_value: float = MAX_ABS_VALUE,
    missing: bool = False,
):
    """The chunk reader of a pass: this task's row groups, decoded in record batches of
    about UNIT_BYTES (``trusted``: without checking values the first pass checked;
    ``max_value``: features beyond it are invalid, :mod:`spark_em.core.precision`;
    ``missing``: NaN and nulls are missing values).  The rows stay float64: a float32
    kernel centres them in float64 before the cast."""

    def read(batches):
        for _ in batches:  # the task's input is its index only
            pass
        share = assignment[task_partition()[0]]
        rows = unit_rows(d)
        current, pf, columns = None, None, None
        for path, index in share:
            if path != current:
                pf = open_parquet(path)
                columns = _physical_names(pf.schema_arrow, spec.columns)
                current = path
            for batch in pf.iter_batches(
                batch_size=rows, row_groups=[index], columns=columns, use_threads=False
            ):
                if trusted:
                    yield _trusted_rows(batch, spec, d)
                    continue
                X, valid, counts = _features(batch, spec, d, missing)
                weights = batch.column(len(spec.names)) if spec.weight else None
                yield combine_rows(X, valid, counts, weights, max_value)

    return read


def _first_length(pf, spec: ColumnSpec, column: str) -> int | None:
    """The vector/array length of the file's first row whose features are not null."""
    if spec.kind == "columns":
        return None
    for batch in pf.iter_batches(batch_size=1024, columns=[column], use_threads=False):
        arr = batch.column(0)
        if spec.kind == "vector":
            sizes = pc.if_else(
                pc.equal(arr.field("type"), 0),
                arr.field("size"),
                pc.list_value_length(arr.field("values")),
            )
            sizes = pc.if_else(
                arr.is_null(), pa.scalar(None, pa.int32()), pc.cast(sizes, pa.int32())
            )
        else:
            sizes = pc.list_value_length(arr)
        valid = sizes.drop_null()
        if len(valid):
            return int(valid[0].as_py())
    return None


def _list_files(batches, spec: ColumnSpec):
    paths, groups, rows, errors, dims = [], [], [], [], []
    found = False  # one look at the data per task is enough
    for batch in batches:
        for path in batch.column(0).to_pylist():
            try:
                pf = open_parquet(path)
                names = _physical_names(pf.schema_arrow, spec.columns)
                meta = pf.metadata
                first = None
                if not found and meta.num_rows:
                    first = _first_length(pf, spec, names[0])
                    found = first is not None
                for i in range(meta.num_row_groups):
                    paths.append(path)
                    groups.append(i)
                    rows.append(meta.row_group(i).num_rows)
                    errors.append(None)
                    dims.append(first)
            except Exception as exc:  # reported to the driver, which falls back
                paths.append(path)
                groups.append(-1)
                rows.append(0)
                errors.append(
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                )
                dims.append(None)
    yield pa.RecordBatch.from_arrays(
        [
            pa.array(paths, pa.string()),
            pa.array(groups, pa.int32()),
            pa.array(rows, pa.int64()),
            pa.array(errors, pa.string()),
            pa.array(dims, pa.int32()),
        ],
        ["path", "row_group", "rows", "error", "d"],
    )


def list_row_groups(spark, env, scan: ParquetScan, spec: ColumnSpec) -> ParquetLayout:
    """The row groups of every file of ``scan``, listed by a job on the executors (which
    shows they can open the files), with the feature length of the first non-null row a
    task saw; :class:`ParquetUnavailable` when a task cannot open a file or finds a column
    missing."""
    files = scan.files
    parts = max(1, min(len(files), env.default_parallelism))
    frame = spark.createDataFrame([(f,) for f in files], "path string").repartition(parts)
    table = frame.mapInArrow(
        lambda batches: _list_files(batches, spec),
        "path string, row_group int, rows long, error string, d int",
    ).toArrow()
    return _layout(table, files, spec, "the executors")


def list_row_groups_here(scan: ParquetScan, spec: ColumnSpec) -> ParquetLayout:
    """:func:`list_row_groups` by this process itself, without a job: for a local master,
    whose executors run on this machine and open the same files."""
    batch = pa.RecordBatch.from_arrays([pa.array(list(scan.files), pa.string())], ["path"])
    table = pa.Table.from_batches(list(_list_files([batch], spec)))
    return _layout(table, scan.files, spec, "the driver")


def _layout(table: pa.Table, files, spec: ColumnSpec, lister: str) -> ParquetLayout:
    """The layout from the listing's rows (``_list_files``), files in ``files``' order;
    ``lister`` names who listed them (in the error when one could not be read)."""
    errors = [
        (p, e)
        for p, e in zip(table.column("path").to_pylist(), table.column("error").to_pylist())
        if e
    ]
    if errors:
        path, error = errors[0]
        more = f" (and {len(errors) - 1} more files)" if len(errors) > 1 else ""
        raise ParquetUnavailable(f"{lister} cannot read {path}{more}: {error}")
    paths = table.column("path").to_pylist()
    dims = {p: d for p, d in zip(paths, table.column("d").to_pylist()) if d is not None}
    units = [
        u
        for u in zip(paths, table.column("row_group").to_pylist(), table.column("rows").to_pylist())
        if u[1] >= 0
    ]
    d = next((dims[f] for f in files if dims.get(f) is not None), None)
    return ParquetLayout(tuple(units), spec, d)


def column_spec(df, features, weight_col) -> ColumnSpec:
    """How ``featuresCol``/``weightCol`` are stored, from the DataFrame's schema;
    :class:`ParquetUnavailable` when the tasks cannot decode them."""
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
    raise ParquetUnavailable(f"featuresCol {features!r} has type {dt.simpleString()}")
