"""Benchmark spark-em against Spark MLlib (and scikit-learn) on the same data, in one run.

    .venv/bin/python scripts/bench.py                  # the issue's four workloads (README table)
    .venv/bin/python scripts/bench.py --quick          # small sanity run (~1 min)
    .venv/bin/python scripts/bench.py --n 500000 --d 16 --k 8 --cov full,diag

For each data set (N rows, d features, drawn from a random K-component mixture) the script
writes Parquet once under ``--data-dir`` (reused by later runs), reads it in ONE local
SparkSession, caches it (an ``array<double>`` column for spark-em plus the same rows as a
Vector column for MLlib, whose GaussianMixture only takes Vectors) and then, after warm-up
fits of each library on a 20k-row slice of that cached data:

* fits MLlib ``GaussianMixture`` (always full covariance: it has no other) and spark-em's
  ``GaussianMixture`` (each requested covariance type) with the same ``k``, ``tol=0`` and a
  fixed seed, with ``maxIter=1`` and ``maxIter=--iters`` (20): seconds per EM iteration are
  ``(fit(iters) - fit(1)) / (iters - 1)``; the 20-iteration fit is the "whole fit" time
  (initialisation and every fixed cost included);
* fits scikit-learn in memory on the same rows (when they fit in ``--sklearn-max-gb``),
  with ``max_iter=1`` and ``1 + --sklearn-iters``.

Prints a table with the ratios (how many times faster spark-em is) and writes all numbers,
the machine's load averages and spark-em's per-iteration profile to a JSON file.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from results import write_results  # noqa: E402  (scripts/ is on sys.path when run)

# fixed-iteration timing runs (tol=0) never converge by design: no spark-em's ConvergenceWarning
warnings.filterwarnings("ignore", message="the best of .* EM run")

from bench_args import DataSet, input_of, parse_args, store_of, workloads  # noqa: E402
from bench_kernel import kernel_profile  # noqa: E402
from bench_table import table  # noqa: E402


def ensure_data(ds: DataSet, data_dir: str, seed: int) -> str:
    from spark_em.data.datasets import write_mixture_parquet

    path = os.path.abspath(os.path.join(data_dir, f"mixture-{ds.name}-s{seed}.parquet"))
    if not os.path.exists(path):
        t = time.perf_counter()
        print(f"generating {path} ...", flush=True)
        write_mixture_parquet(path, ds.n, ds.k, ds.d, "full", seed=seed, separation=ds.separation)
        print(f"  done in {time.perf_counter() - t:.1f}s", flush=True)
    return path


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def bench_spark(spark, ds: DataSet, path: str, args) -> dict:
    from pyspark.ml.clustering import GaussianMixture as MLlibGM
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    from spark_em import GaussianMixture
    from spark_em.progress import IterationInfo

    df = (
        spark.read.parquet(path)
        .select(F.col("features"), array_to_vector("features").alias("vector"))
        .cache()
    )
    rows = df.count()
    parts = df.rdd.getNumPartitions()
    print(f"[{ds.name}] cached {rows} rows in {parts} partitions", flush=True)
    out: dict = {"rows": rows, "partitions": parts}
    iters = args.iters

    # Warm-ups (JIT, Python workers, code paths) run on a small slice of the same cached data.
    slice_ = df.limit(20_000).cache()
    slice_.count()

    def mllib(max_iter, data=df):
        gm = MLlibGM(k=ds.k, maxIter=max_iter, tol=0.0, seed=args.seed, featuresCol="vector")
        return gm.fit(data)

    plain = spark.read.parquet(path)  # the plain scan the Parquet store reads itself
    stores = [s.strip() for s in args.block_cache.split(",")]
    dtypes = [t.strip() for t in args.dtype.split(",")]
    # <store>:columns: the same rows cached as d feature columns (d known from the schema)
    names = [f"f{j}" for j in range(ds.d)]
    columns = columns_slice = None
    if any(input_of(s) == "columns" for s in stores):
        columns = spark.read.parquet(path).select(
            *[F.col("features")[j].alias(c) for j, c in enumerate(names)]
        )
        columns = columns.cache()
        columns.count()
        columns_slice = columns.limit(20_000).cache()
        columns_slice.count()

    def cached(store, sliced=False):
        """The cached input a --block-cache entry gives spark-em (its 20k-row slice)."""
        if input_of(store) == "columns":
            return columns_slice if sliced else columns
        return slice_ if sliced else df

    def ours(cov, store, max_iter, per_iter=None, data=None, dtype="float64"):
        given = input_of(store)
        if data is None:
            data = plain if _reads_plain(store) else cached(store)
        gm = GaussianMixture(
            k=ds.k,
            covarianceType=cov,
            maxIter=max_iter,
            tol=0.0,
            seed=args.seed,
            featuresCol=names if given == "columns" else "features",
            blockCache=store_of(store),
            dtype=dtype,
        )
        if per_iter is not None:
            gm.progress = lambda e: per_iter.append(e) if isinstance(e, IterationInfo) else None
        return gm.fit(data)

    if not args.no_mllib:
        timed(lambda: mllib(3, slice_))  # warm-up
        t1 = min(timed(lambda: mllib(1))[0] for _ in range(args.repeat))
        runs = [timed(lambda: mllib(iters)) for _ in range(args.repeat)]
        tn, model = min(runs, key=lambda r: r[0])
        done = model.summary.numIter
        out["mllib"] = {
            "fit1_s": t1,
            "fit_s": tn,
            # MLlib stops early when its log-likelihood change is NaN (it is not tol=0-proof)
            "per_iter_s": (tn - t1) / (done - 1) if done > 1 else float("nan"),
            "log_likelihood": model.summary.logLikelihood,
            "num_iter": done,
        }
        note = "" if done == iters else f" (MLlib STOPPED after {done} iterations)"
        print(
            f"[{ds.name}] MLlib full: fit(1) {t1:.2f}s fit({iters}) {tn:.2f}s "
            f"-> {out['mllib']['per_iter_s']:.3f}s/iter{note}",
            flush=True,
        )
    for cov in ds.covs:
        for store in stores:  # warm-up (plain scans are read whole: one fit(1))
            timed(
                lambda: ours(
                    cov,
                    store,
                    1 if _reads_plain(store) else 3,
                    data=None if _reads_plain(store) else cached(store, sliced=True),
                )
            )
    variants = [(store, dtype) for store in stores for dtype in dtypes]
    for cov in ds.covs:
        for store, dtype in variants:
            where = store if len(dtypes) == 1 else f"{store}, {dtype}"
            key = f"spark_em_{cov}" if len(variants) == 1 else f"spark_em_{cov}@{where}"
            out[key] = bench_ours(lambda *a: ours(cov, store, *a, dtype=dtype), iters, args.repeat)
            res, prof = out[key], out[key]["profile_per_iteration"]
            print(
                f"[{ds.name}] spark-em {cov} ({where}): fit(1) {res['fit1_s']:.2f}s "
                f"fit({iters}) {res['fit_s']:.2f}s -> {res['per_iter_s']:.3f}s/iter (median "
                f"iteration {res['median_iteration_s']:.3f}s; per iteration: pass "
                f"{prof['pass_s']:.3f}s, tasks {prof['task_s']:.3f}s = read {prof['read_s']:.3f}s"
                f" + kernel {prof['kernel_s']:.3f}s over {prof['tasks']:.0f} tasks, M-step "
                f"{prof['mstep_s'] * 1000:.1f}ms)",
                flush=True,
            )
    if args.select:
        from bench_select import bench_select

        ks_text, _, covs = args.select.partition(":")
        low, _, high = ks_text.partition("..")
        out["select"] = bench_select(
            spark,
            df,
            plain,
            list(range(int(low), int(high) + 1)),
            covs.split(","),
            list(dict.fromkeys(map(store_of, stores))),
            args.seed,
            1e-3,
        )
    slice_.unpersist()
    df.unpersist()
    for frame in (columns_slice, columns):
        if frame is not None:
            frame.unpersist()
    if args.missing_fraction:
        from bench_missing import bench_missing

        fractions = [float(f) for f in args.missing_fraction.split(",")]
        out["missing"] = bench_missing(spark, ds, path, args, fractions, bench_ours)
    return out


def _reads_plain(store: str) -> bool:
    """Whether spark-em is given the plain Parquet scan, not the cached DataFrame: the
    Parquet store always; any store named ``<store>:plain`` in --block-cache."""
    return store_of(store) == "parquet" or input_of(store) == "plain"


def bench_ours(fit, iters: int, repeat: int) -> dict:
    """fit(1) and fit(iters) of one spark-em configuration; ``fit(max_iter, per_iter)``."""
    t1 = min(timed(lambda: fit(1))[0] for _ in range(repeat))
    best = None
    for _ in range(repeat):
        infos: list = []
        t, model = timed(lambda: fit(iters, infos))
        if best is None or t < best[0]:
            best = (t, model, infos)
    tn, model, infos = best
    steps = sorted(i.seconds for i in infos[1:]) or [float("nan")]
    profile = {
        key: sum((i.profile or {}).get(key, 0.0) for i in infos[1:]) / max(len(infos) - 1, 1)
        for key in ("pass_s", "mstep_s", "read_s", "kernel_s", "task_s", "tasks")
    }
    return {
        "fit1_s": t1,
        "fit_s": tn,
        "per_iter_s": (tn - t1) / (iters - 1),
        "median_iteration_s": steps[len(steps) // 2],
        "log_likelihood": model.summary.logLikelihood,
        "num_iter": model.summary.numIter,
        "profile_per_iteration": profile,
    }


def bench_sklearn(ds: DataSet, path: str, args) -> dict:
    import numpy as np
    import pyarrow.parquet as pq
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture as SkGM

    col = pq.read_table(path, columns=["features"]).column("features").combine_chunks()
    X = np.asarray(col.flatten().to_numpy()).reshape(-1, ds.d)
    out = {}
    m = args.sklearn_iters
    for dtype in [t.strip() for t in args.sklearn_dtype.split(",")]:
        Xt = X.astype(dtype, copy=False)  # scikit-learn >= 1.7 keeps float32 end to end
        for cov in ds.covs:

            def fit(it):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    return SkGM(
                        ds.k, covariance_type=cov, max_iter=it, tol=0.0, random_state=args.seed
                    ).fit(Xt)

            t1 = min(timed(lambda: fit(1))[0] for _ in range(args.repeat))
            tm = min(timed(lambda: fit(1 + m))[0] for _ in range(args.repeat))
            key = f"sklearn_{cov}" + ("" if dtype == "float64" else f"_{dtype}")
            out[key] = {"fit1_s": t1, f"fit{1 + m}_s": tm, "per_iter_s": (tm - t1) / m}
            print(
                f"[{ds.name}] sklearn {cov} {dtype}: fit(1) {t1:.2f}s fit({1 + m}) {tm:.2f}s -> "
                f"{(tm - t1) / m:.3f}s/iter",
                flush=True,
            )
    return out


def start_cluster(args):
    """A standalone master and ``--cluster`` 1-core workers on loopback (tests/servers.py)."""
    import tempfile
    from pathlib import Path

    from tests.servers import StandaloneCluster

    workdir = Path(tempfile.mkdtemp(prefix="spark-em-bench-cluster-"))
    mem = args.executor_memory.lower().rstrip("g")
    cluster = StandaloneCluster(workdir).start(
        workers=args.cluster,
        cores=1,
        memory=f"{int(float(mem)) + 1}g",
        worker_env={"PYSPARK_PYTHON": sys.executable},
    )
    print(
        f"standalone cluster {cluster.master_url}: {args.cluster} workers x 1 core "
        f"(logs in {workdir})",
        flush=True,
    )
    return cluster


def main(argv=None) -> int:
    args = parse_args(argv, __doc__)
    if args.quick:
        args.iters = min(args.iters, 5)
        args.sklearn_iters = min(args.sklearn_iters, 2)
    if args.iters < 2:
        raise SystemExit("--iters must be >= 2")
    sets = workloads(args)
    paths = {ds.name: ensure_data(ds, args.data_dir, args.seed) for ds in sets}

    from spark_em.data.local_session import local_session

    cluster = start_cluster(args) if args.cluster else None
    conf = {"spark.driver.memory": args.driver_memory, "spark.sql.shuffle.partitions": "4"}
    if cluster is not None:
        conf.update(
            {
                "spark.executor.memory": args.executor_memory,
                "spark.driver.host": "127.0.0.1",
                "spark.ui.enabled": "false",
            }
        )
    spark = local_session(cluster.master_url if cluster else args.master, "spark-em-bench", conf)
    spark.sparkContext.setLogLevel("ERROR")
    results = []
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    try:
        for ds in sets:
            r = {
                "n": ds.n,
                "d": ds.d,
                "k": ds.k,
                "covs": ds.covs,
                "separation": ds.separation,
                "load_before": loadavg(),
            }
            r.update(bench_spark(spark, ds, paths[ds.name], args))
            r["kernel_profile"] = kernel_profile(ds, paths[ds.name])
            if not args.no_sklearn and ds.n * ds.d * 8 * 6 < args.sklearn_max_gb * 2**30:
                r.update(bench_sklearn(ds, paths[ds.name], args))
            r["load_after"] = loadavg()
            results.append(r)
    finally:
        spark.stop()
        if cluster is not None:
            cluster.stop()
    text = table(results, args.iters)
    if args.missing_fraction:
        from bench_missing import missing_table

        text += "\n\n" + missing_table(results)
    print()
    print(text)
    import numpy
    import pyspark

    report = {
        "started": started,
        "args": vars(args),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "pyspark": pyspark.__version__,
            "numpy": numpy.__version__,
            "platform": platform.platform(),
        },
        "results": results,
        "table": text,
    }
    out = write_results(report, "bench", args.out)
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
