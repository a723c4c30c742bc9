"""Paths through Hadoop's FileSystem (any URI Spark can write: local, file://, s3a://, dbfs:/).

Used for atomic saves: write to a temporary sibling, then rename.  On Spark Connect the
client has no JVM; there, paths that are local to this machine are handled with ``os``/
``shutil`` and any other URI is written in place (metadata last, so a half-written save is
never loadable).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from urllib.parse import urlparse

from pyspark.sql import SparkSession

from .distributed import is_connect


def _local_path(path: str) -> str | None:
    u = urlparse(path)
    if u.scheme in ("", "file"):
        return u.path if u.scheme else path
    return None


class PathOps:
    """exists / delete / rename for ``path`` in the session's file system."""

    def __init__(self, spark: SparkSession):
        self.spark = spark
        self.remote = is_connect(spark)

    def _fs(self, path: str):
        sc = self.spark.sparkContext
        jpath = sc._jvm.org.apache.hadoop.fs.Path(path)
        return jpath.getFileSystem(sc._jsc.hadoopConfiguration()), jpath

    def can_rename(self, path: str) -> bool:
        return not self.remote or _local_path(path) is not None

    def exists(self, path: str) -> bool:
        if self.remote:
            local = _local_path(path)
            return os.path.exists(local) if local is not None else False
        fs, jpath = self._fs(path)
        return bool(fs.exists(jpath))

    def delete(self, path: str) -> None:
        if self.remote:
            local = _local_path(path)
            if local is not None and os.path.exists(local):
                shutil.rmtree(local) if os.path.isdir(local) else os.remove(local)
            return
        fs, jpath = self._fs(path)
        fs.delete(jpath, True)

    def rename(self, src: str, dst: str) -> None:
        if self.remote:
            os.replace(_local_path(src), _local_path(dst))
            return
        fs, jsrc = self._fs(src)
        _, jdst = self._fs(dst)
        if not fs.rename(jsrc, jdst):
            raise OSError(f"could not rename {src} to {dst}")

    @staticmethod
    def temporary_sibling(path: str) -> str:
        return path.rstrip("/") + f"._tmp-{uuid.uuid4().hex[:12]}"


def atomic_write(spark: SparkSession, path: str, overwrite: bool, write_to) -> None:
    """Call ``write_to(tmp_path)`` and move the result to ``path``.

    Raises FileExistsError when ``path`` exists and ``overwrite`` is False.  On failure the
    temporary path is removed and ``path`` is untouched.
    """
    ops = PathOps(spark)
    if ops.exists(path) and not overwrite:
        raise FileExistsError(
            f"Path {path} already exists. To overwrite it, use write().overwrite().save(path)."
        )
    if not ops.can_rename(path):
        write_to(path)
        return
    tmp = ops.temporary_sibling(path)
    try:
        write_to(tmp)
        if ops.exists(path):
            ops.delete(path)
        ops.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            ops.delete(tmp)
        raise
