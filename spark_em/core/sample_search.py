"""The starting point of a fit, searched on the driver's sample (``initMode="sample-em"``).
Numpy only, no Spark, no scan of the data.

One start (k-means, or any start followed by EM on the data) lands on the optimum EM would
reach from it; on overlapping components that is often a plateau where two true components
stay merged (scikit-learn's default misses the optimum in about a third of the seeds on the
issue's 5-component mixture).  Biernacki, Celeux & Govaert (2003, "Choosing starting values
for the EM algorithm for getting the highest likelihood in multivariate Gaussian mixture
models", CSDA 41) compare the strategies and recommend *short runs of EM from many starts*:
that is what this module does, on the ``initSampleSize`` rows the validation pass has already
drawn, so the search costs driver time only.

:func:`search_start`:

1. ``trials`` starts: two of every three are k-means (k-means++ seeding, then Lloyd) and one
   random responsibilities (both as in :mod:`spark_em.core.initialisation` and
   :mod:`spark_em.core.init_summarizers`), each turned into parameters by one M-step on the
   sample in the fit's covariance type;
2. a *successive-halving race* of short EM runs on the sample: every start runs
   ``max_iter // 4`` iterations, the better half (by sample log-likelihood) goes on to
   ``max_iter // 2``, the better half of those to ``max_iter``.  A start converges like a
   fit (change below ``tol`` with no two components nearly identical) and then stops.  The
   race's E-steps run in ``race_dtype`` (float32 by default, ``SEARCH_RACE_DTYPE`` of
   :mod:`spark_em.core.tuning`; in float64 where float32 does not resolve the components,
   ``SEARCH_FLOAT32_BOUND`` there), its M-steps in float64; a change in log-likelihood is
   only taken between two E-steps of the same type;
3. the start with the best sample mean log-likelihood among those without an empty or
   collapsed component is kept (``degenerate`` says when every start had one);
4. that start is *polished*: EM on the sample goes on from it until its change falls below
   ``polish_tol`` or after ``polish_iter`` more iterations (the polished start is kept
   unless a component empties or collapses on the way; then the race's winner is).  The
   race only needs the optimum's basin; the polish brings the start near the sample's
   optimum, so that EM on the data, which stops at the fit's ``tol``, does not stop on the
   slow approach to it (:data:`spark_em.core.tuning.POLISH_TOL_FACTOR`).  The polish runs
   in float64.

Its cost is at most about ``trials * max_iter * 0.4`` E-steps on the sample's rows (200 with
the defaults of 10 trials and 50 iterations; starts that converge stop earlier) -- for a
10,000-row sample, at most about 2 E-step passes over 1M rows, paid once on the driver --
plus the polish's ``polish_iter`` at most.  The fit runs it with one BLAS thread, its starts
``SEARCH_THREADS`` at a time on a large enough sample, and the tolerances and polish length of
:mod:`spark_em.core.tuning` (:func:`spark_em.engine.em.initial_starts`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from ..errors import IllDefinedCovarianceError
from .component_distance import nearly_identical
from .estep import EStepKernel
from .init_summarizers import NearestCentreSummarizer, RandomResponsibilitySummarizer
from .initialisation import kmeans_plusplus, lloyd
from .mixture import GaussianParams
from .precision import FLOAT64, precision
from .sufficient_statistics import SuffStats
from .summarizers import Chunk, MixtureSummarizer
from .tuning import SEARCH_FLOAT32_BOUND, SEARCH_RACE_DTYPE

MODE = "sample-em"


@dataclass(frozen=True)
class SearchResult:
    """The start a search found, and how: ``sample_log_likelihood`` is the mean
    log-likelihood per sample row at the winner's last E-step; ``per_trial`` every start's
    last one (``kinds[i]`` its kind); ``iterations`` the EM iterations of the race on the
    sample, ``polish_iterations`` those of the polish after it; ``degenerate`` True when
    every start ended with an empty or collapsed component."""

    params: GaussianParams
    sample_log_likelihood: float
    best: int
    kinds: tuple[str, ...]
    per_trial: tuple[float, ...]
    iterations: int
    degenerate: bool
    sample_rows: int
    polish_iterations: int = 0

    def as_dict(self) -> dict:
        """What the summary, the reports and the checkpoint keep (JSON values)."""
        return {
            "mode": MODE,
            "trials": len(self.kinds),
            "best": int(self.best),
            "bestKind": self.kinds[self.best],
            "sampleRows": int(self.sample_rows),
            "sampleLogLikelihood": float(self.sample_log_likelihood),
            "sampleIterations": int(self.iterations),
            "polishIterations": int(self.polish_iterations),
            "degenerate": bool(self.degenerate),
            "perTrial": [float(v) for v in self.per_trial],
        }


@dataclass
class _Trial:
    kind: str
    params: GaussianParams
    history: list
    degenerate: bool = False
    converged: bool = False
    exact: bool = True  # whether the last log-likelihood in history came from float64

    @property
    def score(self) -> float:
        return self.history[-1] if self.history else -np.inf


def start_kinds(trials: int) -> tuple[str, ...]:
    """The kind of each start: ``kmeans`` twice, then ``random``, repeated."""
    return tuple("random" if i % 3 == 2 else "kmeans" for i in range(trials))


def search_start(
    sample: np.ndarray,
    k: int,
    covariance_type: str,
    reg_covar: float,
    rng: np.random.Generator,
    *,
    trials: int,
    max_iter: int,
    tol: float,
    polish_tol: float = 0.0,
    polish_iter: int = 0,
    threads: int = 1,
    thread_setup: Callable[[], object] | None = None,
    race_dtype: str = SEARCH_RACE_DTYPE,
) -> SearchResult:
    """The best of ``trials`` short EM runs on ``sample (m, d)`` (rows with a non-finite
    value are left out); see the module's docstring.  The same rows of ``sample`` (in any
    order) and the same ``rng`` give the same result, with any number of ``threads`` (the
    starts are made, and each rung of the race is run, that many starts at a time: each
    start's runs touch only its own state; ``thread_setup`` runs first in each thread --
    the fit's limit of one BLAS thread, where that limit is per thread).  ``race_dtype``:
    the type of the race's E-steps (``"float32"`` or ``"float64"``)."""
    X = np.asarray(sample, dtype=np.float64)
    X = X[np.isfinite(X).all(axis=1)]
    # rows in lexicographic order: the result depends on the sample's rows, not their order
    X = X[np.lexsort(X.T[::-1])] if X.shape[1] else X
    if X.shape[0] < k:
        raise ValueError(f"the sample has {X.shape[0]} usable rows, fewer than k={k}")
    centre = X.mean(axis=0)
    chunk = Chunk(X, np.ones(X.shape[0]), centre)
    chunk.Xc  # noqa: B018  (its cached centred rows: made once, before the starts share it)
    reach2 = float(np.einsum("ij,ij->i", chunk.Xc, chunk.Xc).max())
    step_dtype = partial(_step_dtype, race_dtype, reach2)
    kinds = start_kinds(trials)
    seeds = rng.integers(0, 2**31 - 1, size=trials)
    with _mapper(threads, thread_setup) as each:
        pool = each(
            lambda ks: _Trial(
                ks[0], _initial(ks[0], chunk, k, covariance_type, reg_covar, int(ks[1])), []
            ),
            zip(kinds, seeds),
        )
        iterations = 0
        alive = list(pool)
        for rung_end in _rungs(max_iter):
            iterations += sum(
                each(
                    lambda t, end=rung_end: _short_em(t, chunk, reg_covar, tol, end, step_dtype),
                    alive,
                )
            )
            if rung_end < max_iter:
                ranked = sorted(alive, key=lambda t: (t.degenerate, -t.score))
                alive = ranked[: max(1, (len(ranked) + 1) // 2)]
    ok = [i for i, t in enumerate(pool) if not t.degenerate and t.history]
    candidates = ok or [i for i, t in enumerate(pool)]
    best = max(candidates, key=lambda i: (pool[i].score, -i))
    polished = 0
    if ok and polish_iter > 0:
        winner = pool[best]
        trial = replace(winner, history=list(winner.history), converged=False)
        polished = _short_em(trial, chunk, reg_covar, polish_tol, len(trial.history) + polish_iter)
        if not trial.degenerate:  # a component dying on the way: the race's winner stays
            pool[best] = trial
    return SearchResult(
        params=pool[best].params,
        sample_log_likelihood=pool[best].score,
        best=best,
        kinds=kinds,
        per_trial=tuple(t.score for t in pool),
        iterations=iterations,
        degenerate=not ok,
        sample_rows=int(X.shape[0]),
        polish_iterations=polished,
    )


@contextlib.contextmanager
def _mapper(threads: int, setup: Callable[[], object] | None = None):
    """``each(fn, items) -> [fn(item), ...]`` in order, on ``threads`` threads (numpy's
    GEMMs and most ufuncs release the GIL), each of which runs ``setup`` first."""
    if threads <= 1:
        yield lambda fn, items: [fn(x) for x in items]
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="spark-em-search", initializer=setup) as ex:
        yield lambda fn, items: list(ex.map(fn, items))


def _rungs(max_iter: int) -> list[int]:
    """Iteration counts after which the race halves the starts, and its end."""
    ends = sorted({max(1, max_iter // 4), max(1, max_iter // 2), max_iter})
    return [e for e in ends if e <= max_iter] or [max_iter]


def _initial(kind: str, chunk: Chunk, k: int, covariance_type: str, reg_covar: float, seed: int):
    if kind == "kmeans":
        rng = np.random.default_rng(seed)
        centres = lloyd(chunk.X, kmeans_plusplus(chunk.X, k, rng))
        summarizer: MixtureSummarizer = NearestCentreSummarizer(
            centres, chunk.centre, covariance_type
        )
    else:
        summarizer = RandomResponsibilitySummarizer(k, seed, covariance_type)
    return _summarise(summarizer, chunk).m_step(chunk.centre, reg_covar)


def _summarise(summarizer, chunk: Chunk) -> SuffStats:
    stats = summarizer.new_stats(chunk.X.shape[1])
    summarizer.accumulate(stats, chunk)
    return stats


def _step_dtype(dtype: str, reach2: float, params: GaussianParams) -> str:
    """``dtype``, or float64 where float32 does not resolve ``params``' components:
    float32's eps x ``reach2`` (the largest squared norm of the sample's centred rows) x
    the largest squared Frobenius norm of a precision's Cholesky factor above
    SEARCH_FLOAT32_BOUND (see :mod:`spark_em.core.tuning`)."""
    chosen = precision(dtype)
    if chosen is FLOAT64:
        return dtype
    pc = np.asarray(params.precisions_cholesky)
    squares = (pc * pc).reshape(1 if params.covariance_type == "tied" else pc.shape[0], -1)
    if params.covariance_type == "spherical":  # one value stands for d equal ones
        squares = squares * params.d
    largest = float(squares.sum(axis=1).max())
    return dtype if chosen.eps * reach2 * largest <= SEARCH_FLOAT32_BOUND else "float64"


def _float64(params: GaussianParams) -> str:
    return "float64"


def _estep_and_mstep(params: GaussianParams, chunk: Chunk, reg_covar: float, dtype) -> tuple:
    """``(statistics, new parameters or None, exact)`` of one EM iteration on the sample
    from ``params``, the E-step in ``dtype(params)``.  A float32 E-step whose M-step fails
    or lands where float32 does not resolve the components is taken again in float64;
    ``exact``: the statistics are float64's.  The new parameters are None where the
    float64 M-step is left to the caller (it checks for collapsed components first)."""
    kernel = EStepKernel(params, chunk.centre, dtype=dtype(params))
    stats = _summarise(kernel, chunk)
    if kernel.precision is FLOAT64:
        return stats, None, True
    if not _collapsed(stats):
        try:
            new = stats.m_step(chunk.centre, reg_covar)
        except IllDefinedCovarianceError:
            new = None
        if new is not None and dtype(new) != "float64":
            return stats, new, False
    return _summarise(EStepKernel(params, chunk.centre), chunk), None, True


def _short_em(
    trial: _Trial,
    chunk: Chunk,
    reg_covar: float,
    tol: float,
    until: int,
    dtype: Callable[[GaussianParams], str] = _float64,
) -> int:
    """EM on the sample until ``trial`` has ``until`` iterations, converges or degenerates;
    the number of iterations run.  ``dtype``: the type of each E-step, from the parameters
    it is taken under (:func:`_estep_and_mstep`); the change in log-likelihood is taken
    between E-steps of the same type only (float32's differs from float64's by up to
    about 1e-6 per row, the polish's tolerance)."""
    ran = 0
    while len(trial.history) < until and not (trial.converged or trial.degenerate):
        stats, new, exact = _estep_and_mstep(trial.params, chunk, reg_covar, dtype)
        ll = stats.log_likelihood / stats.weight_sum
        same = bool(trial.history) and trial.exact == exact
        change = ll - trial.history[-1] if same else np.inf
        trial.history.append(float(ll))
        trial.exact = exact
        ran += 1
        if _collapsed(stats):
            trial.degenerate = True  # its parameters stay those of the last good M-step
            break
        trial.params = new if new is not None else stats.m_step(chunk.centre, reg_covar)
        trial.converged = abs(change) < tol and nearly_identical(trial.params) is None
    return ran


def _collapsed(stats: SuffStats) -> bool:
    """Whether a component is empty or holds too few rows to define its covariance (fewer
    than d + 1 for full covariances, 2 for diagonal and spherical; only empty for tied)."""
    d = stats.d
    if stats.covariance_type == "tied":
        least = 1.0
    elif stats.covariance_type == "full":
        least = d + 1.0
    else:
        least = 2.0
    return bool(np.any(stats.nk < least))
