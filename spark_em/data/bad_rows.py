"""Where a DataFrame's invalid rows are: their exact number by kind over all rows, the
feature columns (or vector positions) that hold the bad values, and one example row named
by an id-like column or by its file and position -- one Spark job, for a message or a
report when rows were refused or skipped (never on a clean fit).

The rows are decoded by the validation pass's own functions
(:mod:`spark_em.data.arrow_blocks`), so the counts by kind are the fit's; the per-column
counts say in how many rows each column holds a null, a NaN or infinity, or a value beyond
the magnitude limit.  The example is the smallest key among the invalid rows (the smallest
id, or the first row of the first file by name), so it does not depend on the partitioning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from .arrow_blocks import BAD_KINDS, MAX_ABS_VALUE, combine_rows, list_to_matrix
from .columns import feature_array, quoted, weight_column

__all__ = ["BadRows", "ELEMENT_KINDS", "find_bad_rows", "id_column"]

ELEMENT_KINDS = ("null_element", "non_finite", "huge_value")  # kinds a column's value has
_ID_NAMES = ("id", "key", "uuid", "row_id", "rowid", "pk")


@dataclass(frozen=True)
class BadRows:
    """``by_kind``: invalid rows by kind (:data:`~spark_em.data.arrow_blocks.BAD_KINDS`,
    only kinds present); ``by_column``: kind -> {column: rows whose value there is of that
    kind} (only columns with some); ``example``: one invalid row (``id=17``, ``row 816 of
    file:/lake/part-0.parquet``) or None; ``rows``: rows looked at."""

    by_kind: dict
    by_column: dict
    example: str | None
    rows: int

    @property
    def total(self) -> int:
        return int(sum(self.by_kind.values()))


def id_column(df: DataFrame) -> str | None:
    """The first column that looks like a row key: named ``id``, ``key``, ``uuid``, ...,
    or ending in ``_id``, of an integer or string type."""
    for field in df.schema.fields:
        name = field.name.lower()
        if (name in _ID_NAMES or name.endswith("_id")) and isinstance(
            field.dataType, (T.IntegralType, T.StringType)
        ):
            return field.name
    return None


def _file_position(df: DataFrame):
    """``(file path, row index in the file)`` columns of a file-source scan, or None."""
    try:
        cols = (F.col("_metadata.file_path"), F.col("_metadata.row_index"))
        _ = df.select(*cols).schema
        return cols
    except Exception:
        return None


def column_names(features, d: int) -> list[str]:
    """The name of each feature position: the listed columns, or ``features[j]``."""
    if isinstance(features, (list, tuple)):
        return list(features)
    return [f"{features}[{j}]" for j in range(d)]


def find_bad_rows(
    df: DataFrame, features, weight_col: str | None, d: int, null_vectors: bool = True
) -> BadRows:
    """The invalid rows of ``df`` (features of dimension ``d``), in one Spark job.
    ``null_vectors``: whether a row whose features are null is invalid (in a fit) or not
    (in scoring, where it gets null outputs)."""
    key = id_column(df)
    position = None if key is not None else _file_position(df)
    key_cols = []
    if key is not None:
        dt = df.schema[key].dataType
        num = isinstance(dt, T.IntegralType)
        key_cols = [
            (quoted(key).cast("long") if num else F.lit(None).cast("long")).alias("k_int"),
            (F.lit(None).cast("string") if num else quoted(key).cast("string")).alias("k_str"),
        ]
    elif position is not None:
        key_cols = [position[1].cast("long").alias("k_int"), position[0].alias("k_str")]
    else:
        key_cols = [
            F.lit(None).cast("long").alias("k_int"),
            F.lit(None).cast("string").alias("k_str"),
        ]
    selected = df.select(
        feature_array(df, features).alias("x"), weight_column(df, weight_col).alias("w"), *key_cols
    )
    n_kinds, n_cols = len(BAD_KINDS), len(ELEMENT_KINDS) * d

    def summarize(batches):
        counts = np.zeros(n_kinds, dtype=np.int64)
        columns = np.zeros(n_cols, dtype=np.int64)
        rows, best = 0, None
        for batch in batches:
            X, valid, kinds = list_to_matrix(batch.column(0), d)
            weights = batch.column(1)
            _, _, bad = combine_rows(X, valid, kinds, weights if weight_col else None)
            counts += bad
            rows += batch.num_rows
            columns += _column_counts(batch.column(0), d)
            w_ok = _weights_valid(weights) if weight_col else np.ones(batch.num_rows, dtype=bool)
            invalid = ~(valid & w_ok)
            if not null_vectors:
                invalid &= ~_null_vectors(batch.column(0))
            if invalid.any():
                best = _smaller(best, _smallest_key(batch, invalid))
        k_int, k_str = best if best is not None else (None, None)
        yield pa.RecordBatch.from_pydict(
            {
                "counts": [counts.tolist()],
                "columns": [columns.tolist()],
                "rows": [rows],
                "k_int": [k_int],
                "k_str": [k_str],
            },
            schema=_OUT,
        )

    out = selected.mapInArrow(summarize, _OUT_DDL).collect()
    counts = np.sum([r["counts"] for r in out], axis=0) if out else np.zeros(n_kinds)
    columns = np.sum([r["columns"] for r in out], axis=0) if out else np.zeros(n_cols)
    keys = [(r["k_str"] or "", r["k_int"] if r["k_int"] is not None else 0) for r in out]
    keys = [k for k, r in zip(keys, out) if r["k_int"] is not None or r["k_str"] is not None]
    names = column_names(features, d)
    by_column = {}
    for i, kind in enumerate(ELEMENT_KINDS):
        per = columns[i * d : (i + 1) * d]
        found = {names[j]: int(per[j]) for j in np.flatnonzero(per)}
        if found:
            by_column[kind] = found
    if not null_vectors:
        counts[BAD_KINDS.index("null_vector")] = 0
    return BadRows(
        by_kind={k: int(c) for k, c in zip(BAD_KINDS, counts) if c},
        by_column=by_column,
        example=_describe_key(min(keys), key, position is not None) if keys else None,
        rows=int(sum(r["rows"] for r in out)),
    )


_OUT = pa.schema(
    [
        ("counts", pa.list_(pa.int64())),
        ("columns", pa.list_(pa.int64())),
        ("rows", pa.int64()),
        ("k_int", pa.int64()),
        ("k_str", pa.string()),
    ]
)
_OUT_DDL = "counts array<long>, columns array<long>, rows long, k_int long, k_str string"


def _null_vectors(arr) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.is_null().to_numpy(zero_copy_only=False)


def _weights_valid(weights) -> np.ndarray:
    from .arrow_blocks import weights_to_numpy

    return weights_to_numpy(weights)[1]


def _column_counts(arr, d: int) -> np.ndarray:
    """Per :data:`ELEMENT_KINDS` and position: rows of length ``d`` whose value there is
    null, NaN or infinite, or beyond the magnitude limit; ``(3 d,)``."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    out = np.zeros(len(ELEMENT_KINDS) * d, dtype=np.int64)
    if n == 0 or d == 0:
        return out
    null_rows = arr.is_null().to_numpy(zero_copy_only=False)
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
    values = arr.flatten()
    nulls = values.is_null().to_numpy(zero_copy_only=False)
    vals = pc.fill_null(values, 0.0).to_numpy(zero_copy_only=False).astype(np.float64)
    row_of_value = np.repeat(np.arange(n), np.where(null_rows, 0, lengths))
    keep = (~null_rows & (lengths == d))[row_of_value]
    V, N = vals[keep].reshape(-1, d), nulls[keep].reshape(-1, d)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(V)
        out[:d] = N.sum(axis=0)
        out[d : 2 * d] = (~N & ~finite).sum(axis=0)
        out[2 * d :] = (finite & (np.abs(V) > MAX_ABS_VALUE)).sum(axis=0)
    return out


def _smallest_key(batch: pa.RecordBatch, invalid: np.ndarray):
    """``(k_int, k_str)`` of the invalid row with the smallest ``(k_str, k_int)``, or None."""
    mask = pa.array(invalid)
    k_int = batch.column(2).filter(mask)
    k_str = batch.column(3).filter(mask)
    if k_int.null_count == len(k_int) and k_str.null_count == len(k_str):
        return None
    if k_str.null_count < len(k_str):
        smallest = pc.min(k_str).as_py()
        k_int = k_int.filter(pc.equal(k_str, smallest))
        low = pc.min(k_int).as_py() if k_int.null_count < len(k_int) else None
        return (low, smallest)
    return (pc.min(k_int).as_py(), None)


def _smaller(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b, key=lambda t: (t[1] or "", t[0] if t[0] is not None else 0))


def _describe_key(key: tuple, name: str | None, file_position: bool) -> str:
    k_str, k_int = key
    if file_position:
        return f"row {k_int} of {k_str}"
    return f"{name}={k_int if k_str == '' else k_str!r}"
