"""How often a default fit finds the best known optimum (issue 17, point 3).

    .venv/bin/python scripts/init_benchmark.py                # the README's table (~30 min)
    .venv/bin/python scripts/init_benchmark.py --quick        # small sanity run (~2 min)
    .venv/bin/python scripts/init_benchmark.py --cost         # + the sample search's cost

Data sets (all full covariance, the default of every library here): generated mixtures with
overlapping components (:func:`spark_em.data.datasets.random_mixture` with a small
``separation``, unequal weights, k 3..8, d 2..10; the first is the issue's 5-component
mixture), and bundled real data (no download): iris (k=3), wine standardised (k=3) and the
handwritten digits projected on their first 10 principal components (k=10).

For each data set, the *best known optimum* is the highest mean log-likelihood per row among
scikit-learn EM runs to tol 1e-6 from 10 k-means and 10 random-row starts, from the true
parameters (generated sets), and from every benchmarked fit's end (below); optima with a
component of no variance in some direction (an eigenvalue < 1e-5: its likelihood is set by
regCovar -- iris has one, at -0.66 nats/row against -1.20) are spurious and never count.
Then, for seeds 0..9, the default fit of spark-em (``GaussianMixture(k=k, seed=s)``), scikit-learn
(``GaussianMixture(k, random_state=s)``) and MLlib (``GaussianMixture(k=k, seed=s)``; it
always fits full covariances, from random responsibilities, to tol 0.01 on the *total*
log-likelihood, at most 100 iterations).  Every fit's final parameters are scored on the data
by the same numpy code ("as stopped"), and scikit-learn EM is continued from them to tol
1e-6 ("its optimum": which local optimum the fit was heading for).  A fit **is at the
optimum** when its optimum is within 1e-3 nats/row of the best known; the table also gives
how many fits stopped within 1e-3 of it.

``select``: ``GaussianMixture(seed=s).fitSelect(df, range(max(2, k-3), k+4), ["full"])``
(BIC) on each generated set; how often it picks the true k.

Writes a JSON file (``--out``, default ``bench-results/init-<time>.json``) and prints a
markdown table; ``--cost`` adds :mod:`init_bench_cost`'s figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench import loadavg  # noqa: E402  (scripts/ is on sys.path when run)
from results import write_results  # noqa: E402

TOL_NATS = 1e-3  # "at the optimum": within this many nats per row of the best known
DEGENERATE_EIGEN = 1e-5  # a covariance eigenvalue below this (10 x regCovar): spurious optimum

# name: (k, d, separation, weights or None for geometric 0.7**j, seed)
GENERATED = {
    "issue k=5 d=6": (5, 6, 3.0, [0.36, 0.24, 0.18, 0.13, 0.09], 5),
    "k=3 d=2": (3, 2, 2.5, None, 1),
    "k=4 d=4": (4, 4, 2.5, None, 2),
    "k=6 d=8": (6, 8, 2.5, None, 3),
    "k=8 d=10": (8, 10, 2.5, None, 4),
}
REAL = {"iris": 3, "wine": 3, "digits-pca10": 10}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="3 seeds, 4000 rows, 3 data sets")
    p.add_argument("--seeds", type=int, default=10, help="seeds per data set (default 10)")
    p.add_argument("--select-seeds", type=int, default=10, help="fitSelect runs per set")
    p.add_argument("--rows", type=int, default=20_000, help="rows of each generated set")
    p.add_argument("--sets", help="comma-separated data set names (default: all)")
    p.add_argument("--no-mllib", action="store_true")
    p.add_argument("--no-select", action="store_true")
    p.add_argument("--cost", action="store_true", help="also time the sample search (1M x 16 ...)")
    p.add_argument("--cost-only", action="store_true", help="only the cost figures")
    p.add_argument("--data-dir", default=os.environ.get("SPARK_EM_BENCH_DATA", "data/bench"))
    p.add_argument("--master", default="local[2]")
    p.add_argument("--driver-memory", default="6g")
    p.add_argument("--out", help="JSON output (default bench-results/init-<time>.json)")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------ data sets
def generated(name: str, rows: int):
    """``(X, k, truth)`` of a generated set (the issue's mixture is drawn as
    tests/test_sample_search.py's ``issue_mixture``)."""
    from spark_em.data.datasets import draw_mixture, random_mixture

    k, d, sep, weights, seed = GENERATED[name]
    rng = np.random.default_rng(seed)
    truth = random_mixture(k, d, "full", rng, separation=sep)
    w = np.asarray(weights) if weights is not None else 0.7 ** np.arange(k)
    truth["weights"] = w / w.sum()
    X, _ = draw_mixture(rows, truth, "full", rng)
    return X, k, truth


def real(name: str):
    from sklearn import datasets
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    if name == "iris":
        X = datasets.load_iris().data
    elif name == "wine":
        X = StandardScaler().fit_transform(datasets.load_wine().data)
    else:
        X = PCA(10, random_state=0).fit_transform(datasets.load_digits().data)
    return np.asarray(X, dtype=np.float64), REAL[name], None


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


# ------------------------------------------------------------------------------ one data set
def bench_set(spark, name, X, k, truth, args) -> dict:
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    from spark_em.data.datasets import to_dataframe

    n, d = X.shape
    print(f"[{name}] n={n} d={d} k={k}", flush=True)
    t = time.perf_counter()
    ref = reference_optimum(X, k, truth)
    print(f"  reference runs {ref} ({time.perf_counter() - t:.1f}s)", flush=True)
    df = to_dataframe(spark, X, num_partitions=2)
    df = df.select("features", array_to_vector(F.col("features")).alias("vector")).cache()
    df.count()
    libs = {"spark-em": lambda s: fit_spark_em(df, k, s), "sklearn": lambda s: fit_sklearn(X, k, s)}
    if not args.no_mllib:
        libs["MLlib"] = lambda s: fit_mllib(df, k, s, n)
    fits: dict = {lib: [] for lib in libs}
    for lib, fit in libs.items():
        for s in range(args.seeds):
            t = time.perf_counter()
            params, iters, extra = fit(s)
            secs = time.perf_counter() - t
            stopped = mean_loglik(X, *params)
            optimum, bad = continued(X, params)
            fits[lib].append(
                dict(
                    seed=s,
                    iterations=iters,
                    seconds=secs,
                    stopped=stopped,
                    optimum=max(stopped, optimum),
                    degenerate=bad or degenerate(params[2]),
                    **extra,
                )
            )
        print(
            f"  {lib}: stopped at {[round(f['stopped'], 4) for f in fits[lib]]} "
            f"-> optima {[round(f['optimum'], 4) for f in fits[lib]]}",
            flush=True,
        )
    ends = [f["optimum"] for fl in fits.values() for f in fl if not f["degenerate"]]
    best = max([v for name, v in ref.items() if name != "degenerate_runs"] + ends)
    summary = {}
    for lib, fl in fits.items():
        for f in fl:
            f["gap_optimum"] = best - f["optimum"]
            f["gap_stopped"] = best - f["stopped"]
        good = [f for f in fl if not f["degenerate"]]
        summary[lib] = {
            "at_optimum": sum(f["gap_optimum"] <= TOL_NATS for f in good),
            "stopped_near": sum(f["gap_stopped"] <= TOL_NATS for f in good),
            "degenerate": len(fl) - len(good),
            "fits": len(fl),
            "worst_gap": max((f["gap_optimum"] for f in good), default=float("nan")),
            "median_seconds": float(np.median([f["seconds"] for f in fl])),
        }
        print(f"  {lib}: {summary[lib]}", flush=True)
    out = {"name": name, "n": n, "d": d, "k": k, "reference": ref, "best": best}
    out.update(fits=fits, summary=summary)
    if truth is not None and not args.no_select and args.select_seeds > 0:
        runs = run_select(df, k, range(args.select_seeds))
        out["select"] = {
            "runs": runs,
            "true_k": sum(r["chosen_k"] == k for r in runs),
            "of": len(runs),
        }
    df.unpersist()
    return out


def table(results: list[dict]) -> str:
    libs = ["spark-em", "sklearn", "MLlib"]
    head = (
        "| data set | n × d, k | "
        + " | ".join(f"{lib} at optimum (stopped near)" for lib in libs)
        + " | select picks true k |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    total = {lib: [0, 0, 0] for lib in libs}
    sel = [0, 0]
    for r in results:
        cells = [r["name"], f"{r['n']:,} × {r['d']}, {r['k']}"]
        for lib in libs:
            s = r["summary"].get(lib)
            if s is None:
                cells.append("—")
                continue
            cells.append(f"{s['at_optimum']}/{s['fits']} ({s['stopped_near']})")
            for i, v in enumerate((s["at_optimum"], s["stopped_near"], s["fits"])):
                total[lib][i] += v
        if "select" in r:
            cells.append(f"{r['select']['true_k']}/{r['select']['of']}")
            sel[0] += r["select"]["true_k"]
            sel[1] += r["select"]["of"]
        else:
            cells.append("—")
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["**all**", ""]
    for lib in libs:
        a, s, f = total[lib]
        cells.append(f"**{100 * a / f:.0f} %** ({100 * s / f:.0f} %)" if f else "—")
    cells.append(f"**{100 * sel[0] / sel[1]:.0f} %**" if sel[1] else "—")
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    names = list(GENERATED) + list(REAL)
    if args.quick:
        args.seeds, args.select_seeds, args.rows = 3, 2, 4000
        names = ["issue k=5 d=6", "k=3 d=2", "iris"]
    if args.sets:
        names = [s.strip() for s in args.sets.split(",")]
    from threadpoolctl import threadpool_limits

    from spark_em.data.local_session import local_session

    spark = local_session(
        args.master, "spark-em-init-bench", {"spark.driver.memory": args.driver_memory}
    )
    spark.sparkContext.setLogLevel("ERROR")
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    report: dict = {"started": started, "args": vars(args), "load_before": loadavg()}
    results = []
    try:
        if not args.cost_only:
            # driver numpy/sklearn single-threaded: the machine is shared (timing is not measured)
            with threadpool_limits(1):
                for name in names:
                    X, k, truth = generated(name, args.rows) if name in GENERATED else real(name)
                    r = bench_set(spark, name, X, k, truth, args)
                    r["load_after"] = loadavg()
                    results.append(r)
        if args.cost or args.cost_only:
            from init_bench_cost import cost_table, measure_cost

            report["cost"] = measure_cost(spark, args)
            report["cost_table"] = cost_table(report["cost"])
    finally:
        spark.stop()
    report["results"] = results
    report["load_after"] = loadavg()
    if results:
        report["table"] = table(results)
        print()
        print(report["table"])
    if "cost_table" in report:
        print()
        print(report["cost_table"])
    out = write_results(report, "init", args.out)
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
