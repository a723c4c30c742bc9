"""What a job checks on this machine's file system before Spark starts (starting Spark
costs 10-45 s): outputs that exist, input paths and globs that match nothing, input files
that are not Parquet, saved models that are not there, parents that cannot hold an output.

A path is on this machine when it is a ``file:`` URI, or a path without a scheme while the
job's session will use the local file system (an embedded session with no Hadoop
configuration, or an active local session whose default file system is ``file:``).
Anything else (``hdfs://``, ``s3a://``, Spark Connect, spark-submit on a cluster) is checked
by the same rules once Spark is up (:mod:`spark_em.cli.outputs`, :mod:`spark_em.cli.inputs`).
"""

from __future__ import annotations

import glob
import json
import os

from .exit_codes import DataError, UsageError

_GLOB = set("*?[{")
PARQUET_MAGIC = b"PAR1"


def _strip(path: str) -> str:
    if path.startswith("file://"):
        return path[len("file://") :]
    if path.startswith("file:"):
        return path[len("file:") :]
    return path


class LocalPaths:
    """exists / list / is_dir / matches / expand on this machine (``file:`` URIs or plain
    paths), as :class:`spark_em.io.filesystem.HadoopPaths` does in the cluster's file
    system."""

    def exists(self, path: str) -> bool:
        return os.path.lexists(_strip(path))

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(_strip(path))

    def list(self, path: str) -> list[tuple[str, bool]]:
        path = _strip(path)
        if not os.path.isdir(path):
            return []
        return [(e.name, e.is_dir()) for e in os.scandir(path)]

    def expand(self, pattern: str) -> list[str]:
        pattern = _strip(pattern)
        if not _GLOB & set(pattern):
            return [pattern] if os.path.lexists(pattern) else []
        return sorted(glob.glob(pattern))

    def matches(self, pattern: str) -> bool:
        return bool(self.expand(pattern))


def _active_default_fs() -> str | None:
    """``fs.defaultFS`` of the active session in this process (no Spark job): ``""`` for a
    Spark Connect session (the server's file system), None when there is no session."""
    try:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        if spark is None:
            return None
        if not hasattr(spark, "_jsparkSession"):
            return ""
        return str(spark._jsparkSession.sessionState().newHadoopConf().get("fs.defaultFS"))
    except Exception:
        return ""  # cannot tell: check nothing here


def local_scheme_less(settings) -> bool:
    """Whether a path without a scheme is a path of this machine for this job's session."""
    if settings.get("remote"):
        return False
    active = _active_default_fs()
    if active is not None:
        return active.startswith("file:")
    if "PYSPARK_GATEWAY_PORT" in os.environ and not settings.get("master"):
        return False  # spark-submit: its --master and Hadoop configuration decide
    return not (os.environ.get("HADOOP_CONF_DIR") or os.environ.get("YARN_CONF_DIR"))


def local_path_of(settings, path: str) -> str | None:
    """``path`` on this machine (``file:`` stripped), or None when it is not known to be."""
    if path.startswith("file:"):
        return _strip(path)
    if "://" in path or path.split("/", 1)[0].endswith(":"):
        return None  # another scheme (hdfs://, s3a://, dbfs:/ ...)
    return path if local_scheme_less(settings) else None


def check_inputs(settings, flag: str = "input") -> None:
    """Every local ``--input`` path or glob names something; a file named directly is a
    Parquet file (its first bytes are ``PAR1``)."""
    ops = LocalPaths()
    for given in settings.get(flag) or []:
        path = local_path_of(settings, given)
        if path is None:
            continue
        found = ops.expand(path)
        if not found:
            raise DataError(f"input path not found: {given}")
        for f in found:
            if os.path.isfile(f) and not _is_parquet(f):
                raise DataError(
                    f"--{flag} {f} is not a Parquet file (it does not start with PAR1): "
                    "the jobs read Parquet files or directories of them; convert it first"
                )


def _is_parquet(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == PARQUET_MAGIC
    except OSError:
        return False


def check_model(settings, flag: str) -> None:
    """A local ``--model``/``--init-model`` directory exists and has metadata."""
    given = settings.get(flag)
    path = local_path_of(settings, given) if given else None
    if path is None:
        return
    if not os.path.isdir(path):
        raise DataError(f"--{flag} {given}: cannot load a spark-em model: no saved model there")
    if not os.path.isdir(os.path.join(path, "metadata")):
        raise DataError(
            f"--{flag} {given}: cannot load a spark-em model: the directory has no metadata/"
        )


def model_metadata(settings, flag: str) -> dict | None:
    """The metadata JSON of a local saved model (spark-em's or MLlib's), without Spark; None
    when the model is not on this machine or cannot be read here."""
    given = settings.get(flag)
    path = local_path_of(settings, given) if given else None
    if path is None:
        return None
    for name in sorted(glob.glob(os.path.join(path, "metadata", "part-*"))):
        try:
            with open(name) as fh:
                meta = json.loads(fh.readline())
        except (OSError, ValueError):
            return None
        if "covarianceType" not in meta:  # MLlib's GaussianMixtureModel: full covariances
            meta = dict(meta, covarianceType="full", k=(meta.get("paramMap") or {}).get("k"))
        return meta
    return None


def check_outputs(settings, outputs, overwrite: bool, hint: str | None = None) -> None:
    """The local ones of ``outputs`` (``(flag, kind)`` pairs) by the rules of
    :mod:`spark_em.cli.outputs` (an existing output needs ``overwrite`` and must hold what
    the job writes), and their parents can hold them."""
    from .outputs import PLOTS, REPORT, _ClusterTarget, _LocalTarget, local_path

    for flag, kind in outputs:
        given = settings.get(flag)
        if not given:
            continue
        if kind in (REPORT, PLOTS):
            target = _LocalTarget(flag, local_path(given, flag), kind)
        elif local_path_of(settings, given) is not None:
            target = _ClusterTarget(flag, given, kind, LocalPaths())
        else:
            continue
        if hint:
            target.hint = hint
        target.check(overwrite)
        _check_parent(flag, given, _strip(target.path))


def _check_parent(flag: str, given: str, path: str) -> None:
    """The nearest existing ancestor of ``path`` is a directory this process can write."""
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"--{flag} {given}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(
            f"--{flag} {given}: cannot write in {parent} (permission denied); choose a "
            "writable path"
        )


def check_before_spark(
    settings, outputs, models=(), overwrite: bool | None = None, hint: str | None = None
) -> None:
    """A job's local checks: its ``--input`` paths, its saved ``models`` (flags), its
    ``outputs`` (``(flag, kind)``; ``overwrite`` defaults to ``--overwrite``)."""
    if settings.get("input"):
        check_inputs(settings)
    for flag in models:
        check_model(settings, flag)
    replace = settings.get("overwrite", False) if overwrite is None else overwrite
    check_outputs(settings, outputs, replace, hint)
