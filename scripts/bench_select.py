"""The model-selection sweep of ``scripts/bench.py --select``: ``fitSelect`` over k x
covariance types (every candidate in one scan per EM iteration) against the sum of the
separate fits of the same candidates (same seeds: the same EM runs), per block store."""

from __future__ import annotations

import time


def bench_select(spark, df, plain, ks, covs, stores, seed: int, tol: float) -> dict:
    from spark_em import GaussianMixture

    out = {}
    for store in stores:
        data = plain if store == "parquet" else df
        gm = GaussianMixture(seed=seed, tol=tol, blockCache=store)
        GaussianMixture(k=2, seed=seed, maxIter=2, blockCache=store).fit(data)  # warm-up
        t = time.perf_counter()
        _, table = gm.fitSelect(data, ks, covs)
        sweep = time.perf_counter() - t
        rows = table.collect()
        separate, iters = {}, {}
        for k in ks:
            for cov in covs:
                t = time.perf_counter()
                model = GaussianMixture(
                    k=k, covarianceType=cov, seed=seed, tol=tol, blockCache=store
                ).fit(data)
                separate[f"k={k} {cov}"] = time.perf_counter() - t
                iters[f"k={k} {cov}"] = model.summary.numIter
        total = sum(separate.values())
        out[store] = {
            "sweep_s": sweep,
            "separate_s": separate,
            "separate_total_s": total,
            "ratio": sweep / total,
            "candidates": len(rows),
            "iterations": {f"k={r['k']} {r['covarianceType']}": r["iterations"] for r in rows},
            "separate_iterations": iters,
        }
        print(
            f"[select {store}] {len(rows)} candidates: one sweep {sweep:.1f}s, separate fits "
            f"{total:.1f}s in all -> {sweep / total:.2f}x the separate fits",
            flush=True,
        )
    return out
