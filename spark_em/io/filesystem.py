"""Paths in the file system of the Spark *cluster* (any URI Spark can write: local paths,
``file://``, ``hdfs://``, ``s3a://``, ``abfss://``, ``dbfs:/``, Unity Catalog volumes).

Nothing here touches the client's local disk: a path is always resolved where Spark
resolves it, which on Spark Connect is the server, not the machine running this code.

* Classic Spark: Hadoop's ``FileSystem`` through the driver JVM.  Saves are atomic: written
  to a temporary sibling, then renamed over the target; temporaries a killed job left
  beside the same path (unmodified for :data:`STALE_AFTER`) are removed by the next save.
* Spark Connect: there is no JVM on the client.  The existence check and the removal before
  an overwrite run on the server through the ML helper of Spark Connect (the call pyspark.ml
  itself uses for ``write().overwrite()``); there is no remote rename, so the output is
  written in place.  Writers put their metadata last, so an interrupted save is never
  loadable.
"""

from __future__ import annotations

import contextlib
import re
import uuid

from pyspark.sql import SparkSession

from ..data.env import SparkEnv


class HadoopPaths:
    """exists / delete / rename / list through the driver JVM's Hadoop ``FileSystem``
    (classic Spark only: see :func:`hadoop_paths`)."""

    def __init__(self, spark: SparkSession):
        self.spark = spark

    def _fs(self, path: str):
        jvm = self.spark._jvm
        jpath = jvm.org.apache.hadoop.fs.Path(path)
        conf = self.spark._jsparkSession.sessionState().newHadoopConf()
        return jpath.getFileSystem(conf), jpath

    def exists(self, path: str) -> bool:
        fs, jpath = self._fs(path)
        return bool(fs.exists(jpath))

    def delete(self, path: str) -> None:
        fs, jpath = self._fs(path)
        fs.delete(jpath, True)

    def rename(self, src: str, dst: str) -> None:
        fs, jsrc = self._fs(src)
        _, jdst = self._fs(dst)
        if not fs.rename(jsrc, jdst):
            raise OSError(f"could not rename {src} to {dst}")

    def list(self, path: str) -> list[tuple[str, bool]]:
        """``(name, is_directory)`` of each entry of the directory ``path``; ``[]`` for a
        file."""
        fs, jpath = self._fs(path)
        if not fs.getFileStatus(jpath).isDirectory():
            return []
        return [(st.getPath().getName(), bool(st.isDirectory())) for st in fs.listStatus(jpath)]

    def matches(self, pattern: str) -> bool:
        """Whether a path or glob (``/lake/day=*``) names at least one existing file or
        directory."""
        fs, jpath = self._fs(pattern)
        found = fs.globStatus(jpath)
        return found is not None and len(found) > 0

    def expand(self, pattern: str) -> list[str]:
        """The paths a path or glob names (``[]`` when none exists), sorted."""
        fs, jpath = self._fs(pattern)
        found = fs.globStatus(jpath)
        return sorted(str(st.getPath().toString()) for st in (found or []))

    def stale_siblings(self, path: str, older_than: float) -> list[str]:
        """Temporaries of ``path`` (``path._tmp-<hex>``, ``path._old-<hex>``: see
        :func:`temporary_sibling`) not modified for ``older_than`` seconds."""
        fs, jpath = self._fs(path)
        parent = jpath.getParent()
        if parent is None or not fs.exists(parent):
            return []
        name = jpath.getName()
        now_ms = self.spark._jvm.java.lang.System.currentTimeMillis()
        out = []
        for st in fs.listStatus(parent):
            child = st.getPath().getName()
            if _TEMPORARY.fullmatch(child) and child.rsplit("._", 1)[0] == name:
                if now_ms - st.getModificationTime() > older_than * 1000:
                    out.append(str(st.getPath().toString()))
        return out

    def is_dir(self, path: str) -> bool:
        fs, jpath = self._fs(path)
        return bool(fs.exists(jpath)) and bool(fs.getFileStatus(jpath).isDirectory())


def hadoop_paths(spark: SparkSession) -> HadoopPaths | None:
    """The cluster file system's operations, or None on Spark Connect (no JVM here)."""
    return None if SparkEnv.of(spark).connect else HadoopPaths(spark)


def connect_handle_overwrite(path: str, overwrite: bool) -> None:
    """Spark Connect, on the server: raise FileExistsError if ``path`` exists and not ``overwrite``,
    delete it if it exists and ``overwrite``."""
    try:
        from pyspark.ml.util import ML_CONNECT_HELPER_ID
        from pyspark.ml.wrapper import JavaWrapper

        JavaWrapper(java_obj=ML_CONNECT_HELPER_ID)._call_java(
            "handleOverwrite", path, bool(overwrite)
        )
    except Exception as exc:  # the server's IOException arrives as a generic Connect error
        if not overwrite and "already exists" in str(exc):
            raise FileExistsError(_exists_message(path)) from None
        raise OSError(
            f"cannot check or clear {path} through this Spark Connect server's ML helper "
            f"(server without Spark Connect ML support?): {str(exc).splitlines()[0]}"
        ) from exc


def _exists_message(path: str) -> str:
    return f"Path {path} already exists. To overwrite it, use write().overwrite().save(path)."


_TEMPORARY = re.compile(r".+\._(?:tmp|old)-[0-9a-f]{12}")
STALE_AFTER = 6 * 3600.0
"""A temporary sibling not modified for this long is a killed job's, removed by the next
write of the same path (a live save renames its temporary within minutes)."""


def remove_stale_siblings(ops: HadoopPaths, path: str) -> list[str]:
    """Remove the temporaries a killed job left beside ``path``; returns them."""
    removed = []
    for stale in ops.stale_siblings(path, STALE_AFTER):
        with contextlib.suppress(Exception):
            ops.delete(stale)
            removed.append(stale)
    return removed


def temporary_sibling(path: str, tag: str = "tmp") -> str:
    """``path._<tag>-<random>``: next to ``path``, so a rename never crosses file systems."""
    return path.rstrip("/") + f"._{tag}-{uuid.uuid4().hex[:12]}"


def atomic_write(spark: SparkSession, path: str, overwrite: bool, write_to) -> None:
    """Call ``write_to(target)`` to write ``path`` in the cluster's file system.

    Raises FileExistsError when ``path`` exists and ``overwrite`` is False.  On classic Spark
    ``target`` is a temporary sibling renamed to ``path`` afterwards (on failure it is removed
    and ``path`` is untouched); on Spark Connect ``target`` is ``path`` itself (see the module
    docstring).
    """
    if SparkEnv.of(spark).connect:
        connect_handle_overwrite(path, overwrite)
        write_to(path)
        return
    ops = HadoopPaths(spark)
    if ops.exists(path) and not overwrite:
        raise FileExistsError(_exists_message(path))
    remove_stale_siblings(ops, path)
    tmp = temporary_sibling(path)
    try:
        write_to(tmp)
        if ops.exists(path):
            ops.delete(path)
        ops.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            ops.delete(tmp)
        raise
