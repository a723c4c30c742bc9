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
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .config import Settings
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
                except BaseException:
                    tracker.end(False)
                    raise
                tracker.end(True)

    def stage(self, flag: str, write: Callable[[str], None]) -> None:
        """Write the output of ``flag`` (if asked for) to its temporary sibling."""
        if flag in self.targets:
            self.outputs.stage(self.targets[flag], write)

    def commit(self) -> None:
        """Rename every staged output into place (all or none)."""
        self.outputs.commit()

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
        gm.setCheckpointDir(settings["checkpoint-dir"])
    return gm
