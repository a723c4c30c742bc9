"""What a fit reports while it runs: one value per event, given to ``GaussianMixture.progress``.

A progress callback receives, in order: one :class:`ValidationDone` (after the pass that
validates and prepares the data), one :class:`InitialisationDone`, then one
:class:`IterationInfo` per EM iteration and run.  Callbacks should test the type
(``isinstance(event, IterationInfo)``): later versions may add event types.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PassProfile:
    """Timings of one pass over the data.

    ``pass_s`` is the driver's wall time of the pass; ``tasks``, ``read_s`` (waiting for
    and decoding input), ``kernel_s`` (numpy statistics) and ``task_s`` (whole task) are
    summed over the pass's Spark tasks, which run in parallel.
    """

    tasks: float = 0.0
    read_s: float = 0.0
    kernel_s: float = 0.0
    task_s: float = 0.0
    pass_s: float = 0.0

    def as_dict(self) -> dict:
        return {
            "tasks": self.tasks,
            "read_s": self.read_s,
            "kernel_s": self.kernel_s,
            "task_s": self.task_s,
            "pass_s": self.pass_s,
        }

    def __add__(self, other: PassProfile) -> PassProfile:
        """Two passes' timings summed (a pass repeated for some runs counts in full)."""
        return PassProfile(**{k: v + getattr(other, k) for k, v in self.as_dict().items()})


@dataclass(frozen=True)
class ValidationDone:
    """The data are validated and prepared: ``rows`` valid rows (``weight_sum`` their total
    weight), ``bad_rows`` invalid rows by kind (left out with ``handleInvalid="skip"``),
    in ``seconds``; ``store`` names where the prepared blocks live."""

    rows: int
    weight_sum: float
    bad_rows: dict
    seconds: float
    store: str


@dataclass(frozen=True)
class InitialisationDone:
    """Initial parameters of every run are ready (``runs`` of them, by ``mode``)."""

    runs: int
    mode: str
    seconds: float
    # how each run's start was found (``{"mode": ...}``; the sample search adds its trials,
    # best sample log-likelihood, ...: spark_em.core.sample_search.SearchResult.as_dict)
    starts: tuple = ()


@dataclass
class IterationInfo:
    """One EM iteration of one run.

    ``label`` names the run (``"run 0"``; a model-selection candidate such as ``"k=3 full"``);
    ``mean_log_likelihood`` is the mean weighted log-likelihood per row at this iteration's
    E-step and ``change`` its change from the previous iteration (NaN for the first one);
    ``seconds`` is the iteration's wall time, ``rows`` the rows it read, ``profile`` the
    :class:`PassProfile` of its pass plus the driver's ``mstep_s``.
    """

    iteration: int
    run: int
    mean_log_likelihood: float
    change: float
    seconds: float
    label: str = ""
    rows: int = 0
    converged: bool = False
    profile: dict | None = field(default=None)
