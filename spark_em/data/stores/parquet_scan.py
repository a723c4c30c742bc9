"""Is the DataFrame given to ``fit`` a plain scan of Parquet files, and which?

A plain scan is ``spark.read.parquet(...)`` optionally followed by a selection of columns
(no filter, no expression, no repartition): then every row of the DataFrame is a row of its
files, and the tasks of a pass can read the files themselves.  Classic Spark: read from the
analyzed plan in the JVM.  Spark Connect: read from the client-side plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from pyspark.sql import DataFrame

from ..env import SparkEnv


@dataclass(frozen=True)
class ParquetScan:
    """The files of a plain Parquet scan (as URIs or paths pyarrow can open) and the
    columns of the files, by name as Spark reads them."""

    files: tuple[str, ...]
    data_columns: tuple[str, ...]


class NotPlainScan(Exception):
    """The DataFrame is not a plain Parquet scan; the message says why."""


def plain_parquet_scan(df: DataFrame, env: SparkEnv) -> ParquetScan:
    """The scan; :class:`NotPlainScan` with a short reason when ``df`` is not one."""
    try:
        reason = _connect_reason(df) if env.connect else _classic_reason(df)
    except Exception as exc:  # an unexpected plan shape: not a plain scan
        reason = f"its plan could not be inspected ({type(exc).__name__})"
    if reason:
        raise NotPlainScan(reason)
    files = tuple(readable_path(f) for f in df.inputFiles())
    if not files:
        raise NotPlainScan("it has no input files")
    return ParquetScan(files, tuple(df.columns))


def _classic_reason(df: DataFrame) -> str | None:
    plan = df._jdf.queryExecution().analyzed()
    while plan.getClass().getSimpleName() == "Project":
        items = plan.projectList()
        for i in range(items.size()):
            if items.apply(i).getClass().getSimpleName() != "AttributeReference":
                return "it selects expressions, not only columns"
        plan = plan.child()
    name = plan.getClass().getSimpleName()
    if name != "LogicalRelation":
        return f"its plan has a {name} step"
    relation = plan.relation()
    if relation.getClass().getSimpleName() != "HadoopFsRelation":
        return "it does not read files"
    fmt = relation.fileFormat().getClass().getSimpleName()
    if fmt != "ParquetFileFormat":
        return f"it reads {fmt.replace('FileFormat', '')} files, not Parquet"
    partition_cols = set(relation.partitionSchema().fieldNames())
    if partition_cols & set(df.columns):
        return "it selects partition columns, which are not stored in the files"
    return None


def _connect_reason(df: DataFrame) -> str | None:
    from pyspark.sql.connect import plan as cp
    from pyspark.sql.connect.expressions import ColumnReference

    node = df._plan
    while isinstance(node, cp.Project):
        for col in node._columns:
            if not isinstance(getattr(col, "_expr", None), ColumnReference):
                return "it selects expressions, not only columns"
        node = node._child
    if not isinstance(node, cp.DataSource):
        return f"its plan has a {type(node).__name__} step"
    fmt = (node._format or "").lower()
    if fmt != "parquet":
        return f"it reads {fmt or 'an unknown format'}, not Parquet"
    if getattr(node, "_predicates", None):
        return "it reads with predicates"
    return None


def readable_path(uri: str) -> str:
    """A Spark input-file URI as pyarrow opens it: ``file:`` URIs become local paths,
    Databricks ``dbfs:/Volumes/...`` and ``dbfs:/...`` their FUSE paths (``/Volumes/...``,
    ``/dbfs/...``); other URIs are left to pyarrow's file systems."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return unquote(parsed.path) if parsed.scheme else uri
    if parsed.scheme == "dbfs":
        path = unquote(parsed.path)
        return path if path.startswith("/Volumes/") else "/dbfs" + path
    return uri
