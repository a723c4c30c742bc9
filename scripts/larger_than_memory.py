"""A fit over a Parquet data set several times larger than the memory given to Spark.

    .venv/bin/python scripts/larger_than_memory.py             # 30M x 16 doubles (~3.9 GB) vs 1g
    .venv/bin/python scripts/larger_than_memory.py --n 5000000 --block-cache spark
    .venv/bin/python scripts/larger_than_memory.py --dtype float32   # float32 blocks

Generates the data set once under ``--data-dir`` (chunk by chunk: the generator's memory
stays flat), then runs spark-em in local mode with ``spark.driver.memory=--driver-memory``
(in local mode the driver JVM is also the executor: this is all the memory Spark gets) and
``maxIter=--iters``.  With ``--block-cache auto`` (or ``local``) the prepared blocks go to
local files that every iteration re-reads (from the OS page cache or disk); with ``spark``
they are kept MEMORY_AND_DISK by Spark and mostly spill to disk (each iteration prints how
much of Spark's storage is in memory and on disk); with ``parquet`` every iteration's tasks
read the Parquet files themselves.  Reports the data size, the memory given to Spark,
the time of each iteration and of the whole fit, and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

# fixed-iteration timing runs (tol=0) never converge by design: no spark-em's ConvergenceWarning
import warnings  # noqa: E402

from results import write_results  # noqa: E402  (scripts/ is on sys.path when run)

warnings.filterwarnings("ignore", message="the best of .* EM run")


def du_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=30_000_000)
    p.add_argument("--d", type=int, default=16)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--cov", default="full")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--driver-memory", default="1g")
    p.add_argument("--block-cache", default="auto", choices=["auto", "local", "spark", "parquet"])
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--master", default="local[2]")
    p.add_argument("--data-dir", default=os.environ.get("SPARK_EM_BENCH_DATA", "data/bench"))
    p.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Spark configuration (repeatable)",
    )
    p.add_argument("--out")
    args = p.parse_args(argv)

    from spark_em import GaussianMixture
    from spark_em.data.datasets import write_mixture_parquet
    from spark_em.data.local_session import local_session
    from spark_em.progress import IterationInfo

    path = os.path.abspath(
        os.path.join(args.data_dir, f"mixture-n{args.n}-d{args.d}-k{args.k}-s1.parquet")
    )
    if not os.path.exists(path):
        t = time.perf_counter()
        print(f"generating {path} ...", flush=True)
        write_mixture_parquet(path, args.n, args.k, args.d, "full", seed=1)
        print(f"  done in {time.perf_counter() - t:.0f}s", flush=True)
    size = du_bytes(path)
    conf = {"spark.driver.memory": args.driver_memory}
    conf.update(kv.split("=", 1) for kv in args.conf)
    spark = local_session(args.master, "spark-em-larger-than-memory", conf)
    spark.sparkContext.setLogLevel("ERROR")
    heap = int(spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory())
    print(
        f"data set {size / 2**30:.2f} GiB of Parquet ({args.n:,} x {args.d} doubles = "
        f"{args.n * args.d * 8 / 2**30:.2f} GiB raw); Spark JVM heap {heap / 2**30:.2f} GiB "
        f"(spark.driver.memory={args.driver_memory}); ratio {size / heap:.1f}x",
        flush=True,
    )
    iterations, cache = [], []

    def cached_bytes():
        """(memory, disk) bytes of Spark's cached RDDs: the prepared blocks with
        --block-cache spark."""
        infos = spark.sparkContext._jsc.sc().getRDDStorageInfo()
        return sum(i.memSize() for i in infos), sum(i.diskSize() for i in infos)

    def progress(info):
        if not isinstance(info, IterationInfo):
            return
        iterations.append(info.seconds)
        mem, disk = cached_bytes()
        cache.append({"memory_bytes": mem, "disk_bytes": disk})
        print(
            f"  iteration {info.iteration}: {info.seconds:.1f}s (mean log-likelihood "
            f"{info.mean_log_likelihood:.4f}; Spark's cache {mem / 2**30:.2f} GiB in memory, "
            f"{disk / 2**30:.2f} GiB on disk)",
            flush=True,
        )

    gm = GaussianMixture(
        k=args.k,
        covarianceType=args.cov,
        maxIter=args.iters,
        tol=0.0,
        seed=1,
        blockCache=args.block_cache,
        dtype=args.dtype,
    )
    gm.progress = progress
    t = time.perf_counter()
    model = gm.fit(spark.read.parquet(path))
    total = time.perf_counter() - t
    spark.stop()
    result = {
        "n": args.n,
        "d": args.d,
        "k": args.k,
        "cov": args.cov,
        "block_cache": args.block_cache,
        "dtype": args.dtype,
        "parquet_bytes": size,
        "raw_bytes": args.n * args.d * 8,
        "jvm_max_heap_bytes": heap,
        "driver_memory": args.driver_memory,
        "conf": conf,
        "iteration_s": iterations,
        "fit_s": total,
        "spark_cache_per_iteration": cache,
        "rows": model.summary.numRows,
        "log_likelihood": model.summary.logLikelihood,
        "load": [round(x, 2) for x in os.getloadavg()],
    }
    print(
        f"fit of {model.summary.numRows:,} rows: {total:.0f}s in all; per iteration "
        + ", ".join(f"{s:.1f}s" for s in iterations),
        flush=True,
    )
    out = write_results(result, "larger-than-memory", args.out)
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
