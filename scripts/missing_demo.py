"""Missing features on data with known parameters: marginalise, drop, or impute (issue 21).

    .venv/bin/python scripts/missing_demo.py                   # README table (3 seeds)
    .venv/bin/python scripts/missing_demo.py --seeds 0 --rows 10000

The truth is the mixture of ``tests/test_sample_search.py::issue_mixture``: 5 components in
6-D with correlated full covariances, weights 0.36/0.24/0.18/0.13/0.09.  Per seed,
``--rows`` training rows and ``--heldout`` held-out rows are drawn from it, and holes are
punched in both with one of two mechanisms:

* MCAR (missing completely at random): 30 % of the rows, chosen at random, lose 1-3
  features (count and features uniform at random);
* MNAR (missing not at random): a value above its feature's 70th percentile (of the
  complete training rows) is censored to NaN with probability ``--mnar-p`` (0.19: about
  30 % of the rows get a hole); a row keeps at most 3 holes (the others are put back).

Three fits (``k=5``, full, seeded) on each training set:

* ``marginalize``: ``GaussianMixture(missingValues="marginalize")``;
* ``skip``: ``handleInvalid="skip"``, rows with a hole dropped;
* ``impute``: each hole filled with its feature's mean over the observed values, then a fit;

and, for scale, a fit on the same training rows before the holes were punched
(``complete``: the error that the sample size alone leaves).

Each fitted model is matched to the truth by Hungarian assignment on the means
(``scipy.optimize.linear_sum_assignment``) and scored by: max |weight error|, mean
||mean error||, mean relative Frobenius error of the covariances, and the mean
log-likelihood of the incomplete held-out rows under the model's marginal density over each
row's observed features (computed here with scipy from the fitted parameters, the same way
for all three fits; the truth's own figure is printed beside them).  Prints a markdown
table (means over the seeds) and writes the numbers as JSON under ``bench-results/``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from results import write_results  # noqa: E402  (scripts/ is on sys.path when run)

K, D = 5, 6
WEIGHTS = np.array([0.36, 0.24, 0.18, 0.13, 0.09])
METHODS = ("marginalize", "skip", "impute")
SHOWN = ("truth", "complete", *METHODS)


def truth_mixture() -> dict:
    from spark_em.data.datasets import random_mixture

    truth = random_mixture(K, D, "full", np.random.default_rng(5), separation=3.0)
    truth["weights"] = WEIGHTS.copy()
    return truth


def mcar(X: np.ndarray, rng: np.random.Generator, fraction: float) -> np.ndarray:
    """A copy of X where ``fraction`` of the rows lose 1-3 features, at random."""
    X = X.copy()
    rows = rng.choice(len(X), size=int(round(fraction * len(X))), replace=False)
    for i in rows:
        X[i, rng.choice(D, size=rng.integers(1, 4), replace=False)] = np.nan
    return X


def mnar(X: np.ndarray, rng: np.random.Generator, cut: np.ndarray, p: float) -> np.ndarray:
    """A copy of X where values above ``cut`` (per feature) are censored with probability p,
    at most 3 per row."""
    X = X.copy()
    hole = (X > cut) & (rng.random(X.shape) < p)
    for i in np.flatnonzero(hole.sum(axis=1) > 3):
        keep = rng.permutation(np.flatnonzero(hole[i]))[3:]
        hole[i, keep] = False
    X[hole] = np.nan
    return X


def marginal_loglik(X: np.ndarray, weights, means, covs) -> np.ndarray:
    """log p(x_o) per row under a mixture, over each row's observed coordinates."""
    out = np.empty(len(X))
    observed = ~np.isnan(X)
    patterns, inverse = np.unique(observed, axis=0, return_inverse=True)
    for p, o in enumerate(patterns):
        rows = np.flatnonzero(inverse.ravel() == p)
        xo = X[np.ix_(rows, o)]
        lp = np.column_stack(
            [
                np.log(weights[j])
                + np.atleast_1d(multivariate_normal.logpdf(xo, means[j, o], covs[j][np.ix_(o, o)]))
                for j in range(len(weights))
            ]
        )
        out[rows] = logsumexp(lp, axis=1)
    return out


def errors(truth: dict, weights, means, covs) -> dict:
    """Errors of fitted parameters against the truth, components matched on the means."""
    cost = np.linalg.norm(truth["means"][:, None, :] - means[None, :, :], axis=2)
    t, f = linear_sum_assignment(cost)
    rel = [
        np.linalg.norm(covs[j] - truth["covariances"][i]) / np.linalg.norm(truth["covariances"][i])
        for i, j in zip(t, f)
    ]
    return {
        "max_weight_error": float(np.max(np.abs(weights[f] - truth["weights"][t]))),
        "mean_mean_error": float(np.mean(cost[t, f])),
        "mean_rel_cov_error": float(np.mean(rel)),
    }


