"""spark-em's kernels timed in-process by ``scripts/bench.py`` (one thread, on the bench's
data): seconds per 1M rows of the E-step alone and of the E-step with moments."""

from __future__ import annotations

import time

from bench_args import DataSet


def kernel_profile(ds: DataSet, path: str, rows: int = 200_000) -> dict:
    """Single-threaded, in-process seconds per 1M rows of spark-em's kernels on this data
    (parameters: a hard-label M-step from k rows as centres): E-step alone (the scoring
    kernel, moments=False) and E-step + moments; the difference is the scatter."""
    import numpy as np
    import pyarrow.parquet as pq

    from spark_em.core.estep import EStepKernel
    from spark_em.core.init_summarizers import NearestCentreSummarizer
    from spark_em.core.summarizers import Chunk

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        threadpool_limits = None
    col = pq.read_table(path, columns=["features"]).slice(0, rows).column("features")
    X = np.asarray(col.combine_chunks().flatten().to_numpy()).reshape(-1, ds.d)
    c = X.mean(axis=0)
    Xc, w = X - c, np.ones(X.shape[0])
    out = {}
    ctx = threadpool_limits(1) if threadpool_limits else None
    try:
        for cov in ds.covs:
            task = NearestCentreSummarizer(X[:: max(1, len(X) // ds.k)][: ds.k], c, cov)
            st = task.new_stats(ds.d)
            task.accumulate(st, Chunk(Xc, w))
            params = st.m_step(c, 1e-6)
            res = {}
            for name, moments in (("estep_s_per_1m", False), ("estep_and_moments_s_per_1m", True)):
                kernel = EStepKernel(params, c, moments=moments)
                best = float("inf")
                for _ in range(2):
                    s = kernel.new_stats(ds.d)
                    t = time.perf_counter()
                    for i in range(0, len(X), 10_000):
                        kernel.accumulate(s, Chunk(Xc[i : i + 10_000], w[i : i + 10_000]))
                    best = min(best, time.perf_counter() - t)
                res[name] = best * 1e6 / len(X)
            res["scatter_s_per_1m"] = res["estep_and_moments_s_per_1m"] - res["estep_s_per_1m"]
            out[cov] = res
            print(
                f"[{ds.name}] kernel {cov}, 1 thread, per 1M rows: E-step "
                f"{res['estep_s_per_1m']:.3f}s + moments {res['scatter_s_per_1m']:.3f}s",
                flush=True,
            )
    finally:
        if ctx is not None:
            ctx.__exit__(None, None, None)
    return out
