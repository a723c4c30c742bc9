"""EM iterations, written once: the starting parameters of runs, and one E-step pass +
M-step for every run still running.

Spark appears only through :func:`spark_em.data.passes.run_pass` on a block store; every
other step is numpy on the driver.  Several runs (``nInit`` restarts, model-selection
candidates of any k and covariance type) advance in lock-step and share each scan of the
data; a run that converges leaves the later passes.  The loop around these steps -- when to
stop, checkpoints, progress -- is the fit session's (:mod:`spark_em.engine.fit_session`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from ..core.component_distance import NEARLY_IDENTICAL, nearly_identical
from ..core.estep import EStepKernel
from ..core.init_summarizers import NearestCentreSummarizer, RandomResponsibilitySummarizer
from ..core.initialisation import initial_centres
from ..core.missing import InitRows, e_step, init_sample, log_responsibilities
from ..core.mixture import GaussianParams
from ..core.quantiles import log_likelihood_quantiles
from ..core.sample_search import MODE as SEARCH_MODE
from ..core.sample_search import search_start
from ..core.segment_statistics import KeyedSummarizer, reoriginated, total_of
from ..core.sufficient_statistics import SuffStats
from ..core.tuning import (
    POLISH_MAX_ITER,
    SEARCH_THREADS,
    SEARCH_THREADS_MIN_WORK,
    search_tolerances,
)
from ..data.passes import run_pass
from ..progress import IterationInfo, PassProfile

log = logging.getLogger("spark_em")


@dataclass(eq=False)  # compared by identity: parameters hold numpy arrays
class Run:
    """The state of one EM run: current parameters, the mean log-likelihood per row of each
    iteration's E-step, and the mean log-likelihood its start came with (a warm start's,
    against which the first change is measured; None: the first change is infinite).

    ``frozen``: statistics added to every E-step's before the M-step (an incremental update:
    the frozen segments' sum, moments about the data's centre); ``estep_params``: the
    parameters of the last E-step (the M-step of its statistics are ``params``);
    ``segment_stats``: that E-step's statistics per segment code, where the store keeps each
    segment's rows apart (moments about the data's centre and the kernel's origin), else
    None."""

    params: GaussianParams
    label: str = "run 0"
    history: list[float] = field(default_factory=list)
    converged: bool = False
    previous: float | None = None
    seconds: float = 0.0
    frozen: SuffStats | None = None
    estep_params: GaussianParams | None = None
    segment_stats: dict | None = None
    start: dict = field(default_factory=dict)  # how its start was found (StartInfo.as_dict)


@dataclass(frozen=True)
class FitResult:
    params: GaussianParams
    log_likelihood_history: list[float]
    num_iter: int
    converged: bool
    weight_sum: float
    n_rows: int
    label: str = "run 0"
    seconds: float = 0.0
    bad_rows: dict = field(default_factory=dict)  # invalid rows left out, by kind
    # quantiles of the training rows' log-likelihood (spark_em.core.quantiles)
    log_likelihood_quantiles: dict = field(default_factory=dict)
    # rows with feature j missing, per feature (missingValues="marginalize"; else empty)
    missing_per_feature: tuple = ()
    start: dict = field(default_factory=dict)  # how the run's start was found


@dataclass(frozen=True)
class InitSpec:
    """How to start one run: ``k`` components of ``covariance_type`` by ``init_mode``;
    ``trials`` and ``max_iter`` are the sample search's (``init_mode="sample-em"``)."""

    k: int
    covariance_type: str
    init_mode: str
    seed: int
    trials: int = 10
    max_iter: int = 50


def initial_starts(
    store, data, specs: Sequence[InitSpec], reg_covar: float, tol: float
) -> list[tuple[GaussianParams, dict]]:
    """The initial parameters of every spec, and how they were found (a JSON-ready dict,
    ``{"mode": ...}`` and, for the sample search, its trials and best sample
    log-likelihood).  ``sample-em`` searches the driver's sample
    (:func:`~spark_em.core.sample_search.search_start`: no pass over the data; with missing
    values, its complete rows as :func:`initial_params` takes them); the other
    modes share one pass (:func:`initial_params`)."""
    starts: dict[int, tuple[GaussianParams, dict]] = {}
    for i, s in enumerate(specs):
        if s.init_mode == SEARCH_MODE:
            # with missing values: the sample's complete rows (or mean-filled rows)
            sample = (
                init_sample(data.sample, s.k, data.centre)[0] if data.marginalize else data.sample
            )
            # one BLAS thread: the sample's GEMMs are small, and a threaded BLAS on a busy
            # driver made the search up to 10x slower (scripts/init_benchmark.py --cost);
            # its starts run SEARCH_THREADS at a time instead, on a large enough sample.
            # the race's and the polish's tolerances and length: core.tuning
            race_tol, polish_tol = search_tolerances(tol)
            with threadpool_limits(1):
                found = search_start(
                    sample,
                    s.k,
                    s.covariance_type,
                    reg_covar,
                    np.random.default_rng(s.seed),
                    trials=s.trials,
                    max_iter=s.max_iter,
                    tol=race_tol,
                    polish_tol=polish_tol,
                    polish_iter=POLISH_MAX_ITER,
                    threads=_search_threads(np.shape(sample), s.k),
                    # where the limit is per thread (OpenMP, MKL), it must be set in each
                    thread_setup=_one_blas_thread,
                )
            if found.degenerate:
                log.warning(
                    "k=%d %s: every start searched on the sample had an empty or collapsed "
                    "component (fewer rows than the covariance needs): k may be too large",
                    s.k,
                    s.covariance_type,
                )
            starts[i] = (found.params, found.as_dict())
    rest = [i for i in range(len(specs)) if i not in starts]
    if rest:
        params = initial_params(store, data, [specs[i] for i in rest], reg_covar)
        for i, p in zip(rest, params):
            starts[i] = (p, {"mode": specs[i].init_mode})
    return [starts[i] for i in range(len(specs))]