def fit(spark, X: np.ndarray, method: str, seed: int, partitions: int):
    from spark_em import GaussianMixture
    from spark_em.data.datasets import to_dataframe

    if method == "impute":  # "complete" is given the rows without holes
        X = np.where(np.isnan(X), np.nanmean(X, axis=0), X)
    options = {
        "marginalize": {"missingValues": "marginalize"},
        "skip": {"handleInvalid": "skip"},
        "impute": {},
        "complete": {},
    }[method]
    df = to_dataframe(spark, X, num_partitions=partitions)
    gm = GaussianMixture(k=K, covarianceType="full", seed=seed, **options)
    start = time.perf_counter()
    model = gm.fit(df)
    return model, time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=30_000)
    ap.add_argument("--heldout", type=int, default=10_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--fraction", type=float, default=0.3, help="MCAR: rows with holes")
    ap.add_argument("--mnar-p", type=float, default=0.19, help="MNAR: censoring probability")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from spark_em.data.datasets import draw_mixture
    from spark_em.data.local_session import local_session

    warnings.filterwarnings("ignore", message=".*rows? .* (skipped|left out).*")
    spark = local_session("local[2]", "missing-demo", {"spark.sql.shuffle.partitions": "4"})
    spark.sparkContext.setLogLevel("ERROR")
    truth = truth_mixture()
    tw, tm, tc = truth["weights"], truth["means"], truth["covariances"]
    results = []
    for seed in args.seeds:
        rng = np.random.default_rng(1000 + seed)
        X, _ = draw_mixture(args.rows, truth, "full", rng)
        H, _ = draw_mixture(args.heldout, truth, "full", rng)
        cut = np.quantile(X, 0.7, axis=0)
        complete, complete_s = fit(spark, X, "complete", seed, args.partitions)
        for mechanism in ("MCAR", "MNAR"):
            if mechanism == "MCAR":
                Xm, Hm = mcar(X, rng, args.fraction), mcar(H, rng, args.fraction)
            else:
                Xm, Hm = mnar(X, rng, cut, args.mnar_p), mnar(H, rng, cut, args.mnar_p)
            holes = np.isnan(Xm).any(axis=1)
            Hin = Hm[np.isnan(Hm).any(axis=1)]
            base = {
                "seed": seed,
                "mechanism": mechanism,
                "rows_with_holes": float(holes.mean()),
                "missing_values": float(np.isnan(Xm).mean()),
                "heldout_incomplete_rows": len(Hin),
            }
            truth_ll = float(marginal_loglik(Hin, tw, tm, tc).mean())
            results.append({**base, "method": "truth", "heldout_ll": truth_ll})
            for method in ("complete", *METHODS):
                if method == "complete":
                    model, seconds = complete, complete_s
                else:
                    model, seconds = fit(spark, Xm, method, seed, args.partitions)
                w, m, c = model.weights, model.means, model.full_covariances()
                row = {
                    **base,
                    "method": method,
                    "fit_s": seconds,
                    "iterations": model.summary.numIter,
                    "heldout_ll": float(marginal_loglik(Hin, w, m, c).mean()),
                    **errors(truth, w, m, c),
                }
                if method == "complete":
                    row["rows_with_holes"] = 0.0
                results.append(row)
                print(
                    f"seed {seed} {mechanism} {method:<11} "
                    + " ".join(
                        f"{key} {row[key]:.4g}"
                        for key in (
                            "max_weight_error",
                            "mean_mean_error",
                            "mean_rel_cov_error",
                            "heldout_ll",
                            "fit_s",
                        )
                    )
                    + f" (truth {truth_ll:.4f})",
                    flush=True,
                )
    spark.stop()
    text = table(results, args)
    print()
    print(text)
    out = write_results(
        {"args": vars(args), "uptime": os.getloadavg(), "results": results, "table": text},
        "missing-demo",
        args.out,
    )
    print(f"\nwritten {out}")
    return 0


def table(results: list[dict], args) -> str:
    """Markdown table: per mechanism and method, the means over the seeds."""
    head = (
        "| missing | method | rows with holes | max abs weight error | mean mean error "
        "| mean rel. covariance error | held-out log-lik. of incomplete rows |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    for mechanism in ("MCAR", "MNAR"):
        for method in SHOWN:
            rs = [r for r in results if r["mechanism"] == mechanism and r["method"] == method]
            mean = {key: np.mean([r[key] for r in rs]) for key in rs[0] if key in NUMERIC}
            if method == "truth":
                lines.append(
                    f"| {mechanism} | true parameters | {mean['rows_with_holes']:.0%} "
                    f"| 0 | 0 | 0 | {mean['heldout_ll']:.4f} |"
                )
                continue
            name = "complete rows (no holes)" if method == "complete" else method
            lines.append(
                f"| {mechanism} | {name} | {mean['rows_with_holes']:.0%} "
                f"| {mean['max_weight_error']:.4f} | {mean['mean_mean_error']:.4f} "
                f"| {mean['mean_rel_cov_error']:.4f} | {mean['heldout_ll']:.4f} |"
            )
    return "\n".join(lines)


NUMERIC = (
    "rows_with_holes",
    "max_weight_error",
    "mean_mean_error",
    "mean_rel_cov_error",
    "heldout_ll",
)


if __name__ == "__main__":
    sys.exit(main())
