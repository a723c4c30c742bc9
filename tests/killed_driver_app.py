"""Driver program for tests/test_killed_driver.py: a fit on local block files that runs until
it is killed: after its first iteration it waits, mid-fit, for the test's signal.

    python tests/killed_driver_app.py MARKER_JSON [SPARK_LOCAL_DIR]

Its own ``local[1]`` session (``spark.local.dir`` from the argument, else Spark's default,
which ``SPARK_LOCAL_DIRS`` overrides); EM with ``tol=0`` and many iterations.  When the first
iteration is done it writes ``MARKER_JSON``: this process's pid and its JVM's pid.
"""

from __future__ import annotations

import json
import os
import sys
import time

PAUSE_S = 900  # then the fit goes on (the test killed it long before)


def main(marker: str, local_dir: str | None) -> None:
    import numpy as np

    from spark_em import GaussianMixture
    from spark_em.data.datasets import to_dataframe
    from spark_em.data.local_session import local_session
    from spark_em.progress import IterationInfo

    conf = {"spark.local.dir": local_dir} if local_dir else {}
    spark = local_session("local[1]", "spark-em-killed-driver", conf)
    spark.sparkContext.setLogLevel("ERROR")
    X = np.random.default_rng(0).normal(size=(2000, 4))

    def progress(event):
        if isinstance(event, IterationInfo) and event.iteration == 1:
            tmp = marker + ".tmp"
            with open(tmp, "w") as fh:
                json.dump({"pid": os.getpid(), "jvm_pid": spark.sparkContext._gateway.proc.pid}, fh)
            os.replace(tmp, marker)
            # the fit waits here, between two iterations, for its signal: the test kills a
            # fit in progress without it taking a core from the other tests meanwhile
            time.sleep(PAUSE_S)

    gm = GaussianMixture(k=3, maxIter=100_000, tol=0.0, seed=0, blockCache="local")
    gm.progress = progress
    gm.fit(to_dataframe(spark, X, num_partitions=2))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
