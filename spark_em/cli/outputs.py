"""A job's outputs, written together or not at all.

Each output (model directory, Parquet predictions, JSON report, plot directory) is checked
before any work (:meth:`Outputs.add`), written to a temporary sibling
(:meth:`Outputs.stage`), and only when every output is staged are they all renamed into
place (:meth:`Outputs.commit`): an older output is first renamed aside, and put back if a
later rename fails.  A run that fails before the commit removes its temporaries and leaves
every older output untouched.

An existing output is replaced only with ``overwrite``, and only when it holds what the job
writes: a model directory (``metadata/``, ``data/``), a Parquet data set (``part-*`` files,
``key=value`` partition directories, Spark's markers), a spark-em report, a directory of
PNG plots.  Anything else there (``thesis.tex``, ``sub/``) is refused.

Model and predictions live in the cluster's file system (renamed through Hadoop's
``FileSystem``); report and plots are files of the machine running the job.  On Spark
Connect there is no remote rename: outputs are written in place at commit, one after the
other, and the ones this run wrote are removed again if a later one fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid

from .exit_codes import UsageError

MODEL, PARQUET, REPORT, PLOTS = (
    "a spark-em model",
    "a Parquet data set",
    "a spark-em report",
    "PNG plots",
)


def local_path(value: str, flag: str) -> str:
    """A path on this machine from ``/x``, ``x`` or ``file:/x``; UsageError for other URIs."""
    if value.startswith("file://"):
        return value[len("file://") :]
    if value.startswith("file:"):
        return value[len("file:") :]
    if "://" in value:
        raise UsageError(f"--{flag} must be a path on this machine, got {value}")
    return value


# ------------------------------------------------------------------------ what a target holds
def _is_marker(name: str) -> bool:
    return name.startswith((".", "_"))


def holds_model(entries: list[tuple[str, bool]]) -> bool:
    names = {n for n, d in entries if not _is_marker(n)}
    return not names or ("metadata" in names and names <= {"metadata", "data"})


def holds_parquet(list_dir, path: str, depth: int = 0) -> bool:
    """``part-*`` files and ``key=value`` directories of the same, Spark's markers."""
    for name, is_dir in list_dir(path):
        if _is_marker(name):
            continue
        if is_dir:
            if (
                "=" not in name
                or depth > 16
                or not holds_parquet(list_dir, f"{path}/{name}", depth + 1)
            ):
                return False
        elif not name.startswith("part-"):
            return False
    return True


def _local_list(path: str) -> list[tuple[str, bool]]:
    return [(e.name, e.is_dir()) for e in os.scandir(path)] if os.path.isdir(path) else []


def _describe(entries: list[tuple[str, bool]]) -> str:
    shown = [n + ("/" if d else "") for n, d in sorted(entries) if not _is_marker(n)][:4]
    return ", ".join(shown) + (", ..." if len(entries) > 4 else "")


# ------------------------------------------------------------------------ targets
class _Target:
    def __init__(self, flag: str, path: str, kind: str):
        self.flag, self.path, self.kind = flag, path, kind
        self.staged: str | None = None
        self.backup: str | None = None
        self.committed = False
        self.hint = "pass --overwrite to replace it"

    def name(self) -> str:
        return f"--{self.flag} {self.path}"

    def refuse(self, entries) -> UsageError:
        return UsageError(
            f"{self.name()} exists and does not hold {self.kind} "
            f"({_describe(entries)}): not replacing it; choose another path"
        )


class _LocalTarget(_Target):
    """A report file or a plot directory on this machine."""

    def check(self, overwrite: bool) -> None:
        if not os.path.lexists(self.path):
            return
        if not overwrite:
            raise UsageError(f"{self.name()} already exists; {self.hint}")
        if self.kind == REPORT:
            ok = os.path.isfile(self.path) and _is_report(self.path)
            entries = [(os.path.basename(self.path), os.path.isdir(self.path))]
        else:
            entries = _local_list(self.path)
            ok = os.path.isdir(self.path) and all(
                not d and n.endswith(".png") for n, d in entries if not _is_marker(n)
            )
        if not ok:
            raise self.refuse(entries)

    def stage(self, write) -> None:
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        self.staged = os.path.join(
            parent, f".{os.path.basename(self.path)}._tmp-{uuid.uuid4().hex[:12]}"
        )
        write(self.staged)

    def commit(self) -> None:
        if os.path.lexists(self.path):
            self.backup = self.staged.replace("._tmp-", "._old-")
            os.replace(self.path, self.backup)
        os.replace(self.staged, self.path)
        self.committed = True

    def rollback(self) -> None:
        if self.committed:
            _remove_local(self.path)
        if self.backup and not os.path.lexists(self.path):
            os.replace(self.backup, self.path)
        if self.staged:
            _remove_local(self.staged)

    def finish(self) -> None:
        if self.backup:
            _remove_local(self.backup)


