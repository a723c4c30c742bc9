"""Scoring and fitting helpers of ``scripts/init_benchmark.py``: every library's default
fit, the mean log-likelihood of a fit's parameters (plain numpy), scikit-learn EM continued
from them (which optimum the fit was heading for), the best known optimum, ``fitSelect`` runs."""

from __future__ import annotations

import time
import warnings

import numpy as np

DEGENERATE_EIGEN = 1e-5  # a covariance eigenvalue below this (10 x regCovar): spurious optimum


# ------------------------------------------------------------------------------ scoring
def mean_loglik(X, weights, means, covariances) -> float:
    """Mean log-likelihood per row of X under a full-covariance mixture (plain numpy)."""
    from scipy.special import logsumexp

    cols = []
    for w, m, c in zip(weights, means, covariances):
        L = np.linalg.cholesky((c + c.T) / 2)
        z = np.linalg.solve(L, (X - m).T)
        logdet = 2 * np.log(np.diag(L)).sum()
        cols.append(
            np.log(w) - 0.5 * (np.sum(z * z, axis=0) + logdet + X.shape[1] * np.log(2 * np.pi))
        )
    return float(logsumexp(np.stack(cols, axis=1), axis=1).mean())


def sk_em(X, k, **kw):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture as SkGM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SkGM(k, **kw).fit(X)


def degenerate(covariances) -> bool:
    """A component with a direction of (almost) no variance: its likelihood is set by
    regCovar (1e-6), not by the data -- a spurious optimum (iris has some), never counted
    as the best known nor as reaching it."""
    return bool(min(np.linalg.eigvalsh(c).min() for c in covariances) < DEGENERATE_EIGEN)


def continued(X, params) -> tuple[float, bool]:
    """scikit-learn EM from ``(weights, means, covariances)`` to tol 1e-6: the mean
    log-likelihood per row of the optimum the fit was heading for, and whether it is
    :func:`degenerate`."""
    w, m, c = params
    c = (c + c.transpose(0, 2, 1)) / 2
    gm = sk_em(
        X,
        len(w),
        tol=1e-6,
        max_iter=1000,
        weights_init=np.asarray(w) / np.sum(w),
        means_init=m,
        precisions_init=np.linalg.inv(c),
    )
    return float(gm.score(X)), degenerate(gm.covariances_)


def reference_optimum(X, k, truth, starts: int = 10) -> dict:
    """Long scikit-learn runs from ``starts`` k-means and ``starts`` random-row starts (and
    from the true parameters): the best non-degenerate mean log-likelihood of each kind, and
    how many runs ended degenerate."""
    runs: dict[str, list] = {"kmeans": [], "random_from_data": []}
    for init in runs:
        for s in range(starts):
            gm = sk_em(X, k, tol=1e-6, max_iter=1000, init_params=init, random_state=s)
            runs[init].append((float(gm.score(X)), degenerate(gm.covariances_)))
    if truth is not None:
        runs["from_truth"] = [
            continued(X, (truth["weights"], truth["means"], truth["covariances"]))
        ]
    out = {
        name: max((v for v, bad in values if not bad), default=float("-inf"))
        for name, values in runs.items()
    }
    out["degenerate_runs"] = sum(bad for values in runs.values() for _, bad in values)
    return out


# ------------------------------------------------------------------------------ fits
def fit_sklearn(X, k, seed):
    gm = sk_em(X, k, random_state=seed)
    return (gm.weights_, gm.means_, gm.covariances_), int(gm.n_iter_), {}


def fit_spark_em(df, k, seed):
    from spark_em import GaussianMixture

    model = GaussianMixture(k=k, seed=seed).fit(df)
    s = model.summary
    start = dict(s.initialisation)
    start.pop("perTrial", None)
    return (
        (model.weights, model.means, model.full_covariances()),
        int(s.numIter),
        {"own_mean_log_likelihood": s.meanLogLikelihood, "start": start},
    )


def fit_mllib(df, k, seed, n):
    from pyspark.ml.clustering import GaussianMixture as MLlibGM

    model = MLlibGM(k=k, seed=seed, featuresCol="vector").fit(df)
    rows = model.gaussiansDF.collect()
    means = np.array([r["mean"].toArray() for r in rows])
    covs = np.array([r["cov"].toArray() for r in rows])
    s = model.summary
    extra = {"own_total_log_likelihood": s.logLikelihood, "own_per_row": s.logLikelihood / n}
    return (np.array(model.weights), means, covs), int(s.numIter), extra


def run_select(df, k, seeds) -> list[dict]:
    from spark_em import GaussianMixture

    out = []
    ks = list(range(max(2, k - 3), k + 4))
    for s in seeds:
        t = time.perf_counter()
        model, table = GaussianMixture(seed=s).fitSelect(df, ks, ["full"])
        rows = table.collect()
        out.append(
            {
                "seed": s,
                "chosen_k": int(model.getK()),
                "seconds": time.perf_counter() - t,
                "table": [
                    {f: r[f] for f in ("k", "bic", "meanLogLikelihood", "degenerateStart")}
                    for r in rows
                ],
            }
        )
        print(f"    select seed {s}: k={model.getK()} ({out[-1]['seconds']:.1f}s)", flush=True)
    return out
