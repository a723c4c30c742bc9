"""Model selection in one scan per iteration: every candidate (k, covariance type), with its
``nInit`` restarts, advances together, and each EM pass computes the statistics of every
candidate still running in the same scan of the data.  A candidate that converges leaves
the later passes.  One last shared pass scores every candidate's best run under its final
parameters, for the log-likelihood, BIC and AIC (scikit-learn's formulas, ``n`` the weight
sum).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..core.covariance import covariance
from ..core.mixture import aic, bic, n_parameters
from .em import FitResult, best_run
from .fit_session import FitSession, FitSettings

CRITERIA = ("bic", "aic")
TABLE_SCHEMA = (
    "k int, covarianceType string, logLikelihood double, meanLogLikelihood double, "
    "bic double, aic double, iterations int, converged boolean, seconds double, "
    "degenerateStart boolean"
)


@dataclass(frozen=True)
class Candidate:
    """One row of the selection table."""

    k: int
    covariance_type: str
    log_likelihood: float  # total weighted log-likelihood under the final parameters
    mean_log_likelihood: float  # the same per row (weighted mean), as sklearn's score
    bic: float
    aic: float
    iterations: int
    converged: bool
    seconds: float
    # the sample search found only starts with an empty or collapsed component (k too large)
    degenerate_start: bool = False

    def as_row(self) -> tuple:
        return (
            int(self.k),
            str(self.covariance_type),
            float(self.log_likelihood),
            float(self.mean_log_likelihood),
            float(self.bic),
            float(self.aic),
            int(self.iterations),
            bool(self.converged),
            float(self.seconds),
            bool(self.degenerate_start),
        )


@dataclass(frozen=True)
class Selection:
    """The candidates' table and the best candidate's fit."""

    candidates: list[Candidate]
    best: Candidate
    result: FitResult


def candidates_of(ks, covariance_types) -> list[tuple[int, str]]:
    """``(k, covariance type)`` pairs, ValueError for an empty or invalid list."""
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be a non-empty list of k >= 1, got {ks}")
    types = list(dict.fromkeys(covariance_types))
    for t in types:
        covariance(t)
    if not types:
        raise ValueError("covarianceTypes must not be empty")
    return [(k, t) for t in types for k in ks]


def check_criterion(criterion: str) -> str:
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    return criterion


def fit_select(
    dataset,
    settings: FitSettings,
    candidates: list[tuple[int, str]],
    criterion: str,
    progress: Callable | None = None,
) -> Selection:
    """Every candidate of ``candidates`` fitted in one scan per iteration, scored in one
    more; the best is the lowest ``criterion`` (``bic`` or ``aic``).  ``settings`` give
    every other setting (their ``k`` and covariance type are the candidates')."""
    check_criterion(criterion)
    if settings.warm_start is not None:
        raise ValueError("fitSelect starts every candidate afresh: unset initialModel")
    n_init = settings.n_init
    labels = [_label(k, t, i, n_init) for k, t in candidates for i in range(n_init)]
    with FitSession.open(dataset, settings, max(k for k, _ in candidates), progress) as session:
        runs = session.iterate(session.start(candidates, labels))
        per_candidate = [runs[i * n_init : (i + 1) * n_init] for i in range(len(candidates))]
        best = [best_run(rs) for rs in per_candidate]
        scored = session.score([r.params for r in best], "score the candidates")
        data = session.data
        table = []
        for (k, t), rs, r, st in zip(candidates, per_candidate, best, scored):
            ll = float(st.log_likelihood)
            p = n_parameters(k, data.d, t)
            table.append(
                Candidate(
                    k,
                    t,
                    ll,
                    ll / data.weight_sum,
                    bic(ll, data.weight_sum, p),
                    aic(ll, p),
                    len(r.history),
                    r.converged,
                    sum(x.seconds for x in rs),
                    bool(r.start.get("degenerate", False)),
                )
            )
        i_best = min(range(len(table)), key=lambda i: getattr(table[i], criterion))
        return Selection(table, table[i_best], session.result(best[i_best]))


def _label(k: int, covariance_type: str, restart: int, n_init: int) -> str:
    label = f"k={k} {covariance_type}"
    return label if n_init == 1 else f"{label} run {restart}"
