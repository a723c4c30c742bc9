"""How often a default fit finds the best known optimum (issue 17, point 3).

    .venv/bin/python scripts/init_benchmark.py                # the README's table (~35 min)
    .venv/bin/python scripts/init_benchmark.py --quick        # small sanity run (~2 min)
    .venv/bin/python scripts/init_benchmark.py --cost         # + the sample search's cost

Data sets (all full covariance, the default of every library here): generated mixtures with
overlapping components (:func:`spark_em.data.datasets.random_mixture` with a small
``separation``, unequal weights, k 3..8, d 2..10; the first is the issue's 5-component
mixture), and bundled real data (no download): iris (k=3), wine standardised (k=3) and the
handwritten digits projected on their first 10 principal components (k=10).

For each data set, the *best known optimum* is the highest mean log-likelihood per row among
scikit-learn EM runs to tol 1e-6 from 5 k-means and 5 random-row starts, from the true
parameters (generated sets), and from every benchmarked fit's end (below); optima with a
component of no variance in some direction (an eigenvalue < 1e-5: its likelihood is set by
regCovar -- iris has one, at -0.66 nats/row against -1.20) are spurious and never count.
Then, for seeds 0..9, the default fit of spark-em (``GaussianMixture(k=k, seed=s)``), scikit-learn
(``GaussianMixture(k, random_state=s)``) and MLlib (``GaussianMixture(k=k, seed=s)``; it
always fits full covariances, from random responsibilities, to tol 0.01, at most 100
iterations).  Every fit's final parameters are scored on the data
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

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench import loadavg  # noqa: E402  (scripts/ is on sys.path when run)
from init_bench_fits import (  # noqa: E402
    continued,
    degenerate,
    fit_mllib,
    fit_sklearn,
    fit_spark_em,
    mean_loglik,
    reference_optimum,
    run_select,
)
from results import write_results  # noqa: E402

TOL_NATS = 1e-3  # "at the optimum": within this many nats per row of the best known

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
    p.add_argument("--mllib-seeds", type=int, help="MLlib fits per set (default --seeds)")
    p.add_argument(
        "--reference-starts",
        type=int,
        default=5,
        help="long scikit-learn runs per kind of start for the best known optimum",
    )
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


# ------------------------------------------------------------------------------ one data set
class DataSetRun:
    """One data set's measurements, added library by library (the JSON is rewritten after
    each step, so a run cut short keeps what it measured)."""

    def __init__(self, spark, name: str, args):
        from pyspark.ml.functions import array_to_vector
        from pyspark.sql import functions as F

        from spark_em.data.datasets import to_dataframe

        X, k, truth = generated(name, args.rows) if name in GENERATED else real(name)
        self.X, self.k, self.truth, self.spark = X, k, truth, spark
        n, d = X.shape
        print(f"[{name}] n={n} d={d} k={k}", flush=True)
        t = time.perf_counter()
        ref = reference_optimum(X, k, truth, args.reference_starts)
        print(f"  reference runs {ref} ({time.perf_counter() - t:.1f}s)", flush=True)
        self.out: dict = {"name": name, "n": n, "d": d, "k": k, "reference": ref, "fits": {}}
        df = to_dataframe(spark, X, num_partitions=2)
        self.df = df.select("features", array_to_vector(F.col("features")).alias("vector"))

    def add(self, lib: str, seeds: int) -> None:
        X, k, df = self.X, self.k, self.df.cache()
        fit = {
            "spark-em": lambda s: fit_spark_em(df, k, s),
            "sklearn": lambda s: fit_sklearn(X, k, s),
            "MLlib": lambda s: fit_mllib(df, k, s, X.shape[0]),
        }[lib]
        fits = self.out["fits"][lib] = []
        for s in range(seeds):
            t = time.perf_counter()
            params, iters, extra = fit(s)
            secs = time.perf_counter() - t
            stopped = mean_loglik(X, *params)
            optimum, bad = continued(X, params)
            fits.append(
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
        df.unpersist()
        self.summarise()
        print(f"  [{self.out['name']}] {lib}: {self.out['summary'][lib]}", flush=True)

    def summarise(self) -> None:
        fits, ref = self.out["fits"], self.out["reference"]
        ends = [f["optimum"] for fl in fits.values() for f in fl if not f["degenerate"]]
        best = self.out["best"] = max([v for n, v in ref.items() if n != "degenerate_runs"] + ends)
        summary = self.out["summary"] = {}
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

    def select(self, seeds: int) -> None:
        df = self.df.cache()
        runs = run_select(df, self.k, range(seeds))
        df.unpersist()
        self.out["select"] = {
            "runs": runs,
            "true_k": sum(r["chosen_k"] == self.k for r in runs),
            "of": len(runs),
        }


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
            s = r.get("summary", {}).get(lib)
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
    results: list[dict] = []
    args.out = args.out or os.path.join("bench-results", f"init-{started}.json")
    try:
        if not args.cost_only:
            # driver numpy/sklearn single-threaded: the machine is shared (timing is not measured)
            with threadpool_limits(1):
                runs = [DataSetRun(spark, name, args) for name in names]
                # cheap first, so that a run cut short has every set's spark-em and sklearn
                steps = [(r, lib, args.seeds) for lib in ("spark-em", "sklearn") for r in runs]
                if not args.no_select:
                    steps += [(r, "select", args.select_seeds) for r in runs if r.truth is not None]
                if not args.no_mllib:
                    steps += [(r, "MLlib", args.mllib_seeds or args.seeds) for r in runs]
                for r, what, seeds in steps:
                    r.select(seeds) if what == "select" else r.add(what, seeds)
                    results = [r.out for r in runs]
                    save(report, results, args.out)
        if args.cost or args.cost_only:
            from init_bench_cost import cost_table, measure_cost

            report["cost"] = measure_cost(spark, args)
            report["cost_table"] = cost_table(report["cost"])
    finally:
        spark.stop()
    out = save(report, results, args.out)
    print()
    print(report.get("table", ""))
    print()
    print(report.get("cost_table", ""))
    print(f"\nwritten {out}")
    return 0


def save(report: dict, results: list[dict], out: str) -> str:
    report.update(results=results, load_after=loadavg())
    if results:
        report["table"] = table(results)
    return write_results(report, "init", out)


if __name__ == "__main__":
    sys.exit(main())
