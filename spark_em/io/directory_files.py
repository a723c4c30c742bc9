"""The files of a directory in the cluster's file system, listed with their sizes and read
through Spark (classic Spark and Spark Connect alike), for the model directory's checks, and
a model's files written (:func:`write_table`, :func:`write_line`).

* Files of the driver's local file system on classic Spark are listed, read and written by
  this process itself (:mod:`spark_em.io.local_files`: no Spark job, Hadoop's checksums
  kept); every other file goes through Spark's readers and writers.

* Paths are taken literally: Spark's readers expand globs, so the glob characters of a
  path (``[``, ``]``, ``{``, ``}``, ``*``, ``?``, ``\\``) are escaped before it is handed
  to them (Hadoop's glob syntax escapes with a backslash).  Files are named by the
  ``path`` column of the ``binaryFile`` source (Hadoop's ``Path.toString``: the path as
  it is, ``a b`` and ``a%20b`` apart), never by ``DataFrame.inputFiles()``, whose URIs
  are percent-encoded, nor by a URI parser (``#`` and ``?`` are part of a file name).
* The listing (:func:`list_files`) gives every file's size without reading a byte of it
  (the ``binaryFile`` source reads ``content`` only when it is selected), so that a
  caller can refuse a file larger than it can be (:func:`read_files` is then only asked
  for what passed).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from .local_files import list_local, local_path, read_local, write_local

__all__ = [
    "ListedFile",
    "literal",
    "list_files",
    "relative_names",
    "read_files",
    "write_table",
    "write_line",
]

_GLOB_CHARS = re.compile(r"([\\\[\]{}*?])")


@dataclass(frozen=True)
class ListedFile:
    """One file: its qualified name as Spark lists it (``file:/x``, ``hdfs://nn/x``), the
    path part of that name, its size in bytes."""

    uri: str
    path: str
    size: int


def literal(path: str) -> str:
    """``path`` escaped for Spark's readers, which expand globs: it names itself only."""
    return _GLOB_CHARS.sub(r"\\\1", path)


_QUALIFIED = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:)?(?://[^/]*)?")


def _path_part(name: str) -> str:
    """``/x/y`` of ``file:/x/y``, ``hdfs://nn:8020/x/y`` or ``/x/y``, taken literally."""
    return name[_QUALIFIED.match(name).end() :]


def list_files(spark: SparkSession, path: str) -> list[ListedFile]:
    """Every file under the directory ``path`` (recursively; hidden files such as
    ``_SUCCESS`` and ``.crc`` are not listed, as Spark's readers skip them), sorted.  Raises
    what Spark raises (a path that does not exist, a file system it cannot reach)."""
    local = local_path(spark, path)
    if local is not None:
        return [ListedFile(f"file:{p}", p, size) for p, size in list_local(local.path)]
    rows = (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .load(literal(path))
        .select("path", "length")
        .collect()
    )
    files = [ListedFile(r["path"], _path_part(r["path"]), int(r["length"])) for r in rows]
    return sorted(files, key=lambda f: f.path)


def relative_names(path: str, files: list[ListedFile]) -> dict[str, ListedFile]:
    """``{name relative to the directory path: file}``.  The directory is the files'
    deepest common directory that ends with ``path``'s own components (Spark lists
    qualified paths: ``file:/...``, ``hdfs://nn/...``)."""
    if not files:
        return {}
    own = posixpath.normpath(_path_part(path) or path).strip("/").split("/")
    parts = [f.path.strip("/").split("/") for f in files]
    common: list[str] = []
    for level in zip(*(p[:-1] for p in parts)):
        if len(set(level)) > 1:
            break
        common.append(level[0])
    while common and common[-len(own) :] != own:
        common.pop()
    depth = len(common) if common else len(parts[0]) - 1
    return {"/".join(p[depth:]): f for p, f in zip(parts, files)}


def read_files(spark: SparkSession, files: dict[str, ListedFile]) -> dict[str, bytes]:
    """The bytes of ``files`` (``{name: file}``), by name; a name whose file disappeared
    meanwhile is absent.  Raises what Spark raises (a checksum error, for one)."""
    # the files of one directory (list_files): one file system, asked once
    first = next(iter(files.values()), None)
    if first is not None and local_path(spark, first.uri) is not None:
        out = {}
        for name, f in files.items():
            try:
                out[name] = read_local(f.path)
            except FileNotFoundError:
                pass
        return out
    rows = (
        spark.read.format("binaryFile")
        .load([literal(f.uri) for f in files.values()])
        .select("path", "content")
        .collect()
    )
    content = {_path_part(r["path"]): bytes(r["content"]) for r in rows}
    return {name: content[f.path] for name, f in files.items() if f.path in content}


PART = "part-00000"


def write_table(spark: SparkSession, path: str, table: pa.Table, schema: T.StructType) -> None:
    """Write ``table`` (whose columns are ``schema``'s) as one Parquet file in the new
    directory ``path``, as ``spark.createDataFrame(table, schema).write.parquet(path)``
    would."""
    local = local_path(spark, path)
    if local is None:
        spark.createDataFrame(table, schema).coalesce(1).write.parquet(path)
        return
    from pyspark.sql.pandas.types import to_arrow_schema

    sink = pa.BufferOutputStream()  # the file's schema is schema's, nullability included
    pq.write_table(table.cast(to_arrow_schema(schema)), sink, compression="snappy")
    write_local(f"{local.path}/{PART}.snappy.parquet", sink.getvalue().to_pybytes(), local.umask)
    write_local(f"{local.path}/_SUCCESS", b"", local.umask)


def write_line(spark: SparkSession, path: str, line: str) -> None:
    """Write one line of text as one file in the new directory ``path`` (what pyspark.ml's
    ``DefaultParamsWriter.saveMetadata`` writes)."""
    local = local_path(spark, path)
    if local is None:
        spark.createDataFrame([(line,)], schema=["value"]).coalesce(1).write.text(path)
        return
    write_local(f"{local.path}/{PART}", (line + "\n").encode("utf-8"), local.umask)
    write_local(f"{local.path}/_SUCCESS", b"", local.umask)
