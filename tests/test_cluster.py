"""A real multi-process cluster: a standalone master and two 1-core workers on loopback
(separate executor JVMs with their own Python workers), started from pyspark's
``bin/spark-class``; the pip package has no ``sbin/start-master.sh``/``start-worker.sh``.

The executors run a bare Python that has numpy/pyarrow/pyspark but NOT spark_em, so a fit
works only if the closures pickle and the library travels: by ``addPyFile`` from a driver
session, and by ``spark-submit --py-files`` as a cluster user would.  Results are compared
with the same fit on the local[2] session (to 1e-9).
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from .scenarios import estimator
from .servers import (
    FAST_JVM,
    SPARK_HOME,
    StandaloneCluster,
    base_env,
    write_id_features_parquet,
)

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[1]
TOL = dict(rtol=1e-9, atol=1e-9)


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
    """A venv whose interpreter sees this environment's site-packages as a plain path entry:
    numpy, pyarrow, pyspark import, but the .pth hooks there (the editable install of
    spark_em) are not processed, so ``import spark_em`` fails."""
    venv = tmp_path_factory.mktemp("bare-python") / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "spark_em_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = base_env()
    check = subprocess.run(
        [
            str(python),
            "-c",
            "import numpy, pyarrow, pandas, pyspark, scipy; "
            "import importlib.util as u; print(u.find_spec('spark_em'))",
        ],
        cwd=venv,
        env=env,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "None", "the bare Python must not import spark_em"
    return str(python)


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("dist")
    res = subprocess.run(
        ["bash", str(ROOT / "scripts" / "package.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    whl, zip_ = res.stdout.split()
    return {"wheel": whl, "zip": zip_}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = StandaloneCluster(tmp_path_factory.mktemp("standalone"))
    c.start(workers=2, cores=1, memory="1g")
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from spark_em.data.datasets import sample_mixture

    X, labels, truth = sample_mixture(900, k=3, d=2, seed=21, separation=6.0)
    path = tmp_path_factory.mktemp("cluster-data") / "data.parquet"
    return write_id_features_parquet(path, X), X, truth


def _run(cmd, env, timeout, cluster, cwd):
    res = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        pytest.fail(
            f"{cmd[0]} exited with {res.returncode}\nstdout:\n{res.stdout[-3000:]}\n"
            f"stderr:\n{res.stderr[-6000:]}\ncluster logs:\n{cluster.logs()}"
        )
    return res


def test_session_fit_ships_library_to_executors(
    cluster, bare_python, package, data, spark, tmp_path
):
    from spark_em import GaussianMixtureModel

    path, X, truth = data
    init = dict(
        weights=truth["weights"], means=truth["means"] + 0.7, covariances=truth["covariances"]
    )
    np.savez(tmp_path / "init.npz", **init)
    env = base_env()
    env["PYSPARK_PYTHON"] = bare_python  # executors' Python: no spark_em
    env["SPARK_EM_TEST_JVM_OPTS"] = FAST_JVM
    model_out = str(tmp_path / "model")
    result_json = tmp_path / "result.json"
    _run(
        [
            sys.executable,
            str(ROOT / "tests" / "cluster_app.py"),
            cluster.master_url,
            package["zip"],
            path,
            str(tmp_path / "init.npz"),
            model_out,
            str(result_json),
        ],
        env,
        900,
        cluster,
        cwd=tmp_path,
    )
    result = json.loads(result_json.read_text())

    assert len(result["block_managers"]) == 3  # the driver and two executor JVMs
    for probe in result["before"]:
        assert probe["python"] == bare_python and probe["spark_em"] is None
    zip_name = Path(package["zip"]).name
    for probe in result["after"]:
        assert zip_name in probe["spark_em"] and str(ROOT) not in probe["spark_em"]

    reference = estimator(
        k=3,
        maxIter=3,
        tol=0.0,
        initialModel=GaussianMixtureModel.fromParameters(**init, covarianceType="full"),
    ).fit(spark.read.parquet(path).repartition(3))
    np.testing.assert_allclose(result["weights"], reference.weights, **TOL)
    np.testing.assert_allclose(result["means"], reference.means, **TOL)
    np.testing.assert_allclose(result["covariances"], reference.covariances, **TOL)
    np.testing.assert_allclose(result["history"], reference.summary.logLikelihoodHistory, **TOL)
    assert sum(result["prediction_counts"].values()) == len(X)
    saved = GaussianMixtureModel.load(model_out)
    np.testing.assert_array_equal(saved.means, np.array(result["means"]))


def test_spark_submit_job_with_py_files(cluster, bare_python, package, data, spark, tmp_path):
    from pyspark.sql import functions as F

    from spark_em import GaussianMixtureModel

    path, X, _ = data
    env = base_env()
    env.pop("PYSPARK_PYTHON", None)
    env.pop("PYSPARK_DRIVER_PYTHON", None)
    model_out, pred_out = tmp_path / "model", tmp_path / "predictions"
    res = _run(
        [
            str(SPARK_HOME / "bin" / "spark-submit"),
            "--master",
            cluster.master_url,
            "--py-files",
            package["zip"],
            "--conf",
            f"spark.pyspark.python={bare_python}",  # driver and executors: no spark_em
            "--conf",
            "spark.executor.memory=512m",
            "--conf",
            "spark.cores.max=2",
            "--conf",
            "spark.driver.host=127.0.0.1",
            "--conf",
            "spark.ui.enabled=false",
            "--conf",
            "spark.ui.showConsoleProgress=false",
            "--driver-java-options",
            FAST_JVM,
            "--conf",
            f"spark.executor.extraJavaOptions={FAST_JVM}",
            str(ROOT / "jobs" / "fit.py"),
            "--input",
            path,
            "--k",
            "3",
            "--seed",
            "5",
            "--max-iter",
            "3",
            "--tol",
            "0",
            "--model-out",
            str(model_out),
            "--predictions-out",
            str(pred_out),
        ],
        env,
        900,
        cluster,
        cwd=tmp_path,
    )
    # PythonRunner merges the job's stderr (progress lines) into spark-submit's stdout
    assert "[run 0] iteration   3" in res.stdout and f"model written to {model_out}" in res.stdout
    assert "Traceback" not in res.stderr + res.stdout

    model = GaussianMixtureModel.load(str(model_out))
    df = spark.read.parquet(path)
    reference = estimator(k=3, seed=5, maxIter=3, tol=0.0).fit(df)
    np.testing.assert_allclose(model.weights, reference.weights, **TOL)
    np.testing.assert_allclose(model.means, reference.means, **TOL)
    np.testing.assert_allclose(model.covariances, reference.covariances, **TOL)
    assert model.summary.numIter == 3

    pred = spark.read.parquet(str(pred_out))
    assert pred.count() == len(X)
    expected = reference.transform(df).select("id", F.col("prediction").alias("expected"))
    mismatches = pred.join(expected, "id").where(F.col("prediction") != F.col("expected")).count()
    assert mismatches == 0
