"""What every job sets up once: the Spark session and what kind it is, the progress lines,
the MLflow run and the outputs that are written together or not at all.  A command
(:mod:`spark_em.cli.commands`) fills this skeleton with its own work:

    with Job.start(settings, "fit", OUTPUTS) as job:
        ...                                  # read the input, fit, evaluate
        job.stage("model-out", writer)       # each output to a temporary sibling
        job.commit()                         # all of them renamed into place

Leaving the block closes the MLflow run (FAILED when an exception leaves it), removes the
temporaries of outputs that were not committed, and stops a Spark session the job created.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .config import Settings
from .exit_codes import DataError, JobError, classify
from .progress_lines import FitProgress
from .tracking import MlflowRun


@dataclass
class Job:
    """One run of a job.  ``targets``: flag -> output target, for the outputs asked for."""

    settings: Settings
    name: str
    spark: object
    env: object
    outputs: object
    progress: FitProgress
    tracker: MlflowRun
    targets: dict = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    @contextlib.contextmanager
    def start(
        cls,
        settings: Settings,
        name: str,
        outputs: tuple = (),
        overwrite: bool | None = None,
        hint: str | None = None,
    ):
        """The job's session, env, progress, tracker and ``outputs`` (``(flag, kind)``
        pairs; those whose flag is set are checked at once: an existing output without
        ``--overwrite`` fails here, before any work)."""
        from ..data.env import SparkEnv
        from .outputs import Outputs
        from .spark_session import job_session

        started = time.perf_counter()
        tracker = MlflowRun(settings)
        with job_session(settings, f"spark-em {name}") as spark:
            env = SparkEnv.of(spark)
            replace = settings.get("overwrite", False) if overwrite is None else overwrite
            with Outputs(spark, replace, hint=hint) as outs:
                job = cls(
                    settings,
                    name,
                    spark,
                    env,
                    outs,
                    FitProgress(quiet=settings["quiet"]),
                    tracker,
                    started=started,
                )
                for flag, kind in outputs:
                    if settings.get(flag):
                        job.targets[flag] = outs.add(flag, settings[flag], kind)
                try:
                    yield job
                except BaseException as exc:
                    tracker.end(False)
                    if not isinstance(exc, KeyboardInterrupt):
                        job._report_failure(exc)
                    raise
                tracker.end(True)

    def stage(self, flag: str, write: Callable[[str], None]) -> None:
        """Write the output of ``flag`` (if asked for) to its temporary sibling; a failure
        is one line naming the output (:class:`~spark_em.cli.exit_codes.DataError`)."""
        if flag in self.targets:
            target = self.targets[flag]
            try:
                self.outputs.stage(target, write)
            except JobError:
                raise
            except Exception as exc:
                _, reason = classify(exc)
                raise DataError(
                    f"cannot write --{flag} {target.path}: {reason}; nothing was written"
                ) from exc

    def local_staged(self, flag: str) -> str | None:
        """Where the output of ``flag`` was staged, when that is a path of this machine (a
        local master and no URI scheme), else None."""
        t = self.targets.get(flag)
        if t is None or t.staged is None or not self.env.local_master or "://" in t.path:
            return None
        return t.staged[len("file:") :] if t.staged.startswith("file:") else t.staged

    def written(self) -> dict:
        """``{flag: path}`` of the outputs this run writes: those staged so far and the
        report (staged last).  A report lists only these."""
        return {
            flag: t.path
            for flag, t in self.targets.items()
            if t.staged is not None or t.committed or flag == "report-out"
        }

    def _report_failure(self, exc: BaseException) -> None:
        """With ``--report-out``: a report of the failure (its one line, exit code and the
        details the error carries, such as the invalid rows), written instead of anything
        else; the other outputs are left as they were."""
        target = self.targets.get("report-out")
        if target is None or target.committed:
            return
        from .reports import write_json

        code, message = classify(exc)
        document = {
            "spark_em_report": {"version": 1, "job": self.name},
            "status": "failed",
            "exit_code": code,
            "error": message,
            **(getattr(exc, "report", None) or {}),
            "outputs": {"report-out": target.path},
            "seconds": {"total": round(self.seconds(), 3)},
        }
        with contextlib.suppress(Exception):
            target.rollback()  # a report staged before the failure
            target.staged = None
            self.outputs.stage(target, lambda p: write_json(document, p))
            target.commit()
            target.finish()

    def commit(self) -> None:
        """Rename every staged output into place (all or none)."""
        self.outputs.commit()

    def warn(self, text: str) -> None:
        """A warning line on stderr (even with ``--quiet``)."""
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} WARNING: {text}", file=sys.stderr, flush=True)

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def print_written(self) -> None:
        """One line per committed output."""
        for flag, t in self.targets.items():
            if t.committed:
                print(f"{flag.replace('-out', '').replace('-', ' ')} written to {t.path}")


def estimator(settings: Settings, job: str, features, weight_col, **fixed):
    """A ``GaussianMixture`` with every Param the job's options set (the Param table's
    flags), ``fixed`` on top, and the checkpoint directory when asked for."""
    from .. import GaussianMixture
    from .options import param_options

    params = {
        o.param: settings[o.key] for o in param_options(job) if settings.get(o.key) is not None
    }
    params.update(fixed)
    gm = GaussianMixture(featuresCol=features, weightCol=weight_col, **params)
    if settings.get("checkpoint-dir"):
        gm.setCheckpointDir(settings["checkpoint-dir"], settings.get("discard-checkpoint", False))
    return gm


@contextlib.contextmanager
def checkpoint_words(settings):
    """A checkpoint of another fit, refused in the job's words: what differs and the flag
    that discards it (exit 2)."""
    from ..engine.checkpoint import CheckpointMismatchError
    from .exit_codes import UsageError

    try:
        yield
    except CheckpointMismatchError as exc:
        hint = {
            "rows": ": another --input, --where or --sample-fraction, or new rows",
            "features": ": other --features",
        }.get(exc.what, "")
        raise UsageError(
            f"--checkpoint-dir {settings['checkpoint-dir']} holds another fit's state "
            f"({exc.difference}{hint}); pass --discard-checkpoint to start afresh"
        ) from exc