def _one_blas_thread() -> None:
    threadpool_limits(1)


def _search_threads(sample_shape: tuple, k: int) -> int:
    """SEARCH_THREADS for a sample large enough to gain from them, else 1."""
    m, d = sample_shape
    if m * k * d < SEARCH_THREADS_MIN_WORK:
        return 1
    return min(SEARCH_THREADS, _usable_cores())


def _usable_cores() -> int:
    """The cores this process may run on (its affinity, where the platform tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def initial_params(
    store, data, specs: Sequence[InitSpec], reg_covar: float
) -> list[GaussianParams]:
    """Initial parameters of every spec, all from one pass over the data: centres from the
    sample (k-means, k-means++, random rows) or random responsibilities, then one M-step.
    With missing values, on the complete rows, or on rows filled with the feature means
    when the sample has too few complete rows (:func:`~spark_em.core.missing.init_sample`)."""
    summarizers = []
    for s in specs:
        sample, complete = (
            init_sample(data.sample, s.k, data.centre) if data.marginalize else (data.sample, True)
        )
        if s.init_mode == "random":
            init = RandomResponsibilitySummarizer(s.k, s.seed, s.covariance_type)
        else:
            centres = initial_centres(sample, s.k, s.init_mode, np.random.default_rng(s.seed))
            init = NearestCentreSummarizer(centres, data.centre, s.covariance_type)
        summarizers.append(InitRows(init, complete) if data.marginalize else init)
    stats, _ = run_pass(store, summarizers, data.centre, "initialise")
    return [st.m_step(data.centre, reg_covar) for st in stats]


def step(
    store,
    data,
    runs: list[Run],
    iteration: int,
    *,
    tol: float,
    reg_covar: float,
    measured: tuple | None = None,
) -> list[IterationInfo]:
    """One EM iteration of every run not yet converged, in one pass shared by all of them;
    the runs are updated in place and the iteration's events returned (one per run).
    ``measured``: ``([statistics], centre)`` of this iteration's E-step when a pass already
    took it (a warm start's first E-step, taken by the validation pass about the model's
    mean ``centre``; ``{segment code: statistics}`` from a store that keeps each segment's
    rows apart), one per run still running: no pass is run for it; the statistics
    are re-centred exactly on each kernel's own origin (the data's centre, or a far
    component's mean) and the iteration's profile is empty (the E-step's time is the
    validation pass's).  A keyed store's passes give each run's statistics per segment
    too (``Run.segment_stats``).

    Convergence: |change in mean weighted log-likelihood per row| < tol (sklearn's rule),
    *and* no two components of the run are still nearly identical
    (:func:`~spark_em.core.component_distance.nearly_identical`).  A start from random
    responsibilities puts every component near the data's mean; EM then leaves that saddle
    point slowly, the log-likelihood barely moves for a few iterations, and sklearn's rule
    alone stops there far below the optimum (-12.84 against -10.47 nats per row on 5
    separated components in 6-D, in 4 of 6 seeds).  Such a run goes on until its
    components separate, or ends at ``maxIter`` unconverged."""
    active = [r for r in runs if not r.converged]
    if not active:
        return []
    t0 = time.perf_counter()
    label = f"EM iteration {iteration}"
    # the E-step in the type of the store's blocks (the dtype Param)
    kernels = [
        e_step(r.params, data.centre, data.marginalize, dtype=store.precision) for r in active
    ]
    if measured is None:
        # a store that keeps each segment's rows apart: the statistics per segment too
        summarizers = [KeyedSummarizer(k) for k in kernels] if store.keyed else kernels
        stats, profile = run_pass(store, summarizers, data.centre, label)
    else:
        taken, about = measured
        stats = [_reoriginated(st, about, data.centre, k.origin) for st, k in zip(taken, kernels)]
        profile = PassProfile()
    by_code = [st if isinstance(st, dict) else None for st in stats]
    stats = [total_of(st) if isinstance(st, dict) else st for st in stats]
    redo = moments_to_redo(kernels, stats, reg_covar)
    if redo:
        log.info(
            "%s: covariances of components %s lost digits to cancellation; their moments "
            "are taken again about their new means",
            label,
            [c.tolist() for _, c in redo.values()],
        )
        again, extra = run_pass(
            store, [k for k, _ in redo.values()], data.centre, f"{label}: exact moments"
        )
        stats, profile = with_redone(stats, redo, again), profile + extra
        for i in redo:  # their per-segment moments lost the same digits: not kept
            by_code[i] = None
    t_pass = time.perf_counter()
    changes = []  # NaN for a run's first iteration without a log-likelihood to compare
    for r, st, segments in zip(active, stats, by_code):
        ll = st.log_likelihood / st.weight_sum
        before = r.history[-1] if r.history else r.previous
        changes.append(ll - before if before is not None else float("nan"))
        r.history.append(ll)
        r.estep_params, r.segment_stats = r.params, segments
        if r.frozen is not None:  # incremental EM: theta <- M(frozen + fresh(theta))
            st = st + reoriginated(r.frozen, data.centre, data.centre, st.origin)
        r.params = st.m_step(data.centre, reg_covar)
        # False for NaN: never on the first change
        r.converged = abs(changes[-1]) < tol and not _unseparated(r, iteration)
    seconds = time.perf_counter() - t0
    for r in active:
        r.seconds += seconds / len(active)
    details = dict(profile.as_dict(), mstep_s=t0 + seconds - t_pass)
    return [
        IterationInfo(
            iteration,
            runs.index(r),
            r.history[-1],
            change,
            seconds,
            label=r.label,
            rows=int(data.n_rows),
            converged=r.converged,
            profile=details,
        )
        for r, change in zip(active, changes)
    ]


def _reoriginated(st, about: np.ndarray, centre: np.ndarray, origin):
    """Statistics (or ``{code: statistics}``) taken about ``about`` as moments about
    ``centre`` + ``origin``."""
    if isinstance(st, dict):
        return {c: reoriginated(v, about, centre, origin) for c, v in st.items()}
    return reoriginated(st, about, centre, origin)


def _unseparated(run: Run, iteration: int) -> bool:
    """Whether two components of ``run`` are still one (logged): then it has not converged."""
    pair = nearly_identical(run.params)
    if pair is not None:
        log.info(
            "iteration %d (%s): change below tol, but components %d and %d are still nearly "
            "identical (Bhattacharyya distance < %g): not converged",
            iteration,
            run.label,
            *pair,
            NEARLY_IDENTICAL,
        )
    return pair is not None


def moments_to_redo(kernels: Sequence[EStepKernel], stats, reg_covar: float) -> dict:
    """``{run index: (kernel, components)}`` for the runs whose new covariances lost digits
    to cancellation (a component that shrank far, in its own standard deviations, from
    where its moments were taken: onto one row, onto one of two clusters 1e6 apart): the
    kernel takes those components' moments about their new means.  The E-step is the same,
    so are N_k and the log-likelihood.  Rare: from the next iteration on, the kernel takes
    such a component's moments about its own mean."""
    redo = {}
    for i, st in enumerate(stats):
        comps = st.imprecise(reg_covar)
        if comps.size:
            redo[i] = (kernels[i].about(st.means_c(), comps), comps)
    return redo


def with_redone(stats, redo: dict, again) -> list:
    """``stats`` with the runs of :func:`moments_to_redo` replaced by ``again`` (their
    statistics from the extra pass, in the same order)."""
    stats = list(stats)
    for i, st in zip(redo, again):
        stats[i] = st
    return stats


def result_of(run: Run, data) -> FitResult:
    """The fit's result from its best run.  No E-step pass under the final parameters: the
    fit ends with the M-step, and reports the last iteration's log-likelihood, as MLlib and
    sklearn do; the quantiles of the rows' log-likelihood come from the driver's sample
    scored under the final parameters (:mod:`spark_em.core.quantiles`)."""
    sample = data.sample if data.marginalize else data.sample[np.isfinite(data.sample).all(axis=1)]
    return FitResult(
        params=run.params,
        log_likelihood_history=list(run.history),
        num_iter=len(run.history),
        converged=run.converged,
        weight_sum=float(data.weight_sum),
        n_rows=int(data.n_rows),
        label=run.label,
        seconds=run.seconds,
        bad_rows=dict(data.bad_rows),
        missing_per_feature=tuple(data.missing_per_feature) if data.marginalize else (),
        log_likelihood_quantiles=log_likelihood_quantiles(
            log_responsibilities(run.params, sample, data.marginalize)[0]
        ),
        start=dict(run.start),
    )


# Runs whose last mean log-likelihoods differ by less than this (relative) are tied: two runs
# at the same optimum differ only by rounding, which depends on the partitioning, and the
# first of them must win on every partitioning.
TIE_TOLERANCE = 1e-10


def best_run(runs: Sequence[Run]) -> Run:
    """The run with the best last mean log-likelihood (the first of those tied with it)."""
    last = [r.history[-1] if r.history else -np.inf for r in runs]
    top = max(last)
    margin = TIE_TOLERANCE * abs(top) if np.isfinite(top) else 0.0
    return next(r for r, v in zip(runs, last) if v >= top - margin)
