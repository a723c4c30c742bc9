"""Driver program for tests/test_cluster.py: a fit through a classic session on a standalone
cluster whose executors cannot import spark_em until the driver ships it.

    python tests/cluster_app.py MASTER_URL PACKAGE_ZIP DATA_PARQUET INITIAL_NPZ MODEL_OUT \
        RESULT_JSON

The executors' Python (``PYSPARK_PYTHON`` in this process's environment) is a bare interpreter
without spark_em; this driver's interpreter has it installed.
"""

from __future__ import annotations

import json
import os
import sys
import time


def probe(_):
    """Runs on an executor: which Python, and where spark_em would be imported from."""
    import importlib.util
    import os
    import sys

    spec = importlib.util.find_spec("spark_em")
    return {
        "python": sys.executable,
        "pid": os.getpid(),
        "spark_em": spec.origin if spec is not None else None,
    }


def main(master, package_zip, data, initial_npz, model_out, result_json) -> None:
    t0 = time.perf_counter()

    def mark(what):
        if os.environ.get("SPARK_EM_TIMING"):
            print(f"{time.perf_counter() - t0:7.1f}s {what}", flush=True)

    import numpy as np
    from pyspark.sql import SparkSession

    from spark_em import GaussianMixture, GaussianMixtureModel

    spark = (
        SparkSession.builder.master(master)
        .appName("spark-em cluster test")
        .config("spark.executor.memory", "512m")
        .config("spark.driver.extraJavaOptions", os.environ.get("SPARK_EM_TEST_JVM_OPTS", ""))
        .config("spark.executor.extraJavaOptions", os.environ.get("SPARK_EM_TEST_JVM_OPTS", ""))
        .config("spark.executor.cores", "1")
        .config("spark.cores.max", "2")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    mark("session")
    sc = spark.sparkContext
    result = {"before": sc.parallelize(range(4), 4).map(probe).collect()}
    mark("probe")
    sc.addPyFile(package_zip)  # what a cluster user does with the built package
    result["after"] = sc.parallelize(range(4), 4).map(probe).collect()
    mark("probe after addPyFile")

    init = np.load(initial_npz)
    initial = GaussianMixtureModel.fromParameters(
        init["weights"], init["means"], init["covariances"], "full"
    )
    df = spark.read.parquet(data).repartition(3)
    model = GaussianMixture(k=3, maxIter=3, tol=0.0, initialModel=initial).fit(df)
    mark("fit")
    model.write().overwrite().save(model_out)
    mark("save")
    pred = model.transform(df).groupBy("prediction").count().collect()
    mark("transform")
    result.update(
        weights=model.weights.tolist(),
        means=model.means.tolist(),
        covariances=model.covariances.tolist(),
        history=model.summary.logLikelihoodHistory,
        # block managers: the driver's plus one per executor JVM
        block_managers=[
            f"{i.host()}:{i.port()}" for i in sc._jsc.sc().statusTracker().getExecutorInfos()
        ],
        prediction_counts={int(r["prediction"]): int(r["count"]) for r in pred},
    )
    with open(result_json, "w") as fh:
        json.dump(result, fh)
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
