"""Where the local-file store's block directories live and who owns them: the local roots
to sweep, the owner's lock, and the removal of directories whose owner is gone.

The block files live in Spark's own per-application local directory (under
``spark.local.dir`` / ``SPARK_LOCAL_DIRS``), which Spark deletes when the application ends,
also on SIGTERM (the Python driver dies, pyspark's JVM sees its stdin close and exits through
its shutdown hooks; tested); a directory left by a driver killed outright (SIGKILL) is
removed by the next fit under any of the same local roots, once its owner is gone.  Whether
it is gone is decided by an advisory lock (``flock``) the store holds on the directory's
``owner.json`` for the fit's whole life: the kernel drops it when the owner dies however it
dies, and a live owner holds it in any PID namespace (containers sharing one local
directory), where its pid means nothing (:class:`OwnerLock`).
"""

from __future__ import annotations

import errno
import fcntl
import glob
import json
import os
import shutil

PREFIX = "spark-em-blocks-"
_OWNER = "owner.json"


def local_roots(spark, app_dir: str) -> list[str]:
    """Every configured local root (``SPARK_LOCAL_DIRS`` / ``spark.local.dir`` may name
    several; Spark puts this application's directory in one of them), else the parent of
    ``app_dir``."""
    roots = {os.path.dirname(os.path.abspath(app_dir))}
    try:
        sc = spark.sparkContext
        dirs = sc._jvm.org.apache.spark.util.Utils.getConfiguredLocalDirs(sc._jsc.sc().conf())
        roots.update(os.path.abspath(str(d)) for d in dirs)
    except Exception:  # only the application directory's own root is swept
        pass
    return sorted(roots)


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, Linux), to tell a reused pid."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class OwnerLock:
    """An exclusive ``flock`` on a block directory's ``owner.json``, held (by an open file
    descriptor) from the directory's creation to its removal.  The record says who holds it
    (pid, its start time, host) for people; the lock alone says whether the owner lives.

    The file is written and locked under a temporary name, then renamed into place: a sweep
    never finds an ``owner.json`` that is not locked yet."""

    def __init__(self, fd: int):
        self.fd = fd

    @classmethod
    def take(cls, block_dir: str) -> OwnerLock:
        pid = os.getpid()
        tmp = os.path.join(block_dir, f".{_OWNER}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            record = {"pid": pid, "start": _start_time(pid), "host": os.uname().nodename}
            os.write(fd, json.dumps({**record, "lock": "flock"}).encode())
            os.replace(tmp, os.path.join(block_dir, _OWNER))
        except BaseException:
            os.close(fd)
            raise
        return cls(fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the lock
            self.fd = -1


def _lock_held(path: str) -> bool | None:
    """Whether someone holds the ``flock`` of ``path`` (None: it cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        return None
    finally:
        os.close(fd)
    return False


def _owner_alive(block_dir: str) -> bool:
    path = os.path.join(block_dir, _OWNER)
    try:
        with open(path) as fh:
            owner = json.load(fh)
        pid = int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        # no owner file: a directory being created right now, or one from an older version;
        # only old enough ones are taken for stale
        try:
            import time

            return time.time() - os.path.getmtime(block_dir) < 3600
        except OSError:
            return False
    if owner.get("lock") == "flock":
        # the lock decides: the kernel dropped it if the owner died, in any PID namespace
        return _lock_held(path) is not False
    # an owner record of an older version (no lock): its pid, in this PID namespace
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    start = owner.get("start")
    return start is None or _start_time(pid) in (None, start)


def remove_stale_block_dirs(local_root: str) -> list[str]:
    """Remove block directories under ``local_root`` (in Spark's per-application
    directories ``spark-*/`` or directly) whose owner process is gone; returns them."""
    removed = []
    for pattern in (f"spark-*/{PREFIX}*", f"{PREFIX}*"):
        for path in glob.glob(os.path.join(local_root, pattern)):
            if os.path.isdir(path) and not _owner_alive(path):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed
