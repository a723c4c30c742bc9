"""The EM loop, written once: initialise, then E-step pass + M-step until convergence.

Spark appears only through :func:`spark_em.distributed.run_pass`; every other step is numpy
on the driver.  ``nInit`` restarts run in lock-step and share each scan of the data.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .distributed import PreparedData, run_pass
from .gaussian import GaussianParams
from .init import initial_centres
from .progress import IterationInfo
from .stats import EStepKernel, NearestCentreTask, RandomRespTask

log = logging.getLogger("spark_em")


@dataclass(eq=False)  # compared by identity: parameters hold numpy arrays
class _Run:
    params: GaussianParams
    history: list[float] = field(default_factory=list)
    converged: bool = False


@dataclass
class FitResult:
    params: GaussianParams
    log_likelihood_history: list[float]
    num_iter: int
    converged: bool
    weight_sum: float
    n_rows: int


def initialise(
    data: PreparedData,
    k: int,
    covariance_type: str,
    reg_covar: float,
    init_mode: str,
    seeds: list[int],
) -> list[GaussianParams]:
    """One set of initial parameters per seed, all from a single pass over the data."""
    if init_mode == "random":
        tasks = [RandomRespTask(k, s, covariance_type) for s in seeds]
    else:
        tasks = [
            NearestCentreTask(
                initial_centres(data.sample, k, init_mode, np.random.default_rng(s)),
                data.centre,
                covariance_type,
            )
            for s in seeds
        ]
    return [st.m_step(data.centre, reg_covar) for st in run_pass(data, tasks)]


def run_em(
    data: PreparedData,
    starts: list[GaussianParams],
    *,
    max_iter: int,
    tol: float,
    reg_covar: float,
    progress: Callable[[IterationInfo], None] | None = None,
) -> FitResult:
    """EM from each start; keeps the run with the best last mean log-likelihood.

    Convergence (sklearn's rule): |change in mean weighted log-likelihood per row| < tol.
    """
    runs = [_Run(p) for p in starts]
    for it in range(1, max_iter + 1):
        active = [(i, r) for i, r in enumerate(runs) if not r.converged]
        if not active:
            break
        t0 = time.perf_counter()
        stats = run_pass(data, [EStepKernel(r.params, data.centre) for _, r in active])
        t_pass = time.perf_counter()
        for (_, r), st in zip(active, stats):
            ll = st.log_likelihood / st.weight_sum
            change = ll - r.history[-1] if r.history else float("inf")
            r.history.append(ll)
            r.params = st.m_step(data.centre, reg_covar)
            if abs(change) < tol:
                r.converged = True
        seconds = time.perf_counter() - t0
        profile = dict(data.last_profile or {}, mstep_s=t0 + seconds - t_pass)
        for i, r in active:
            info = IterationInfo(
                it,
                i,
                r.history[-1],
                r.history[-1] - r.history[-2] if len(r.history) > 1 else float("nan"),
                seconds,
                label=f"run {i}",
                rows=int(data.n_rows),
                converged=r.converged,
                profile=profile,
            )
            log.info(
                "iteration %d (run %d): mean log-likelihood %.6f, change %.3g, %.2fs",
                info.iteration, info.run, info.mean_log_likelihood, info.change, info.seconds,
            )
            if progress is not None:
                progress(info)
    best = max(runs, key=lambda r: r.history[-1] if r.history else -np.inf)
    # No E-step under the final parameters here (MLlib and sklearn report the last
    # iteration's log-likelihood too): the fit ends with the M-step, and the summary
    # computes cluster sizes under the final parameters only if they are asked for.
    return FitResult(
        params=best.params,
        log_likelihood_history=list(best.history),
        num_iter=len(best.history),
        converged=best.converged,
        weight_sum=float(data.weight_sum),
        n_rows=int(data.n_rows),
    )
