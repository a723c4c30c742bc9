"""``scripts/bench.py --missing-fraction F[,F...]``: spark-em's EM iteration with missing
features (issue 21, point 6).

For each fraction F the benchmark's data set is written again with holes (once, under
``--data-dir``): a fraction F of the rows, chosen at random, lose 1-3 features (count and
features uniform at random; seeded), stored as NaN.  Each is read, cached and fitted with
``missingValues="marginalize"`` (F=0: the complete data), beside ``missingValues="invalid"``
on the complete data, with the same ``k``, ``tol=0``, seed and store as the main benchmark;
seconds per iteration are ``(fit(iters) - fit(1)) / (iters - 1)`` as there.
"""

from __future__ import annotations

import os
import time

import numpy as np
from bench_args import store_of


def holed_path(path: str, fraction: float, seed: int) -> str:
    """The Parquet data at ``path`` with a fraction of its rows holed (written once)."""
    out = path.replace(".parquet", f"-missing{fraction:g}-s{seed}.parquet")
    if os.path.exists(out):
        return out
    import pyarrow.parquet as pq

    from spark_em.data.datasets import write_parquet

    col = pq.read_table(path, columns=["features"]).column("features").combine_chunks()
    n = len(col)
    X = np.asarray(col.flatten().to_numpy()).reshape(n, -1).copy()
    d = X.shape[1]
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(rng.random(n) < fraction)
    counts = rng.integers(1, 4, size=len(rows))
    # the first `count` features of a random permutation of each holed row
    order = np.argsort(rng.random((len(rows), d)), axis=1)
    hole = np.arange(d)[None, :] < counts[:, None]
    cols = np.where(hole, order, -1)
    r, c = np.nonzero(cols >= 0)
    X[rows[r], cols[r, c]] = np.nan
    t = time.perf_counter()
    write_parquet(X, out)
    print(f"written {out} ({len(rows)} holed rows) in {time.perf_counter() - t:.1f}s", flush=True)
    return out


def bench_missing(spark, ds, path: str, args, fractions: list[float], bench_ours) -> dict:
    """Seconds per iteration of spark-em with ``missingValues`` "invalid" (complete data)
    and "marginalize" at each fraction; ``bench_ours(fit, iters, repeat)`` from bench.py."""
    from spark_em import GaussianMixture
    from spark_em.progress import IterationInfo

    cov = ds.covs[0]
    store = store_of(args.block_cache.split(",")[0].strip())
    out: dict = {"covariance_type": cov, "store": store, "runs": []}
    cases = [("invalid", 0.0)] + [("marginalize", f) for f in fractions]
    for mode, fraction in cases:
        source = path if fraction == 0 else holed_path(path, fraction, args.seed)
        df = spark.read.parquet(source).cache()
        df.count()

        def fit(max_iter, per_iter=None, data=df, mode=mode):
            gm = GaussianMixture(
                k=ds.k,
                covarianceType=cov,
                maxIter=max_iter,
                tol=0.0,
                seed=args.seed,
                blockCache=store,
                missingValues=mode,
            )
            if per_iter is not None:
                gm.progress = lambda e: per_iter.append(e) if isinstance(e, IterationInfo) else None
            return gm.fit(data)

        fit(2)  # warm-up on this data (its blocks, its code path)
        res = bench_ours(fit, args.iters, args.repeat)
        res.update({"missingValues": mode, "fraction": fraction})
        out["runs"].append(res)
        df.unpersist()
        print(
            f"[{ds.name}] spark-em {cov} missingValues={mode} F={fraction:g}: fit(1) "
            f"{res['fit1_s']:.2f}s fit({args.iters}) {res['fit_s']:.2f}s -> "
            f"{res['per_iter_s']:.3f}s/iter (median iteration {res['median_iteration_s']:.3f}s)",
            flush=True,
        )
    return out


def missing_table(results: list[dict]) -> str:
    """Markdown: per data set and fraction, s/iteration and the ratio to "invalid"."""
    lines = [
        "| workload | missingValues | rows with holes | s/iteration | median iteration s "
        "| × invalid, complete data |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if "missing" not in r:
            continue
        runs = r["missing"]["runs"]
        base = runs[0]["per_iter_s"]
        name = f"N={r['n']:,} d={r['d']} K={r['k']} {r['missing']['covariance_type']}"
        for run in runs:
            lines.append(
                f"| {name} | {run['missingValues']} | {run['fraction']:.0%} "
                f"| {run['per_iter_s']:.3f} | {run['median_iteration_s']:.3f} "
                f"| {run['per_iter_s'] / base:.2f} |"
            )
    return "\n".join(lines)
