"""Shared fixtures: one local[2] SparkSession for the whole run."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from spark_em.data.local_session import local_session

    from .servers import FAST_JVM

    # a local dir of this run's own: block files of concurrent runs never mix
    local_dir = str(tmp_path_factory.mktemp("spark-local"))
    session = local_session(
        "local[2]",
        "spark-em-tests",
        {
            "spark.sql.shuffle.partitions": "4",
            "spark.local.dir": local_dir,
            "spark.driver.extraJavaOptions": FAST_JVM,
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def blobs():
    """Three well-separated 2-D Gaussian blobs, 600 rows."""
    from spark_em.data.datasets import sample_mixture

    X, labels, truth = sample_mixture(600, k=3, d=2, covariance_type="full", seed=7, separation=8.0)
    return X, labels, truth


def to_df(spark, X, column="features", partitions=None):
    from spark_em.data.datasets import to_dataframe

    return to_dataframe(spark, np.asarray(X), column, partitions)


class Killed(KeyboardInterrupt):
    """What :func:`kill_at` raises: a fit stopped as Ctrl-C would stop it."""


def kill_at(iteration):
    """A ``progress`` callback that stops the fit after its iteration ``iteration``."""
    from spark_em.progress import IterationInfo

    def progress(event):
        if isinstance(event, IterationInfo) and event.iteration == iteration:
            raise Killed()

    return progress