def _remove_local(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def _is_report(path: str) -> bool:
    try:
        with open(path) as fh:
            return isinstance(json.load(fh).get("spark_em_report"), dict)
    except (OSError, ValueError, AttributeError):
        return False


class _ClusterTarget(_Target):
    """A model directory or a Parquet data set in the cluster's file system (classic)."""

    def __init__(self, flag, path, kind, ops):
        super().__init__(flag, path, kind)
        self.ops = ops

    def check(self, overwrite: bool) -> None:
        if not self.ops.exists(self.path):
            return
        if not overwrite:
            raise UsageError(f"{self.name()} already exists; {self.hint}")
        entries = self.ops.list(self.path)
        ok = self.ops.is_dir(self.path) and (
            holds_model(entries) if self.kind == MODEL else holds_parquet(self.ops.list, self.path)
        )
        if not ok:
            raise self.refuse(entries or [(self.path.rstrip("/").rsplit("/", 1)[-1], False)])

    def stage(self, write) -> None:
        from ..io.filesystem import remove_stale_siblings, temporary_sibling

        if hasattr(self.ops, "stale_siblings"):
            remove_stale_siblings(self.ops, self.path)
        self.staged = temporary_sibling(self.path)
        write(self.staged)

    def commit(self) -> None:
        from ..io.filesystem import temporary_sibling

        if self.ops.exists(self.path):
            self.backup = temporary_sibling(self.path, "old")
            self.ops.rename(self.path, self.backup)
        self.ops.rename(self.staged, self.path)
        self.committed = True

    def rollback(self) -> None:
        if self.committed:
            self.ops.delete(self.path)
        if self.backup and not self.ops.exists(self.path):
            self.ops.rename(self.backup, self.path)
        if self.staged and self.ops.exists(self.staged):
            self.ops.delete(self.staged)

    def finish(self) -> None:
        if self.backup:
            self.ops.delete(self.backup)


class _ConnectTarget(_Target):
    """Spark Connect: no listing and no rename on the server; written in place at commit."""

    def __init__(self, flag, path, kind, spark):
        super().__init__(flag, path, kind)
        self.spark = spark
        self.write = None

    def check(self, overwrite: bool) -> None:
        from ..io.filesystem import connect_handle_overwrite

        try:
            connect_handle_overwrite(self.path, False)
            return
        except FileExistsError:
            if not overwrite:
                raise UsageError(f"{self.name()} already exists; {self.hint}") from None
        try:  # what is there must read as what the job writes
            if self.kind == MODEL:
                from .. import GaussianMixtureModel

                GaussianMixtureModel.load(self.path)
            else:
                _ = self.spark.read.parquet(self.path).schema
        except Exception:
            raise self.refuse([]) from None

    def stage(self, write) -> None:
        # no remote rename: the output is written in place at commit
        self.staged, self.write = self.path, write

    def commit(self) -> None:
        from ..io.filesystem import connect_handle_overwrite

        connect_handle_overwrite(self.path, True)
        self.committed = True
        self.write(self.path)

    def rollback(self) -> None:
        if self.committed:
            from ..io.filesystem import connect_handle_overwrite

            with contextlib.suppress(Exception):
                connect_handle_overwrite(self.path, True)

    def finish(self) -> None:
        pass


# ------------------------------------------------------------------------ the set
class Outputs:
    """The outputs of one run: ``add`` (checked at once), ``stage``, then ``commit`` all."""

    def __init__(self, spark, overwrite: bool, hint: str | None = None):
        """``hint``: what the message about an existing output tells to do."""
        from ..io.filesystem import hadoop_paths

        self.spark = spark
        self.overwrite = overwrite
        self.ops = hadoop_paths(spark)
        self.targets: list[_Target] = []
        self.hint = hint

    def add(self, flag: str, path: str, kind: str) -> _Target:
        if kind in (REPORT, PLOTS):
            target = _LocalTarget(flag, local_path(path, flag), kind)
        elif self.ops is None:
            target = _ConnectTarget(flag, path, kind, self.spark)
        else:
            target = _ClusterTarget(flag, path, kind, self.ops)
        if self.hint:
            target.hint = self.hint
        for other in self.targets:
            if other.path.rstrip("/") == target.path.rstrip("/"):
                raise UsageError(f"{other.name()} and --{flag} are the same path")
        target.check(self.overwrite)
        self.targets.append(target)
        return target

    def stage(self, target: _Target, write) -> None:
        """``write(path)`` writes the output at ``path`` (a temporary sibling)."""
        target.stage(write)

    def commit(self) -> None:
        done: list[_Target] = []
        try:
            for target in self.targets:
                if target.staged is None:
                    continue  # nothing staged for it (e.g. an optional output left out)
                done.append(target)
                target.commit()
        except BaseException:
            for target in reversed(done):
                with contextlib.suppress(Exception):
                    target.rollback()
            raise
        for target in self.targets:
            with contextlib.suppress(Exception):
                target.finish()

    def discard(self) -> None:
        """Remove every temporary of a run that did not commit."""
        for target in self.targets:
            if not target.committed:
                with contextlib.suppress(Exception):
                    target.rollback()

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()


def check_local_outputs(s, flags=("report-out", "plot-dir", "checkpoint-dir")) -> None:
    """Before Spark starts: the job's local files are plain paths, plots can be drawn, and
    MLflow is usable when asked for."""
    from . import plots, tracking

    for flag in flags:
        if s.get(flag):
            local_path(s[flag], flag)
    if s.get("plot-dir"):
        plots.require_matplotlib()
    tracking.check(s)


def print_written(targets: dict) -> None:
    """One line per committed output of a job (``targets``: flag -> target)."""
    for flag, t in targets.items():
        if t.committed:
            print(f"{flag.replace('-out', '').replace('-', ' ')} written to {t.path}")
