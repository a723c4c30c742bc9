"""A local SparkSession for jobs, scripts and tests that build their own."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession


def local_session(
    master: str = "local[*]", app_name: str = "spark-em", conf: dict[str, str] | None = None
) -> SparkSession:
    """Get or create a SparkSession on ``master`` whose Python workers use this interpreter.

    ``PYSPARK_PYTHON`` is set to ``sys.executable`` (unless already set): otherwise workers
    run the system ``python3``, which may lack numpy/pyarrow.  BLAS is kept single-threaded in
    the workers because Spark already runs one worker per core.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.executorEnv.OMP_NUM_THREADS", "1")
        .config("spark.executorEnv.OPENBLAS_NUM_THREADS", "1")
        .config("spark.executorEnv.MKL_NUM_THREADS", "1")
    )
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
