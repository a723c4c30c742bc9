"""Profile of a short fit: where the seconds of a ``maxIter=1`` fit go, against MLlib's.

    .venv/bin/python scripts/short_fit.py                     # 1M x 16, K=8, full (README)
    .venv/bin/python scripts/short_fit.py --stores local --starts initialModel

Reads the bench's data set (``scripts/bench.py`` writes it), caches it in ONE local
SparkSession (an ``array<double>`` column and the same rows as a Vector column for MLlib),
warms both libraries up, then times, for each block store and each way to start, the best of
``--repeat`` one-iteration fits: the wall time, spark-em's own phases (validation pass,
initialisation, the EM iteration: from its progress events) and every Spark job the fit ran
(its description and duration, from the Spark UI's REST API).  MLlib's ``maxIter=1`` fit is
timed on the same cached data.  Starts: ``initialModel`` (a warm start from a model fitted
beforehand: the nightly update's case), ``kmeans`` and ``sample-em`` (the default).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from results import write_results  # noqa: E402

warnings.filterwarnings("ignore", message="the best of .* EM run")

UI_PORT = 4077


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default="data/bench/mixture-n1000000-d16-k8-s1.parquet")
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--cov", default="full")
    p.add_argument("--stores", default="local,parquet,spark")
    p.add_argument("--starts", default="initialModel,kmeans,sample-em")
    p.add_argument("--dtype", default="float64")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--driver-memory", default="8g")
    p.add_argument("--no-mllib", action="store_true")
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def jobs_since(app_id: str, after: int) -> list[dict]:
    """The finished Spark jobs with an id above ``after``: id, description, seconds."""
    url = f"http://127.0.0.1:{UI_PORT}/api/v1/applications/{app_id}/jobs"
    with urllib.request.urlopen(url, timeout=10) as r:
        jobs = json.load(r)
    out = []
    for j in jobs:
        if j["jobId"] <= after or "completionTime" not in j:
            continue
        t0 = _time(j["submissionTime"])
        t1 = _time(j["completionTime"])
        out.append(
            {
                "id": j["jobId"],
                "what": j.get("description") or j.get("name", ""),
                "seconds": round(t1 - t0, 3),
                "tasks": j.get("numTasks"),
            }
        )
    return sorted(out, key=lambda j: j["id"])


def _time(text: str) -> float:
    from datetime import datetime

    return datetime.strptime(text.replace("GMT", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def last_job(app_id: str) -> int:
    url = f"http://127.0.0.1:{UI_PORT}/api/v1/applications/{app_id}/jobs"
    with urllib.request.urlopen(url, timeout=10) as r:
        return max((j["jobId"] for j in json.load(r)), default=-1)


def profile_fit(spark, app_id, make, repeat: int) -> dict:
    """The best of ``repeat`` runs of ``make()`` (a fit): wall time, phases and jobs."""
    from spark_em.progress import InitialisationDone, IterationInfo, ValidationDone

    best = None
    for _ in range(repeat):
        events: list = []
        before = last_job(app_id)
        t0 = time.perf_counter()
        make(events.append)
        wall = time.perf_counter() - t0
        time.sleep(0.3)  # the listener's last job end reaches the REST API
        phases = {}
        for e in events:
            if isinstance(e, ValidationDone):
                phases["validation_s"] = round(e.seconds, 3)
            elif isinstance(e, InitialisationDone):
                phases["initialisation_s"] = round(e.seconds, 3)
            elif isinstance(e, IterationInfo):
                phases["iteration_s"] = round(e.seconds, 3)
        phases["other_s"] = round(wall - sum(phases.values()), 3)
        run = {"wall_s": round(wall, 3), "phases": phases, "jobs": jobs_since(app_id, before)}
        if best is None or wall < best["wall_s"]:
            best = run
    return best


def main(argv=None) -> int:
    args = parse_args(argv)
    from pyspark.ml.clustering import GaussianMixture as MLlibGM
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    from spark_em import GaussianMixture
    from spark_em.data.local_session import local_session

    spark = local_session(
        args.master,
        "spark-em-short-fit",
        {
            "spark.driver.memory": args.driver_memory,
            "spark.ui.enabled": "true",
            "spark.ui.port": str(UI_PORT),
        },
    )
    spark.sparkContext.setLogLevel("ERROR")
    app_id = spark.sparkContext.applicationId
    path = os.path.abspath(args.data)
    df = (
        spark.read.parquet(path)
        .select(F.col("features"), array_to_vector("features").alias("vector"))
        .cache()
    )
    rows = df.count()
    plain = spark.read.parquet(path)
    slice_ = df.limit(20_000).cache()
    slice_.count()

    def ours(store, start, progress=None, data=None, max_iter=1):
        if data is None:
            data = plain if store == "parquet" else df
        gm = GaussianMixture(
            k=args.k,
            covarianceType=args.cov,
            maxIter=max_iter,
            tol=0.0,
            seed=1,
            blockCache=store,
            dtype=args.dtype,
            initMode="kmeans" if start == "initialModel" else start,
        )
        if start == "initialModel":
            gm.setInitialModel(warm)
        gm.progress = progress
        return gm.fit(data)

    # the warm start: a model of these rows after a few iterations
    warm = GaussianMixture(
        k=args.k, covarianceType=args.cov, maxIter=5, seed=1, blockCache="local"
    ).fit(df)
    out: dict = {"rows": rows, "args": vars(args), "spark_em": {}}
    if not args.no_mllib:

        def mllib(progress=None, data=df):
            return MLlibGM(k=args.k, maxIter=1, tol=0.0, seed=1, featuresCol="vector").fit(data)

        mllib(data=slice_)
        mllib()  # and once on all the rows: its first full-size fit is slower (JIT)
        out["mllib"] = profile_fit(spark, app_id, lambda p: mllib(), args.repeat)
        print(f"MLlib fit(1): {out['mllib']['wall_s']:.2f}s", flush=True)
    for store in args.stores.split(","):
        ours(store, "kmeans", data=None if store == "parquet" else slice_)  # warm-up
        for start in args.starts.split(","):
            res = profile_fit(spark, app_id, lambda p: ours(store, start, p), args.repeat)
            out["spark_em"][f"{store}/{start}"] = res
            ratio = out["mllib"]["wall_s"] / res["wall_s"] if "mllib" in out else float("nan")
            jobs = ", ".join(
                f"{j['what'].split(': ', 1)[-1] or j['id']} {j['seconds']:.2f}s"
                for j in res["jobs"]
            )
            print(
                f"{store:8s} {start:13s} fit(1) {res['wall_s']:.2f}s ({ratio:.2f}x MLlib) "
                f"{res['phases']}\n    jobs: {jobs}",
                flush=True,
            )
    slice_.unpersist()
    df.unpersist()
    spark.stop()
    print("written", write_results(out, "short-fit", args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
