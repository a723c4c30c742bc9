"""Bounded reduce: the same data in many input partitions against few, on every block store.

    .venv/bin/python scripts/bounded_reduce.py                      # 200k x 64, K=32, 500 vs 4
    .venv/bin/python scripts/bounded_reduce.py --rows 50000 --iters 2 --stores local,spark

Writes ``--rows`` rows (d=``--d``, drawn from a ``--k``-component mixture) as Parquet once,
in ``--many`` files and in ``--few`` files.  Then, for each store and each partition count,
a fresh driver process (its own ``--master`` session, so that peak memories are its own)
fits ``k=--k`` full-covariance components for ``--iters`` EM iterations:

* ``local`` and ``spark`` read the few-file copy and ``repartition`` it to the partition
  count (the first pass shuffles; the blocks are then the store's own);
* ``parquet`` reads the copy with that many files (the tasks read row groups themselves).

Reported per run: seconds per EM pass (the driver's wall time of each iteration's pass,
``IterationInfo.profile["pass_s"]``, mean and max; and the iteration's whole ``seconds``),
statistics rows per pass (``profile["tasks"]``), the first pass (validation + blocks) and
the whole fit, and the driver's peak memory: Python's and the JVM's ``VmHWM`` from
``/proc``.  With bounded passes the many-partition runs stay within 2x of the few-partition
ones and memory stays flat.  Prints a table and writes JSON (scripts/results.py).
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


def vm_hwm_mib(pid: int | str = "self") -> float | None:
    """Peak resident memory (VmHWM) of a process, MiB; None where /proc has none."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def data_paths(args) -> dict[str, str]:
    from spark_em.data.datasets import write_mixture_parquet

    out = {}
    for files in (args.many, args.few):
        path = os.path.abspath(
            os.path.join(
                args.data_dir, f"bounded-n{args.rows}-d{args.d}-k{args.k}-files{files}.parquet"
            )
        )
        if not os.path.exists(path):
            print(f"writing {path} ...", flush=True)
            write_mixture_parquet(
                path,
                args.rows,
                args.k,
                args.d,
                "full",
                seed=1,
                rows_per_file=-(-args.rows // files),
            )
        out[files] = path
    return out


def child(args) -> None:
    """One fit in this process; prints one JSON line."""
    from spark_em import GaussianMixture
    from spark_em.data.local_session import local_session
    from spark_em.progress import IterationInfo, ValidationDone

    spark = local_session(
        args.master, "spark-em-bounded-reduce", {"spark.driver.memory": args.driver_memory}
    )
    spark.sparkContext.setLogLevel("ERROR")
    jvm_pid = spark.sparkContext._gateway.proc.pid
    if args.store == "parquet":
        df = spark.read.parquet(args.path)
    else:
        df = spark.read.parquet(args.path).repartition(args.partitions)
    events = []
    gm = GaussianMixture(
        k=args.k,
        covarianceType="full",
        maxIter=args.iters,
        tol=0.0,
        seed=1,
        blockCache=args.store,
        initSampleSize=2000,
    )
    gm.progress = events.append
    t0 = time.perf_counter()
    model = gm.fit(df)
    fit_s = time.perf_counter() - t0
    its = [e for e in events if isinstance(e, IterationInfo)]
    first = next(e for e in events if isinstance(e, ValidationDone))
    print(
        "RESULT "
        + json.dumps(
            {
                "store": args.store,
                "partitions": args.partitions,
                "rows": model.summary.numRows,
                "first_pass_s": first.seconds,
                "fit_s": fit_s,
                "pass_s": [e.profile["pass_s"] for e in its],
                "iteration_s": [e.seconds for e in its],
                "tasks": [e.profile["tasks"] for e in its],
                "python_hwm_mib": vm_hwm_mib(),
                "jvm_hwm_mib": vm_hwm_mib(jvm_pid),
                "load": os.getloadavg(),
            }
        ),
        flush=True,
    )
    spark.stop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--many", type=int, default=500, help="input partitions (and files)")
    p.add_argument("--few", type=int, default=4)
    p.add_argument("--stores", default="local,spark,parquet")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--driver-memory", default="4g")
    p.add_argument("--data-dir", default=os.environ.get("SPARK_EM_BENCH_DATA", "data/bench"))
    p.add_argument("--out", help="JSON output (default bench-results/bounded_reduce-<time>.json)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--partitions", type=int, help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0

    paths = data_paths(args)
    runs = []
    for store in args.stores.split(","):
        for partitions in (args.many, args.few):
            path = paths[partitions] if store == "parquet" else paths[args.few]
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--child",
                "--store",
                store,
                "--partitions",
                str(partitions),
                "--path",
                path,
                "--rows",
                str(args.rows),
                "--d",
                str(args.d),
                "--k",
                str(args.k),
                "--iters",
                str(args.iters),
                "--master",
                args.master,
                "--driver-memory",
                args.driver_memory,
            ]
            print(f"{store}, {partitions} input partitions ...", flush=True)
            res = subprocess.run(cmd, capture_output=True, text=True)
            line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
            if res.returncode or not line:
                print(res.stdout[-2000:] + res.stderr[-4000:], file=sys.stderr)
                return 1
            runs.append(json.loads(line[0][len("RESULT ") :]))

    print(
        f"\n{args.rows:,} rows, d={args.d}, K={args.k} full, {args.iters} iterations, "
        f"master {args.master}"
    )
    head = (
        f"{'store':8} {'parts':>5} {'tasks':>5} {'pass s':>7} {'max':>6} {'iter s':>7} "
        f"{'first s':>7} {'fit s':>7} {'py MiB':>7} {'jvm MiB':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in runs:
        print(
            f"{r['store']:8} {r['partitions']:>5} {max(r['tasks']):>5.0f} "
            f"{sum(r['pass_s']) / len(r['pass_s']):>7.2f} {max(r['pass_s']):>6.2f} "
            f"{sum(r['iteration_s']) / len(r['iteration_s']):>7.2f} {r['first_pass_s']:>7.1f} "
            f"{r['fit_s']:>7.1f} {r['python_hwm_mib']:>7.0f} {r['jvm_hwm_mib']:>7.0f}"
        )
    by = {(r["store"], r["partitions"]): r for r in runs}
    ratios = {}
    for store in args.stores.split(","):
        many, few = by[(store, args.many)], by[(store, args.few)]
        ratios[store] = (sum(many["pass_s"]) / len(many["pass_s"])) / (
            sum(few["pass_s"]) / len(few["pass_s"])
        )
        print(f"{store}: pass time {args.many} / {args.few} partitions = {ratios[store]:.2f}x")
    out = write_results(
        {"args": vars(args), "runs": runs, "pass_ratio": ratios, "load": os.getloadavg()},
        "bounded_reduce",
        args.out,
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
