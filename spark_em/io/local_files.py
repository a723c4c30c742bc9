"""Files of the driver's own local file system, read and written by this process.

On classic Spark the Python driver and the driver JVM run on one machine, so a path that
Hadoop resolves to its local file system (``file:``) names a file this process can open
itself -- a model's few small files then cost no Spark job (a job is a tenth of a second
or more of planning and scheduling; a nightly update saves and loads a model every
night).  Files keep Hadoop's format: every file written here gets the ``.<name>.crc``
sibling Hadoop's ``ChecksumFileSystem`` writes (CRC-32 of each 512-byte chunk), and a
file read here is checked against its sibling when there is one (stricter than Hadoop on
one point: a ``.crc`` file that is not Hadoop's is refused, where Hadoop warns and reads).
Files and directories get the permissions Hadoop gives them (``fs.permissions.umask-mode``
of the session's Hadoop configuration, not this process's umask).

Paths of any other file system (``hdfs://``, ``s3a://``, ``dbfs:/``, volumes), and every
path on Spark Connect (whose files live on the server), are for Spark's readers and
writers: :func:`local_path` is None there.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

from pyspark.sql import SparkSession

from ..data.env import SparkEnv

__all__ = ["LocalPath", "local_path", "list_local", "read_local", "write_local", "ChecksumError"]

_CRC_MAGIC = b"crc\x00"
_BYTES_PER_CHECKSUM = 512


class ChecksumError(OSError):
    """A file does not match its ``.crc`` sibling (Hadoop's ``ChecksumException``)."""


@dataclass(frozen=True)
class LocalPath:
    """A path of the driver's local file system (``path``) and the permission bits Hadoop
    would leave off the files and directories it makes there (``umask``)."""

    path: str
    umask: int


def local_path(spark: SparkSession, path: str) -> LocalPath | None:
    """The path on this machine that ``path`` names in the cluster's file system, when
    that file system is the driver's local one (classic Spark, a ``file:`` path or a path
    without scheme whose default file system is local); else None."""
    if SparkEnv.of(spark).connect:
        return None
    jvm = spark._jvm
    jpath = jvm.org.apache.hadoop.fs.Path(path)
    conf = spark._jsparkSession.sessionState().newHadoopConf()
    fs = jpath.getFileSystem(conf)
    if fs.getUri().getScheme() != "file":
        return None
    umask = int(jvm.org.apache.hadoop.fs.permission.FsPermission.getUMask(conf).toShort())
    return LocalPath(str(fs.makeQualified(jpath).toUri().getPath()), umask)


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
    seen = set()

    def fail(exc: OSError):
        raise exc

    # symbolic links followed as Hadoop follows them (each directory once); an unreadable
    # directory raises instead of looking empty; a dangling link is skipped, as Spark does
    for folder, dirs, files in os.walk(root, onerror=fail, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not _hidden(d)]
        for f in files:
            full = os.path.join(folder, f)
            if not _hidden(f) and os.path.exists(full):
                out.append((full, os.path.getsize(full)))
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


def _make_dirs(folder: str, umask: int) -> None:
    """``folder`` and its missing parents, each with mode 0o777 less ``umask``."""
    if not folder or os.path.isdir(folder):
        return
    _make_dirs(os.path.dirname(folder), umask)
    try:
        os.mkdir(folder)
    except FileExistsError:
        return
    os.chmod(folder, 0o777 & ~umask)


def write_local(path: str, data: bytes, umask: int = 0o022) -> None:
    """Write a new file ``path`` (FileExistsError when it exists) and its ``.crc``
    sibling, with mode 0o666 less ``umask``; missing parent directories are made with mode
    0o777 less ``umask``."""
    _make_dirs(os.path.dirname(path), umask)
    crc = _CRC_MAGIC + struct.pack(">i", _BYTES_PER_CHECKSUM)
    for name, content, mode in (
        (path, data, "xb"),
        (_crc_path(path), crc + _checksums(data, _BYTES_PER_CHECKSUM), "wb"),
    ):
        with open(name, mode) as fh:
            fh.write(content)
        os.chmod(name, 0o666 & ~umask)
