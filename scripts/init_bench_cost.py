"""The cost of ``initMode="sample-em"`` (``scripts/init_benchmark.py --cost``): seconds of the
sample search (:func:`spark_em.core.sample_search.search_start` on a 10,000-row sample, with
the fit's default trials, iterations, tolerances and polish, as the fit runs it) against one
EM iteration of spark-em on all the data, at 1M x 16 and 200k x 100 (k=8, full covariance).

The data are written as Parquet by ``scripts/bench.py``'s helpers (reused when present) and
cached as bench.py does.  One EM iteration is the median iteration of a 3-iteration fit
(tol=0, ``initMode="kmeans"``).  The search is timed with the driver's BLAS as it is (the
fit's case) and limited to one thread (on a busy machine a multi-threaded BLAS on the driver
can be many times slower); it is also seen inside a fit as the difference between
1-iteration fits (default tol) with ``initMode="sample-em"`` and ``"kmeans"``.
"""

from __future__ import annotations

import numpy as np
from bench import DataSet, ensure_data, loadavg, timed

# (rows, d, k); --quick: a small sanity run of the same code
WORKLOADS = [(1_000_000, 16, 8), (200_000, 100, 8)]
QUICK = [(50_000, 16, 8), (20_000, 100, 8)]


def measure_cost(spark, args) -> list[dict]:
    import pyarrow.parquet as pq
    from threadpoolctl import threadpool_limits

    from spark_em import GaussianMixture
    from spark_em.core.sample_search import search_start
    from spark_em.core.tuning import POLISH_MAX_ITER, search_tolerances
    from spark_em.progress import IterationInfo

    defaults = GaussianMixture()
    trials, max_iter = defaults.getInitTrials(), defaults.getInitMaxIter()
    tol, reg = defaults.getTol(), defaults.getRegCovar()
    race_tol, polish_tol = search_tolerances(tol)  # as the fit runs the search
    sample_rows = defaults.getInitSampleSize()
    out = []
    for n, d, k in QUICK if args.quick else WORKLOADS:
        ds = DataSet(n, d, k, ["full"])
        path = ensure_data(ds, args.data_dir, 1)
        load = loadavg()
        col = pq.read_table(path, columns=["features"]).column("features").combine_chunks()
        X = np.asarray(col.flatten().to_numpy()).reshape(-1, d)
        sample = X[np.random.default_rng(0).choice(n, sample_rows, replace=False)]
        del X, col
        searches = []
        for seed in range(1):
            for threads in (None, 1):  # the driver's BLAS as it is, and single-threaded
                with threadpool_limits(threads):
                    secs, found = timed(
                        lambda: search_start(
                            sample,
                            k,
                            "full",
                            reg,
                            np.random.default_rng(seed),
                            trials=trials,
                            max_iter=max_iter,
                            tol=race_tol,
                            polish_tol=polish_tol,
                            polish_iter=POLISH_MAX_ITER,
                        )
                    )
                searches.append(
                    {
                        "seed": seed,
                        "blas_threads": threads or "default",
                        "seconds": secs,
                        "sample_iterations": found.iterations,
                        "polish_iterations": found.polish_iterations,
                    }
                )
        df = spark.read.parquet(path).cache()
        df.count()

        def fit(mode, iters, infos=None):
            # tol=0 only for the timed iterations: the search stops its trials at the fit's tol
            gm = GaussianMixture(k=k, maxIter=iters, tol=0.0 if infos is not None else tol)
            gm.setInitMode(mode).setSeed(1)
            if infos is not None:
                gm.progress = lambda e: infos.append(e) if isinstance(e, IterationInfo) else None
            return gm.fit(df)

        fit("kmeans", 1)  # warm-up: builds the block store's code paths
        infos: list = []
        fit("kmeans", 3, infos)
        iteration = float(np.median([i.seconds for i in infos[1:]]))
        fit1 = {mode: timed(lambda m=mode: fit(m, 1))[0] for mode in ("kmeans", "sample-em")}
        df.unpersist()
        search_s = float(np.median([s["seconds"] for s in searches if s["blas_threads"] != 1]))
        search1_s = float(np.median([s["seconds"] for s in searches if s["blas_threads"] == 1]))
        r = {
            "n": n,
            "d": d,
            "k": k,
            "sample_rows": sample_rows,
            "trials": trials,
            "init_max_iter": max_iter,
            "searches": searches,
            "search_s": search_s,
            "em_iteration_s": iteration,
            "search_over_iteration": search_s / iteration,
            "search_1thread_s": search1_s,
            "search_1thread_over_iteration": search1_s / iteration,
            "fit1_kmeans_s": fit1["kmeans"],
            "fit1_sample_em_s": fit1["sample-em"],
            "load_before": load,
            "load_after": loadavg(),
        }
        print(
            f"[cost {n}x{d} k={k}] search {search_s:.2f}s ({search1_s:.2f}s with 1 BLAS "
            f"thread), one EM iteration "
            f"{iteration:.2f}s -> {search_s / iteration:.2f} iterations; fit(1) kmeans "
            f"{fit1['kmeans']:.2f}s, sample-em {fit1['sample-em']:.2f}s (load {load})",
            flush=True,
        )
        out.append(r)
    return out


def cost_table(rows: list[dict]) -> str:
    lines = [
        "| data | sample search (s) | search, 1 BLAS thread (s) | one EM iteration (s) "
        "| search / iteration (1 thread) | fit(1) kmeans → sample-em (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} × {r['d']}, k={r['k']} | {r['search_s']:.2f} | "
            f"{r['search_1thread_s']:.2f} | {r['em_iteration_s']:.2f} | "
            f"{r['search_over_iteration']:.2f} ({r['search_1thread_over_iteration']:.2f}) | "
            f"{r['fit1_kmeans_s']:.2f} → {r['fit1_sample_em_s']:.2f} |"
        )
    return "\n".join(lines)
