"""Files of the driver's own local file system, read and written by this process.

On classic Spark the Python driver and the driver JVM run on one machine, so a path that
Hadoop resolves to its local file system (``file:``) names a file this process can open
itself -- a model's few small files then cost no Spark job (a job is a tenth of a second
or more of planning and scheduling; a nightly update saves and loads a model every
night).  Files keep Hadoop's format: every file written here gets the ``.<name>.crc``
sibling Hadoop's ``ChecksumFileSystem`` writes (CRC-32 of each 512-byte chunk), and a
file read here is checked against its sibling when there is one, as Hadoop checks it.

Paths of any other file system (``hdfs://``, ``s3a://``, ``dbfs:/``, volumes), and every
path on Spark Connect (whose files live on the server), are for Spark's readers and
writers: :func:`local_path` is None there.
"""

from __future__ import annotations

import os
import struct
import zlib

from pyspark.sql import SparkSession

from ..data.env import SparkEnv

__all__ = ["local_path", "list_local", "read_local", "write_local", "ChecksumError"]

_CRC_MAGIC = b"crc\x00"
_BYTES_PER_CHECKSUM = 512


class ChecksumError(OSError):
    """A file does not match its ``.crc`` sibling (Hadoop's ``ChecksumException``)."""


def local_path(spark: SparkSession, path: str) -> str | None:
    """The path on this machine that ``path`` names in the cluster's file system, when
    that file system is the driver's local one (classic Spark, a ``file:`` path or a path
    without scheme whose default file system is local); else None."""
    if SparkEnv.of(spark).connect:
        return None
    jvm = spark._jvm
    jpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = jpath.getFileSystem(spark._jsparkSession.sessionState().newHadoopConf())
    if fs.getUri().getScheme() != "file":
        return None
    return str(fs.makeQualified(jpath).toUri().getPath())


def _hidden(name: str) -> bool:
    """Names Spark's file listing skips (``_SUCCESS``, ``.crc`` siblings, ``.part`` files
    being copied), as ``binaryFile`` with ``recursiveFileLookup`` does."""
    return (
        (name.startswith("_") and "=" not in name)
        or name.startswith(".")
        or (name.endswith("._COPYING_"))
    )


def list_local(root: str) -> list[tuple[str, int]]:
    """``(path, size)`` of every file under the directory ``root`` (recursively, hidden
    files and directories skipped), sorted.  FileNotFoundError when ``root`` does not
    exist."""
    if not os.path.exists(root):
        raise FileNotFoundError(
            f"[PATH_NOT_FOUND] Path does not exist: file:{root}."
        )  # as Spark says
    if not os.path.isdir(root):
        return [(root, os.path.getsize(root))]
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not _hidden(d)]
        out += [
            (os.path.join(folder, f), os.path.getsize(os.path.join(folder, f)))
            for f in files
            if not _hidden(f)
        ]
    return sorted(out)


def _crc_path(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.crc")


def _checksums(data: bytes, chunk: int) -> bytes:
    return b"".join(
        struct.pack(">I", zlib.crc32(data[i : i + chunk])) for i in range(0, len(data), chunk)
    )


def read_local(path: str) -> bytes:
    """The bytes of the file ``path``, checked against its ``.crc`` sibling if it has one
    (:class:`ChecksumError` when they differ)."""
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        with open(_crc_path(path), "rb") as fh:
            crc = fh.read()
    except FileNotFoundError:
        return data
    if len(crc) < 8 or crc[:4] != _CRC_MAGIC:
        raise ChecksumError(f"Checksum error: file:{path}: its .crc file is not Hadoop's")
    chunk = struct.unpack(">i", crc[4:8])[0]
    if chunk < 1 or crc[8:] != _checksums(data, chunk):
        raise ChecksumError(f"Checksum error: file:{path} does not match its .crc file")
    return data


def write_local(path: str, data: bytes) -> None:
    """Write a new file ``path`` (its parent directories created; FileExistsError when it
    exists) and its ``.crc`` sibling."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "xb") as fh:
        fh.write(data)
    crc = _CRC_MAGIC + struct.pack(">i", _BYTES_PER_CHECKSUM)
    with open(_crc_path(path), "wb") as fh:
        fh.write(crc + _checksums(data, _BYTES_PER_CHECKSUM))
