"""Scaling of spark-em in N: seconds per EM iteration and the driver's peak memory.

    .venv/bin/python scripts/scaling.py                       # N = 1e5, 1e6, 1e7; d=16, K=8, full
    .venv/bin/python scripts/scaling.py --ns 100000,1000000 --iters 4

Each N runs in its own process (so that peak-memory figures belong to that N alone): the
Parquet data set (generated once under ``--data-dir``) is read by Spark, spark-em fits it
with ``maxIter=1`` and ``maxIter=1+--iters`` (``tol=0``), and seconds per iteration are the
difference divided by ``--iters``.  The driver's peak resident memory is ``VmHWM`` from
/proc of the driver's Python process and of its JVM (in local mode the JVM also runs the
executors).  Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

# fixed-iteration timing runs (tol=0) never converge by design: no spark-em's ConvergenceWarning
import warnings  # noqa: E402

from results import write_results  # noqa: E402  (scripts/ is on sys.path when run)

warnings.filterwarnings("ignore", message="the best of .* EM run")


def vm_hwm_kib(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def one(args) -> dict:
    """Runs in a child process: fit one N, report timings and peak memory."""
    from spark_em import GaussianMixture
    from spark_em.data.datasets import write_mixture_parquet
    from spark_em.data.local_session import local_session

    path = os.path.abspath(
        os.path.join(args.data_dir, f"mixture-n{args.n}-d{args.d}-k{args.k}-s1.parquet")
    )
    if not os.path.exists(path):
        write_mixture_parquet(path, args.n, args.k, args.d, "full", seed=1)
    spark = local_session(
        args.master,
        "spark-em-scaling",
        {
            "spark.driver.memory": args.driver_memory,
        },
    )
    spark.sparkContext.setLogLevel("ERROR")
    jvm_pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
    df = spark.read.parquet(path)

    def fit(iters, data=df):
        gm = GaussianMixture(k=args.k, covarianceType=args.cov, maxIter=iters, tol=0.0, seed=1)
        t = time.perf_counter()
        model = gm.fit(data)
        return time.perf_counter() - t, model

    fit(2, df.limit(20_000))  # warm-up (JVM, Python workers) on a small slice
    t1, _ = fit(1)
    tn, model = fit(1 + args.iters)
    out = {
        "n": args.n,
        "d": args.d,
        "k": args.k,
        "cov": args.cov,
        "fit1_s": t1,
        f"fit{1 + args.iters}_s": tn,
        "per_iter_s": (tn - t1) / args.iters,
        "driver_python_peak_mib": vm_hwm_kib() / 1024,
        "driver_jvm_peak_mib": vm_hwm_kib(jvm_pid) / 1024,
        "rows": model.summary.numRows,
        "load": [round(x, 2) for x in os.getloadavg()],
    }
    spark.stop()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--ns", default="100000,1000000,10000000")
    p.add_argument("--d", type=int, default=16)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--cov", default="full")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--data-dir", default=os.environ.get("SPARK_EM_BENCH_DATA", "data/bench"))
    p.add_argument("--master", default="local[2]")
    p.add_argument("--driver-memory", default="2g")
    p.add_argument("--out", help="JSON output (default bench-results/scaling-<time>.json)")
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)  # child process mode
    args = p.parse_args(argv)
    if args.n:
        print("RESULT " + json.dumps(one(args)), flush=True)
        return 0
    results = []
    for n in (int(x) for x in args.ns.split(",")):
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--n",
            str(n),
            "--d",
            str(args.d),
            "--k",
            str(args.k),
            "--cov",
            args.cov,
            "--iters",
            str(args.iters),
            "--data-dir",
            args.data_dir,
            "--master",
            args.master,
            "--driver-memory",
            args.driver_memory,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            raise SystemExit(f"N={n} failed")
        r = json.loads(lines[-1][7:])
        results.append(r)
        print(
            f"N={n}: {r['per_iter_s']:.3f} s/iter, fit(1) {r['fit1_s']:.2f}s, driver peak RSS "
            f"python {r['driver_python_peak_mib']:.0f} MiB + "
            f"JVM {r['driver_jvm_peak_mib']:.0f} MiB",
            flush=True,
        )
    head = (
        "| N | s/iteration | s/iteration per 1M rows | fit(1) s "
        "| driver peak RSS: Python MiB | JVM MiB |"
    )
    lines = [head, "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['n']:,} | {r['per_iter_s']:.3f} | {r['per_iter_s'] / r['n'] * 1e6:.3f} | "
            f"{r['fit1_s']:.2f} | {r['driver_python_peak_mib']:.0f} | "
            f"{r['driver_jvm_peak_mib']:.0f} |"
        )
    text = "\n".join(lines)
    print()
    print(text)
    out = write_results(
        {"args": vars(args), "results": results, "table": text}, "scaling", args.out
    )
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
