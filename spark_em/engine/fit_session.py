"""One fit, as every fit runs it: check -> seeds -> prepare the store -> start the runs
(fresh, from an initial model, or from a checkpoint) -> iterate -> result.

:class:`FitSession` holds what a fit learns once -- the opened block store and the
prepared data -- and offers the steps; :func:`fit`, the model
selection (:mod:`spark_em.engine.selection`) and the coming incremental update are short
sequences of them.  The estimator hands over its Params as a :class:`FitSettings` value and
gets a :class:`~spark_em.engine.em.FitResult` back; nothing here calls back into it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..core.missing import e_step
from ..core.mixture import GaussianParams
from ..data.passes import run_pass
from ..data.prepare import PreparedData, prepare
from ..errors import InvalidInputError
from ..progress import InitialisationDone, ValidationDone
from .checkpoint import Checkpoint, CheckpointMismatchError
from .em import FitResult, InitSpec, Run, initial_starts, result_of, step
from .warm_start import WarmStart

log = logging.getLogger("spark_em")


@dataclass(frozen=True)
class FitSettings:
    """What a fit runs with: the estimator's Params, resolved and checked.

    ``fingerprint``: the settings a checkpoint must match (besides the candidates), as
    ``(name, value)`` pairs in a stable order."""

    features: str | list[str]
    weight_col: str | None
    k: int
    covariance_type: str
    max_iter: int
    tol: float
    reg_covar: float
    init_mode: str
    n_init: int
    seed: int | None
    init_sample_size: int
    aggregation_depth: int
    block_cache: str
    skip_invalid: bool
    dtype: str = "float64"
    init_trials: int = 10
    init_max_iter: int = 50
    warm_start: WarmStart | None = None
    checkpoint_dir: str | None = None
    discard_checkpoint: bool = False  # start afresh whatever the checkpoint directory holds
    marginalize: bool = False  # missingValues="marginalize": NaN and nulls are missing values
    fingerprint: tuple = field(default=())


def seeds(seed: int | None, runs: int) -> tuple[int, list[int]]:
    """The validation sample's seed and one seed per initialisation, from ``seed`` (None:
    fresh randomness); a negative seed (MLlib allows any long) counts as its 64-bit two's
    complement."""
    rng = np.random.default_rng(None if seed is None else seed % 2**64)
    sample_seed, *rest = (int(s) for s in rng.integers(0, 2**31 - 1, 1 + runs))
    return sample_seed, rest


class FitSession:
    """The prepared data of one fit in an opened block store, and the steps of the fit.

    A context manager: leaving it releases the store (after the fit, an error, or a
    ``KeyboardInterrupt``), and, when the fit finished without an error, removes its
    checkpoint (a rerun starts afresh instead of meeting a finished fit's state).
    ``progress`` receives the events of :mod:`spark_em.progress`.
    """

    def __init__(
        self,
        store,
        data: PreparedData,
        settings: FitSettings,
        run_seeds: list[int],
        progress: Callable | None = None,
        warm_estep: tuple | None = None,
    ):
        self.store, self.data, self.settings = store, data, settings
        self.run_seeds = run_seeds
        self.progress = progress
        # the warm start's first E-step, taken in the validation pass: ([stats], centre)
        self.warm_estep = warm_estep
        self._checkpoint: Checkpoint | None = None
        self._first_iteration = 1

    # ------------------------------------------------------------------ check, seeds, prepare
    @classmethod
    def open(
        cls,
        dataset,
        settings: FitSettings,
        k_max: int,
        progress: Callable | None = None,
        segments: tuple | None = None,
    ) -> FitSession:
        """Validate ``dataset`` and put its blocks in a store, in one pass (emits
        :class:`~spark_em.progress.ValidationDone`).  Raises
        :class:`~spark_em.InvalidInputError` for bad input or ``k_max`` above the valid rows.
        ``segments``: ``(segment column, keys)``, for a store that can keep each segment's
        rows apart (:func:`~spark_em.data.prepare.prepare`)."""
        sample_seed, run_seeds = seeds(settings.seed, settings.n_init)
        first = _first_step(settings)
        store, data = prepare(
            dataset,
            settings.features,
            settings.weight_col,
            sample_size=max(settings.init_sample_size, k_max),
            seed=sample_seed,
            aggregation_depth=settings.aggregation_depth,
            block_cache=settings.block_cache,
            skip_invalid=settings.skip_invalid,
            dtype=settings.dtype,
            missing=settings.marginalize,
            first_step=first,
            segments=segments,
        )
        _warn_skipped(data.bad_rows)
        try:
            if k_max > data.n_rows:
                raise InvalidInputError(
                    f"k={k_max} is larger than the number of valid rows ({data.n_rows}) in "
                    f"featuresCol {settings.features!r}"
                )
            warm = settings.warm_start
            warm_estep = warm.first_estep(data, settings.reg_covar) if warm else None
        except BaseException:
            store.release()
            raise
        session = cls(store, data, settings, run_seeds, progress, warm_estep)
        session._emit(
            ValidationDone(
                rows=data.n_rows,
                weight_sum=data.weight_sum,
                bad_rows=data.bad_rows,
                seconds=data.seconds,
                store=data.store_name,
            )
        )
        return session

    def __enter__(self) -> FitSession:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.store.release()
        if exc_type is None and self._checkpoint is not None:
            self._checkpoint.remove()
        return False

    def _emit(self, event) -> None:
        if self.progress is not None:
            self.progress(event)

    # ------------------------------------------------------------------ start the runs
    def start(self, candidates: Sequence[tuple[int, str]], labels: Sequence[str]) -> list[Run]:
        """The runs of ``candidates`` (``(k, covariance type)``, ``nInit`` runs each, named
        by ``labels``): from the checkpoint when it holds this fit's state, else from the
        initial model (one run), else one initialisation per run, all in one pass.  Emits
        :class:`~spark_em.progress.InitialisationDone`."""
        s, data = self.settings, self.data
        if s.checkpoint_dir:
            self._checkpoint = Checkpoint(
                s.checkpoint_dir, dict(s.fingerprint, **_candidate_settings(candidates))
            )
            if s.discard_checkpoint:
                self._checkpoint.remove()
            state = self._checkpoint.load(data)
            if state is not None:
                done, runs = state
                if done > s.max_iter:  # its iterations cannot be undone: refuse, not lie
                    raise CheckpointMismatchError(
                        f"checkpoint {self._checkpoint.directory} holds {done} finished "
                        f"iterations, more than maxIter={s.max_iter}; raise maxIter to at least "
                        f"{done} to resume it, or discard it (setCheckpointDir(path, "
                        "discard=True), --discard-checkpoint)",
                        self._checkpoint.directory,
                        "settings",
                        f"maxIter is {s.max_iter} here, {done} iterations in the checkpoint",
                    )
                self._first_iteration = done + 1
                log.info(
                    "resuming %d runs from checkpoint %s after iteration %d",
                    len(runs),
                    self._checkpoint.directory,
                    done,
                )
                self._emit(
                    InitialisationDone(
                        runs=len(runs),
                        mode="checkpoint",
                        seconds=0.0,
                        starts=tuple(r.start for r in runs),
                    )
                )
                return runs
        t0 = time.perf_counter()
        if s.warm_start is not None:
            params = s.warm_start.checked(s.k, s.covariance_type, data.d, s.features)
            mode = "initialModel"
            runs = [
                Run(params, labels[0], previous=s.warm_start.previous(data), start={"mode": mode})
            ]
        else:
            specs = [
                InitSpec(k, t, s.init_mode, seed, s.init_trials, s.init_max_iter)
                for k, t in candidates
                for seed in self.run_seeds
            ]
            starts = initial_starts(self.store, data, specs, s.reg_covar, s.tol)
            runs = [Run(p, label, start=how) for (p, how), label in zip(starts, labels)]
            mode = s.init_mode
        self._emit(
            InitialisationDone(
                runs=len(runs),
                mode=mode,
                seconds=time.perf_counter() - t0,
                starts=tuple(r.start for r in runs),
            )
        )
        return runs

    # ------------------------------------------------------------------ iterate
    def iterate(self, runs: list[Run]) -> list[Run]:
        """EM until every run converged or ``maxIter`` (from the iteration after a resumed
        checkpoint's), one pass per iteration for all runs; the state is checkpointed after
        each iteration when a checkpoint directory is set."""
        s = self.settings
        for iteration in range(self._first_iteration, s.max_iter + 1):
            events = step(
                self.store,
                self.data,
                runs,
                iteration,
                tol=s.tol,
                reg_covar=s.reg_covar,
                measured=self._measured(runs, iteration),
            )
            if not events:
                break
            for info in events:
                log.info(
                    "iteration %d (%s): mean log-likelihood %.6f, change %.3g, %.2fs",
                    iteration,
                    info.label,
                    info.mean_log_likelihood,
                    info.change,
                    info.seconds,
                )
                self._emit(info)
            if self._checkpoint is not None:
                self._checkpoint.save(iteration, runs, self.data)
        return runs

    def _measured(self, runs: list[Run], iteration: int) -> tuple | None:
        """The E-step the validation pass took for ``iteration`` of ``runs``: the warm
        start's first, when these runs are that one run still at its initial parameters
        (never after a resumed checkpoint: the merged pass runs only without one)."""
        warm = self.settings.warm_start
        if self.warm_estep is None or warm is None or iteration != 1 or len(runs) != 1:
            return None
        return self.warm_estep if runs[0].params is warm.params else None

    # ------------------------------------------------------------------ results
    def score(self, params: Sequence[GaussianParams], label: str) -> list:
        """The statistics (log-likelihood, N_k) of the data under each of ``params``, in
        one pass (no moments)."""
        c = self.data.centre
        kernels = [
            e_step(p, c, self.data.marginalize, moments=False, dtype=self.store.precision)
            for p in params
        ]
        stats, _ = run_pass(self.store, kernels, self.data.centre, label)
        return stats

    def result(self, run: Run) -> FitResult:
        return result_of(run, self.data)


def _warn_skipped(bad_rows: dict) -> None:
    """One warning for the invalid rows skipped, one for the rows without an observed
    feature (missingValues="marginalize"), which are left out whatever handleInvalid."""
    from ..data.arrow_blocks import UNINFORMATIVE_KINDS

    invalid = {k: v for k, v in bad_rows.items() if v and k not in UNINFORMATIVE_KINDS}
    if invalid:
        log.warning(
            "handleInvalid='skip': %d invalid rows left out of the fit: %s",
            sum(invalid.values()),
            invalid,
        )
    empty = sum(bad_rows.get(k, 0) for k in UNINFORMATIVE_KINDS)
    if empty:
        log.warning(
            "missingValues='marginalize': %d rows with every feature missing left out of the "
            "fit (they carry no information; counted in summary.numRowsSkipped['all_missing'])",
            empty,
        )


def _first_step(s: FitSettings) -> tuple:
    """The warm start's first E-step for the validation pass (:meth:`WarmStart.first_step`);
    ``()`` without an initial model, with ``maxIter=0``, or with a checkpoint directory that
    may hold a state to resume."""
    w = s.warm_start
    if w is None or s.max_iter < 1 or (s.checkpoint_dir and not s.discard_checkpoint):
        return ()
    return w.first_step(s.k, s.covariance_type, s.marginalize, s.dtype)


def _candidate_settings(candidates: Sequence[tuple[int, str]]) -> dict:
    """How a checkpoint names what is fitted: one candidate as ``k``/``covarianceType``,
    several (model selection) as the lists ``ks``/``covarianceTypes``."""
    if len(candidates) == 1:
        ((k, t),) = candidates
        return {"k": k, "covarianceType": t}
    return {"ks": [k for k, _ in candidates], "covarianceTypes": [t for _, t in candidates]}


def fit(dataset, settings: FitSettings, progress: Callable | None = None) -> tuple[FitResult, int]:
    """``(the best run's result, the number of runs)`` of one fit: ``nInit`` runs of
    ``k`` components (or one from the initial model) iterated in lock-step."""
    from .em import best_run

    with FitSession.open(dataset, settings, settings.k, progress) as session:
        n = 1 if settings.warm_start is not None else settings.n_init
        runs = session.start(
            [(settings.k, settings.covariance_type)], [f"run {i}" for i in range(n)]
        )
        runs = session.iterate(runs)
        return session.result(best_run(runs)), len(runs)
