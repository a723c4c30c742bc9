"""scripts/bench.py's command line: the preset workloads and the flags (``--help``)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

# name: (N, d, K, covariance type, spread of the generating means).
PRESETS = {
    "1m-full": (1_000_000, 16, 8, "full", 6.0),
    "200k-d100-full": (200_000, 100, 20, "full", 6.0),
    "1m-diag": (1_000_000, 16, 8, "diag", 6.0),
    "1m-spherical": (1_000_000, 16, 8, "spherical", 6.0),
    # the GPU library's published CPU benchmark case (issue 23, point 5)
    "1m-d64-k64-diag": (1_000_000, 64, 64, "diag", 6.0),
}
DEFAULT = ["1m-full", "1m-diag", "1m-spherical", "200k-d100-full"]
QUICK = (100_000, 8, 4)


@dataclass
class DataSet:
    n: int
    d: int
    k: int
    covs: list[str] = field(default_factory=list)
    separation: float = 6.0

    @property
    def name(self) -> str:
        sep = "" if self.separation == 6.0 else f"-sep{self.separation:g}"
        return f"n{self.n}-d{self.d}-k{self.k}{sep}"


def parse_args(argv=None, description: str | None = None):
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--workloads",
        default=",".join(DEFAULT),
        help=f"comma-separated presets from {sorted(PRESETS)} (default: all four)",
    )
    p.add_argument("--n", type=int, help="custom workload: rows (with --d, --k, --cov)")
    p.add_argument("--d", type=int, default=16)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--cov", default="full", help="covariance types for spark-em, comma-separated")
    p.add_argument(
        "--separation",
        type=float,
        default=6.0,
        help="custom workload: spread of the generating means (default 6)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"small sanity run: N,d,K={QUICK}, full+diag, 5-iteration fits",
    )
    p.add_argument("--iters", type=int, default=20, help="iterations of the whole fit (default 20)")
    p.add_argument(
        "--sklearn-iters",
        type=int,
        default=4,
        help="sklearn per-iteration time from fits of 1 and 1+this iterations",
    )
    p.add_argument(
        "--sklearn-max-gb",
        type=float,
        default=4.0,
        help="run sklearn only when the data take less memory than this",
    )
    p.add_argument(
        "--sklearn-dtype",
        default="float64",
        help="scikit-learn's input dtype, comma-separated (float64,float32: both in one run)",
    )
    p.add_argument("--no-sklearn", action="store_true")
    p.add_argument("--no-mllib", action="store_true")
    p.add_argument("--repeat", type=int, default=1, help="timed repeats; the minimum is kept")
    p.add_argument("--data-dir", default=os.environ.get("SPARK_EM_BENCH_DATA", "data/bench"))
    p.add_argument("--out", help="JSON output (default bench-results/bench-<time>.json)")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--driver-memory", default="8g")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--block-cache",
        default="auto",
        help="spark-em's blockCache, comma-separated to compare stores in one run: "
        "'auto' (local block files in local mode), 'local', 'spark' (Spark's "
        "cache, the path of any DataFrame on a cluster or Connect), 'parquet' "
        "(tasks read the Parquet files: spark-em is given the plain scan); "
        "'<store>:plain' gives that store the plain scan too, not the cached DataFrame "
        "(e.g. 'local:plain': its first pass then reads the files itself); "
        "'<store>:columns' gives it the same rows cached as d feature columns (d known "
        "from the schema, not found by the first pass's tasks)",
    )
    p.add_argument(
        "--dtype",
        default="float64",
        help="spark-em's dtype, comma-separated to compare float64 and float32 in one run",
    )
    p.add_argument(
        "--cluster",
        type=int,
        default=0,
        metavar="WORKERS",
        help="start a standalone cluster of this many 1-core workers on loopback "
        "(pyspark's spark-class, as tests/test_cluster.py) and run MLlib and "
        "spark-em on it instead of --master",
    )
    p.add_argument("--executor-memory", default="3g", help="with --cluster")
    p.add_argument(
        "--select",
        default="",
        metavar="KS:COVS",
        help="also time a model-selection sweep, e.g. '2..7:full,diag' (fitSelect "
        "vs the sum of the separate fits), per --block-cache store",
    )
    p.add_argument(
        "--missing-fraction",
        default="",
        metavar="F[,F...]",
        help="also time missingValues='marginalize' with this fraction of rows missing 1-3 "
        "features at random (0 = the complete data), against 'invalid' on the complete "
        "data, first covariance type and store (scripts/bench_missing.py)",
    )
    return p.parse_args(argv)


def store_of(entry: str) -> str:
    """The store of a --block-cache entry ``<store>[:<input>]``."""
    return entry.partition(":")[0]


def input_of(entry: str) -> str:
    """What a --block-cache entry ``<store>[:<input>]`` gives spark-em: ``plain`` (the plain
    Parquet scan), ``columns`` (the cached rows as d feature columns), or ``""`` (the cached
    ``array<double>`` column)."""
    return entry.partition(":")[2]


def workloads(args) -> list[DataSet]:
    if args.quick:
        n, d, k = QUICK
        return [DataSet(n, d, k, ["full", "diag"])]
    if args.n:
        return [DataSet(args.n, args.d, args.k, args.cov.split(","), args.separation)]
    sets: dict[tuple, DataSet] = {}
    for name in args.workloads.split(","):
        n, d, k, cov, sep = PRESETS[name.strip()]
        sets.setdefault((n, d, k, sep), DataSet(n, d, k, [], sep)).covs.append(cov)
    return list(sets.values())
