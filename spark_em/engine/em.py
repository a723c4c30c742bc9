"""The EM loop, written once: initialise, then E-step pass + M-step until convergence.

Spark appears only through :func:`spark_em.data.passes.run_pass` on a block store; every other
step is numpy on the driver.  Several runs (``nInit`` restarts, model-selection candidates
of any k and covariance type) advance in lock-step and share each scan of the data; a run
that converges leaves the later passes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..core.mixture import GaussianParams
from ..core.initialisation import initial_centres
from ..core.estep import EStepKernel, NearestCentreTask, RandomRespTask
from ..data.passes import run_pass
from ..progress import InitialisationDone, IterationInfo, PassProfile

log = logging.getLogger("spark_em")


@dataclass(eq=False)  # compared by identity: parameters hold numpy arrays
class Run:
    """The state of one EM run: current parameters, the mean log-likelihood per row of each
    iteration's E-step, and the mean log-likelihood its start came with (a warm start's,
    against which the first change is measured; None: the first change is infinite)."""

    params: GaussianParams
    label: str = "run 0"
    history: list[float] = field(default_factory=list)
    converged: bool = False
    previous: float | None = None
    seconds: float = 0.0


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


@dataclass(frozen=True)
class InitSpec:
    """How to start one run: ``k`` components of ``covariance_type`` by ``init_mode``."""

    k: int
    covariance_type: str
    init_mode: str
    seed: int


def initial_params(store, data, specs: Sequence[InitSpec], reg_covar: float) -> list[GaussianParams]:
    """Initial parameters of every spec, all from one pass over the data: centres from the
    sample (k-means, k-means++, random rows) or random responsibilities, then one M-step."""
    tasks = []
    for s in specs:
        if s.init_mode == "random":
            tasks.append(RandomRespTask(s.k, s.seed, s.covariance_type))
        else:
            centres = initial_centres(data.sample, s.k, s.init_mode, np.random.default_rng(s.seed))
            tasks.append(NearestCentreTask(centres, data.centre, s.covariance_type))
    stats, _ = run_pass(store, tasks, data.centre, "initialise")
    return [st.m_step(data.centre, reg_covar) for st in stats]


def iterate(
    store,
    data,
    runs: list[Run],
    *,
    max_iter: int,
    tol: float,
    reg_covar: float,
    progress: Callable | None = None,
    on_iteration: Callable[[int, list[Run]], None] | None = None,
    first_iteration: int = 1,
) -> list[Run]:
    """EM iterations ``first_iteration..max_iter`` of every run not yet converged, each
    iteration one pass shared by all of them.  Convergence (sklearn's rule): |change in
    mean weighted log-likelihood per row| < tol.  ``on_iteration(iteration, runs)`` is called
    after each iteration's M-steps (checkpoints)."""
    for it in range(first_iteration, max_iter + 1):
        active = [r for r in runs if not r.converged]
        if not active:
            break
        t0 = time.perf_counter()
        kernels = [EStepKernel(r.params, data.centre) for r in active]
        stats, profile = run_pass(store, kernels, data.centre, f"EM iteration {it}")
        stats, profile = exact_moments(
            lambda ks, label: run_pass(store, ks, data.centre, label), kernels, stats, profile,
            reg_covar, f"EM iteration {it}: exact moments")
        t_pass = time.perf_counter()
        changes = []  # NaN for a run's first iteration without a log-likelihood to compare
        for r, st in zip(active, stats):
            ll = st.log_likelihood / st.weight_sum
            before = r.history[-1] if r.history else r.previous
            changes.append(ll - before if before is not None else float("nan"))
            r.history.append(ll)
            r.params = st.m_step(data.centre, reg_covar)
            r.converged = abs(changes[-1]) < tol  # False for NaN: never on the first change
        seconds = time.perf_counter() - t0
        for r in active:
            r.seconds += seconds / len(active)
        details = dict(profile.as_dict(), mstep_s=t0 + seconds - t_pass)
        for r, change in zip(active, changes):
            info = IterationInfo(
                it, runs.index(r), r.history[-1], change,
                seconds, label=r.label, rows=int(data.n_rows), converged=r.converged,
                profile=details,
            )
            log.info("iteration %d (%s): mean log-likelihood %.6f, change %.3g, %.2fs",
                     it, r.label, info.mean_log_likelihood, info.change, seconds)
            if progress is not None:
                progress(info)
        if on_iteration is not None:
            on_iteration(it, runs)
    return runs


def fit_runs(
    store,
    data,
    start_runs: Callable[[], list[Run]],
    *,
    max_iter: int,
    tol: float,
    reg_covar: float,
    progress: Callable | None = None,
    checkpoint=None,
) -> list[Run]:
    """Runs from ``start_runs()`` (or, when ``checkpoint`` holds the state of this fit, from
    its last finished iteration) iterated to convergence or ``max_iter``; with a
    ``checkpoint`` (:class:`spark_em.engine.checkpoint.Checkpoint`) the state is saved after each
    iteration."""
    state = checkpoint.load(data) if checkpoint is not None else None
    if state is None:
        runs, first = start_runs(), 1
    else:
        done, runs = state
        first = done + 1
        log.info("resuming %d runs from checkpoint %s after iteration %d",
                 len(runs), checkpoint.directory, done)
        if progress is not None:
            progress(InitialisationDone(runs=len(runs), mode="checkpoint", seconds=0.0))
    save = None if checkpoint is None else (
        lambda iteration, current: checkpoint.save(iteration, current, data))
    return iterate(store, data, runs, max_iter=max_iter, tol=tol, reg_covar=reg_covar,
                   progress=progress, on_iteration=save, first_iteration=first)


def exact_moments(e_pass: Callable, kernels, stats, profile, reg_covar, label):
    """Statistics whose new covariances lost digits to cancellation (a component that
    shrank far, in its own standard deviations, from where its moments were taken: onto one
    row, onto one of two clusters 1e6 apart) are taken again about the new means, in one
    more pass for those runs only.  The E-step is the same, so are N_k and the
    log-likelihood.  Rare: from the next iteration on, the kernel takes such a component's
    moments about its own mean.  ``e_pass(kernels, label) -> (stats, PassProfile)`` runs a
    pass (:func:`~spark_em.data.passes.run_pass` on the fit's store)."""
    redo = [(i, comps) for i, st in enumerate(stats) if (comps := st.imprecise(reg_covar)).size]
    if not redo:
        return stats, profile
    log.info("%s: covariances of components %s lost digits to cancellation; their moments "
             "are taken again about their new means", label, [c.tolist() for _, c in redo])
    again = [kernels[i].about(stats[i].means_c(), comps) for i, comps in redo]
    more, extra = e_pass(again, label)
    stats = list(stats)
    for (i, _), st in zip(redo, more):
        stats[i] = st
    summed = {key: value + getattr(extra, key) for key, value in profile.as_dict().items()}
    return stats, PassProfile(**summed)


def result_of(run: Run, data) -> FitResult:
    """The fit's result from its best run.  No E-step under the final parameters: the fit
    ends with the M-step, and reports the last iteration's log-likelihood, as MLlib and
    sklearn do."""
    return FitResult(
        params=run.params, log_likelihood_history=list(run.history), num_iter=len(run.history),
        converged=run.converged, weight_sum=float(data.weight_sum), n_rows=int(data.n_rows),
        label=run.label, seconds=run.seconds,
    )


def best_run(runs: Sequence[Run]) -> Run:
    """The run with the best last mean log-likelihood (the first on ties)."""
    return max(runs, key=lambda r: r.history[-1] if r.history else -np.inf)

