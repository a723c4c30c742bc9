"""Seconds to save and to load a model of K components in d dimensions (issue 20, point 2):
``python scripts/bench_save.py --k 32 --d 384 --type full``.  A model of random symmetric
positive definite covariances is saved and loaded ``--repeat`` times in one local session
after a warm-up save and load; prints the median of each, their ratio, the directory's size
and the machine's load (``os.getloadavg``) as JSON.  Run it ``nice -n 10``.

A local directory is written and read by this process (:mod:`spark_em.io.local_files`);
``--through-spark`` times, in the same session, the way every other file system goes:
Spark's writers and readers."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time

import numpy as np


def model(k: int, d: int, covariance_type: str, seed: int = 0):
    from spark_em import GaussianMixtureModel

    rng = np.random.default_rng(seed)
    if covariance_type in ("full", "tied"):
        a = rng.normal(size=(k, d, d)) / np.sqrt(d)
        cov = a @ a.transpose(0, 2, 1) + np.eye(d)
        cov = cov[0] if covariance_type == "tied" else cov
    elif covariance_type == "diag":
        cov = rng.uniform(0.5, 2.0, size=(k, d))
    else:
        cov = rng.uniform(0.5, 2.0, size=k)
    return GaussianMixtureModel.fromParameters(
        np.full(k, 1.0 / k), rng.normal(size=(k, d)), cov, covariance_type
    )


def seconds_to_save_and_load(m, root: str, repeat: int) -> tuple[list[float], list[float]]:
    from spark_em import GaussianMixtureModel

    saves, loads = [], []
    for i in range(repeat + 1):  # the first is the warm-up
        path = os.path.join(root, f"m{i}")
        t = time.perf_counter()
        m.write().save(path)
        saved = time.perf_counter() - t
        t = time.perf_counter()
        GaussianMixtureModel.load(path)
        loaded = time.perf_counter() - t
        if i:
            saves.append(saved)
            loads.append(loaded)
    return saves, loads


def directory_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--type", default="full")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument(
        "--through-spark", action="store_true", help="also time Spark's writers and readers"
    )
    args = ap.parse_args()
    from spark_em.data.local_session import local_session

    spark = local_session(args.master, "bench-save", {"spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    root = tempfile.mkdtemp(prefix="bench-save-")
    try:
        m = model(args.k, args.d, args.type)
        load_before = os.getloadavg()[0]
        saves, loads = seconds_to_save_and_load(m, root, args.repeat)
        save, load = statistics.median(saves), statistics.median(loads)
        spark_way = {}
        if args.through_spark:
            from spark_em.io import directory_files

            local_path = directory_files.local_path
            directory_files.local_path = lambda spark, path: None
            try:
                s_saves, s_loads = seconds_to_save_and_load(m, f"{root}/spark", args.repeat)
            finally:
                directory_files.local_path = local_path
            spark_way = {
                "through_spark_save_median_s": statistics.median(s_saves),
                "through_spark_load_median_s": statistics.median(s_loads),
            }
        print(
            json.dumps(
                {
                    "k": args.k,
                    "d": args.d,
                    "covarianceType": args.type,
                    "save_s": saves,
                    "load_s": loads,
                    "save_median_s": save,
                    "load_median_s": load,
                    "save_over_load": save / load,
                    "directory_bytes": directory_bytes(os.path.join(root, "m1")),
                    **spark_way,
                    "loadavg_1min": [load_before, os.getloadavg()[0]],
                },
                indent=1,
            )
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
        spark.stop()


if __name__ == "__main__":
    main()
