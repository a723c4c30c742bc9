"""Model selection in one scan per iteration: every candidate (k, covariance type), with its
``nInit`` restarts, advances together, and each EM pass computes the statistics of every
candidate still running in the same scan of the data.  A candidate that converges leaves
the later passes.  One last shared pass scores every candidate's best run under its final
parameters, for the log-likelihood, BIC and AIC (scikit-learn's formulas, ``n`` the weight
sum).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame

from ..core.covariance import covariance
from .em import InitSpec, best_run, result_of
from ..core.mixture import aic, bic, n_parameters
from ..core.estep import EStepKernel
from ..data.passes import run_pass

CRITERIA = ("bic", "aic")
TABLE_SCHEMA = ("k int, covarianceType string, logLikelihood double, bic double, aic double, "
                "iterations int, converged boolean, seconds double")


@dataclass(frozen=True)
class Candidate:
    """One row of the selection table."""

    k: int
    covariance_type: str
    log_likelihood: float  # total weighted log-likelihood under the final parameters
    bic: float
    aic: float
    iterations: int
    converged: bool
    seconds: float

    def as_row(self) -> tuple:
        return (int(self.k), str(self.covariance_type), float(self.log_likelihood),
                float(self.bic), float(self.aic), int(self.iterations), bool(self.converged),
                float(self.seconds))


def _candidates(ks, covariance_types) -> list[tuple[int, str]]:
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be a non-empty list of k >= 1, got {ks}")
    types = list(dict.fromkeys(covariance_types))
    for t in types:
        covariance(t)
    if not types:
        raise ValueError("covarianceTypes must not be empty")
    return [(k, t) for t in types for k in ks]


def fit_select(gm, dataset: DataFrame, ks, covariance_types=None, criterion: str = "bic"):
    """``(best model, table DataFrame)`` for the candidates ``ks`` x ``covariance_types``.

    ``gm`` is a :class:`~spark_em.GaussianMixture` giving every other setting (its ``k`` and
    ``covarianceType`` are replaced by each candidate's).  The table has one row per
    candidate: k, covarianceType, logLikelihood, bic, aic, iterations, converged, seconds
    (its share of the passes' time).  The best is the lowest ``criterion`` (``bic`` or
    ``aic``).
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    if gm.getInitialModel() is not None:
        raise ValueError("fitSelect starts every candidate afresh: unset initialModel")
    gm._check_params()
    cands = _candidates(ks, covariance_types or [gm.getCovarianceType()])
    n_init = gm.getNInit()
    sample_seed, seeds = gm._seeds(n_init)
    store, data = gm._prepare(dataset, max(k for k, _ in cands), sample_seed)
    specs = [InitSpec(k, t, gm.getInitMode(), s) for k, t in cands for s in seeds]
    labels = [_label(s.k, s.covariance_type, i % n_init, n_init) for i, s in enumerate(specs)]
    with store:
        runs = gm._em(store, data, specs, labels, ks=[k for k, _ in cands],
                      covarianceTypes=[t for _, t in cands])
        per_candidate = [runs[i * n_init:(i + 1) * n_init] for i in range(len(cands))]
        best = [best_run(rs) for rs in per_candidate]
        final = [EStepKernel(r.params, data.centre, moments=False) for r in best]
        scored, _ = run_pass(store, final, data.centre, "score the candidates")
    table = []
    for (k, t), rs, r, st in zip(cands, per_candidate, best, scored):
        ll = float(st.log_likelihood)
        p = n_parameters(k, data.d, t)
        table.append(Candidate(k, t, ll, bic(ll, data.weight_sum, p), aic(ll, p),
                               len(r.history), r.converged, sum(x.seconds for x in rs)))
    i_best = min(range(len(table)), key=lambda i: getattr(table[i], criterion))
    k, t = cands[i_best]
    chosen = gm.copy({gm.k: k, gm.covarianceType: t})
    model = chosen._model(result_of(best[i_best], data), dataset, data.bad_rows)
    frame = dataset.sparkSession.createDataFrame([c.as_row() for c in table], TABLE_SCHEMA)
    return model, frame


def _label(k: int, covariance_type: str, restart: int, n_init: int) -> str:
    label = f"k={k} {covariance_type}"
    return label if n_init == 1 else f"{label} run {restart}"
