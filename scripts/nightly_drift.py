"""Nightly updates against nightly refits on a lake whose components drift (issue 22).

    .venv/bin/python scripts/nightly_drift.py                     # 30 nights (README table)
    .venv/bin/python scripts/nightly_drift.py --nights 10 --rows 2000
    .venv/bin/python scripts/nightly_drift.py --history 30 --nights 30   # a lake with history

Generates a Hive-style lake ``day=1 .. day=N`` (``--rows`` rows a night, ``d``-dimensional,
``k`` components whose means move a little every night), and every night, in one local
SparkSession:

* ``spark-em update --window W --refresh 2`` from the previous night's updated model (the
  chain starts with ``spark-em fit --segment-col day`` on night 1, or, with ``--history
  H``, on the H nights the lake already holds: the chain's first fit, then ``--nights``
  nightly updates, a lake whose window is full from the start);
* beside it, a full refit on the same window: ``spark-em fit --where 'day > t - W'``
  warm-started from the previous night's refit (``--init-model``).

Both are run as jobs (in-process, ``spark_em.cli.main.run``), timed by wall clock.  Each
model is scored on held-out rows drawn like the window's (rows of each window day not in
the lake).  Prints one markdown row per night: held-out mean log-likelihood of each, their
difference, rows each read and seconds each took; writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def day_rows(rng, n, means, scale):
    z = rng.integers(0, means.shape[0], n)
    return means[z] + rng.normal(0.0, 1.0, (n, means.shape[1])) * scale[z][:, None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nights", type=int, default=30, help="nights updated (after the history)")
    ap.add_argument(
        "--history", type=int, default=0, help="nights in the lake before the chain starts"
    )
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--heldout", type=int, default=300, help="held-out rows per day")
    ap.add_argument("--d", type=int, default=4)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--window", type=int, default=30)
    ap.add_argument("--drift", type=float, default=0.05, help="mean shift per night")
    ap.add_argument("--out", default="nightly_drift.json")
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq

    from spark_em import GaussianMixtureModel
    from spark_em.cli.main import run
    from spark_em.data.local_session import local_session

    spark = local_session("local[2]", "nightly-drift", {"spark.sql.shuffle.partitions": "4"})
    spark.sparkContext.setLogLevel("ERROR")
    rng = np.random.default_rng(7)
    means0 = rng.normal(0.0, 4.0, (args.k, args.d))
    velocity = rng.normal(0.0, 1.0, (args.k, args.d))
    velocity *= args.drift / np.linalg.norm(velocity, axis=1, keepdims=True)
    scale = rng.uniform(0.7, 1.3, args.k)
    features = ",".join(f"f{j + 1}" for j in range(args.d))
    root = tempfile.mkdtemp(prefix="nightly-drift-")
    lake, models = os.path.join(root, "features"), os.path.join(root, "models")
    heldout = {}
    rows_table = []
    start = max(1, args.history)
    for t in range(1, start + args.nights + (1 if args.history else 0)):
        means = means0 + t * velocity
        X = day_rows(rng, args.rows, means, scale)
        folder = os.path.join(lake, f"day={t}")
        os.makedirs(folder)
        cols = {f"f{j + 1}": X[:, j] for j in range(args.d)}
        pq.write_table(pa.table(cols), os.path.join(folder, "part-0.parquet"))
        heldout[t] = day_rows(rng, args.heldout, means, scale)
        if t < start:  # the lake's history, before the chain starts
            continue
        common = ["--input", lake, "--features", features, "--quiet"]
        upd, ref = f"{models}/update-{t}", f"{models}/refit-{t}"
        report = os.path.join(root, f"update-{t}.json")
        t0 = time.perf_counter()
        if t == start:
            argv = [*common, "--k", str(args.k), "--segment-col", "day", "--model-out", upd]
            if t > args.window:
                argv += ["--where", f"day > {t - args.window}"]
            assert run("fit", argv) == 0
            upd_rows = args.rows * min(t, args.window)
        else:
            argv = [*common, "--model", f"{models}/update-{t - 1}", "--model-out", upd]
            argv += ["--window", str(args.window), "--refresh", "2", "--report-out", report]
            assert run("update", argv) == 0
            with open(report) as fh:
                upd_rows = json.load(fh)["rows_read"]
        upd_s = time.perf_counter() - t0
        first = max(1, t - args.window + 1)
        t0 = time.perf_counter()
        argv = [*common, "--k", str(args.k), "--where", f"day >= {first}", "--model-out", ref]
        if t > start:
            argv += ["--init-model", f"{models}/refit-{t - 1}"]
        assert run("fit", argv) == 0
        ref_s = time.perf_counter() - t0
        ref_rows = args.rows * (t - first + 1)
        H = np.concatenate([heldout[s] for s in range(first, t + 1)])
        hdf = spark.createDataFrame([(r.tolist(),) for r in H], "features array<double>")
        scores = []
        for path in (upd, ref):
            m = GaussianMixtureModel.load(path).setFeaturesCol("features")
            scores.append(m.score(hdf))
        row = {
            "night": t,
            "update_ll": scores[0],
            "refit_ll": scores[1],
            "difference": scores[1] - scores[0],
            "update_rows": upd_rows,
            "refit_rows": ref_rows,
            "update_s": upd_s,
            "refit_s": ref_s,
        }
        rows_table.append(row)
        print(
            f"| {t} | {scores[0]:.4f} | {scores[1]:.4f} | {row['difference']:.4f} | "
            f"{upd_rows} | {ref_rows} | {upd_s:.1f} | {ref_s:.1f} |",
            flush=True,
        )
    with open(args.out, "w") as fh:
        json.dump({"args": vars(args), "load": os.getloadavg(), "nights": rows_table}, fh, indent=1)
    spark.stop()


if __name__ == "__main__":
    main()
