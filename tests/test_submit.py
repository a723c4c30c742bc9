"""The jobs end to end as users launch them: ``spark-submit jobs/fit.py`` and
``jobs/score.py`` (pyspark's own bin/spark-submit, ``--master local[1]``, small Parquet
data), and ``spark-em fit --demo`` building its own embedded session.  Three Spark
launches in all: each costs 10-20 s.

What is checked: the results (against the library on the shared session and against
scikit-learn), the exit codes through spark-submit, and the real stderr: Spark's own log at
WARN (no INFO line), progress lines, no stack trace.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spark_em import GaussianMixture, GaussianMixtureModel
from spark_em.data.datasets import draw_mixture, sample_mixture

from .servers import FAST_JVM, SPARK_HOME, base_env, write_id_features_parquet

ROOT = Path(__file__).resolve().parents[1]
TOL = dict(rtol=1e-9, atol=1e-9)


def spark_submit(args, cwd, extra=()):
    env = base_env()
    env.pop("PYSPARK_PYTHON", None)
    env.pop("PYSPARK_DRIVER_PYTHON", None)
    cmd = [
        str(SPARK_HOME / "bin" / "spark-submit"),
        "--master",
        "local[1]",
        "--conf",
        f"spark.pyspark.python={sys.executable}",
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        "spark.ui.showConsoleProgress=false",
        "--conf",
        "spark.driver.host=127.0.0.1",
        *extra,
        *args,
    ]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def spark_lines(stderr: str) -> list[str]:
    """Lines of Spark's log4j output (``yy/MM/dd HH:mm:ss LEVEL Logger: ...``)."""
    return re.findall(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (\w+) .*$", stderr, re.M)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("submit")
    X, _, truth = sample_mixture(900, k=3, d=2, seed=21, separation=6.0)
    X2, _ = draw_mixture(500, truth, "full", np.random.default_rng(22))
    return {
        "root": root,
        "X": X,
        "X2": X2,
        "day1": write_id_features_parquet(root / "day1.parquet", X),
        "day2": write_id_features_parquet(root / "day2.parquet", X2),
    }


def test_fit_then_score_through_spark_submit(spark, lake, tmp_path):
    model_out, report = tmp_path / "model", tmp_path / "report.json"
    res = spark_submit(
        [
            str(ROOT / "jobs" / "fit.py"),
            "--input",
            lake["day1"],
            "--k",
            "3",
            "--seed",
            "5",
            "--max-iter",
            "30",
            "--tol",
            "1e-6",
            "--model-out",
            str(model_out),
            "--report-out",
            str(report),
        ],
        cwd=tmp_path,
        extra=["--driver-java-options", FAST_JVM],
    )
    assert res.returncode == 0, res.stderr[-4000:]
    assert "Traceback" not in res.stderr
    levels = spark_lines(res.stderr)
    assert "INFO" not in levels, res.stderr[:3000]  # Spark's log at WARN from the context on
    # spark-submit's PythonRunner merges the Python driver's stderr into its own stdout
    assert re.search(r"^\S+ \S+ validation: 900 rows", res.stdout, re.M)
    assert re.search(r"^\S+ \S+ \[run 0\] iteration +1  log-likelihood", res.stdout, re.M)
    assert f"model written to {model_out}" in res.stdout

    model = GaussianMixtureModel.load(str(model_out))
    reference = GaussianMixture(k=3, seed=5, maxIter=30, tol=1e-6).fit(
        spark.read.parquet(lake["day1"])
    )
    for key in ("weights", "means", "covariances"):
        np.testing.assert_allclose(getattr(model, key), getattr(reference, key), **TOL)
    rep = json.loads(report.read_text())
    assert rep["spark"]["application_id"].startswith("local-")
    assert rep["spark"]["application_id"] != spark.sparkContext.applicationId
    assert rep["iterations"] == reference.summary.numIter

    # score the next day with the shipped log4j2 file: not even spark-submit's own banner
    out = tmp_path / "scored"
    res = spark_submit(
        [
            str(ROOT / "jobs" / "score.py"),
            "--model",
            str(model_out),
            "--input",
            lake["day2"],
            "--output",
            str(out),
            "--log-likelihood-col",
            "loglik",
        ],
        cwd=tmp_path,
        extra=[
            "--driver-java-options",
            f"{FAST_JVM} -Dlog4j2.configurationFile={ROOT / 'conf' / 'log4j2.properties'}",
        ],
    )
    assert res.returncode == 0, res.stderr[-4000:]
    assert "INFO" not in spark_lines(res.stderr)
    assert "Using Spark's default log4j profile" not in res.stderr
    rows = sorted(spark.read.parquet(str(out)).collect(), key=lambda r: r["id"])
    sk, X2 = model.toSklearn(), lake["X2"]
    assert [r["prediction"] for r in rows] == sk.predict(X2).tolist()
    np.testing.assert_allclose([r["probability"] for r in rows], sk.predict_proba(X2), atol=1e-9)
    np.testing.assert_allclose([r["loglik"] for r in rows], sk.score_samples(X2), rtol=1e-9)


def test_select_through_spark_submit(spark, lake, tmp_path):
    model_out, report = tmp_path / "model", tmp_path / "select.json"
    res = spark_submit(
        [
            str(ROOT / "jobs" / "select.py"),
            "--input",
            lake["day1"],
            "--k",
            "2..4",
            "--covariance-types",
            "full,spherical",
            "--seed",
            "5",
            "--model-out",
            str(model_out),
            "--report-out",
            str(report),
        ],
        cwd=tmp_path,
        extra=["--driver-java-options", FAST_JVM],
    )
    assert res.returncode == 0, res.stderr[-4000:]
    assert "best by BIC: k=3 full" in res.stdout
    model = GaussianMixtureModel.load(str(model_out))
    _, table = GaussianMixture(seed=5).fitSelect(
        spark.read.parquet(lake["day1"]), [2, 3, 4], ["full", "spherical"]
    )
    rep = json.loads(report.read_text())
    ours = {(r["k"], r["covarianceType"]): r["bic"] for r in table.collect()}
    assert {(r["k"], r["covarianceType"]): r["bic"] for r in rep["candidates"]} == pytest.approx(
        ours, rel=1e-9
    )
    assert min(ours.values()) == pytest.approx(model.toSklearn().bic(lake["X"]), rel=1e-9)


def test_data_error_exit_code_through_spark_submit(lake, tmp_path):
    res = spark_submit(
        [
            str(ROOT / "jobs" / "fit.py"),
            "--input",
            str(tmp_path / "missing"),
            "--k",
            "2",
            "--model-out",
            str(tmp_path / "m"),
        ],
        cwd=tmp_path,
        extra=["--driver-java-options", FAST_JVM],
    )
    assert res.returncode == 1, res.stderr[-3000:]
    # the job's stderr arrives in spark-submit's stdout (PythonRunner merges them)
    job_lines = [ln for ln in res.stdout.splitlines() if ln.startswith("spark-em fit:")]
    assert len(job_lines) == 1 and "input path not found" in job_lines[0], res.stdout[-3000:]
    assert "Traceback" not in res.stdout
    assert "Traceback" not in res.stderr and "INFO" not in spark_lines(res.stderr)
    assert not re.search(r"^\s+at [\w.$]+\(", res.stderr, re.M), "a Java stack trace"
    assert not (tmp_path / "m").exists()


def test_quick_start_demo_embedded_session(tmp_path):
    """``spark-em fit --demo`` as a user runs it: a fresh process, no PYSPARK_PYTHON, its own
    local Spark whose JVM starts with the job's log4j2 file at WARN."""
    conf = tmp_path / "tiny.toml"
    conf.write_text("[demo]\ndemo-rows = 300\n\n[model]\nk = 2\nseed = 1\nmax-iter = 3\n")
    env = {
        k: v for k, v in base_env().items() if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")
    }
    env["JAVA_TOOL_OPTIONS"] = FAST_JVM
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("spark-em")),
            "fit",
            "--demo",
            "--config",
            str(conf),
            "--master",
            "local[1]",
            "--model-out",
            str(tmp_path / "model"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GaussianMixtureModel: k=2, d=2" in proc.stdout
    assert (tmp_path / "model" / "metadata").is_dir()
    err = proc.stderr
    assert re.search(r"^\S+ \S+ \[run 0\] iteration +1  log-likelihood", err, re.M)
    assert "INFO" not in spark_lines(err)
    for banner in ("Using Spark's default log4j profile", "Setting default log level"):
        assert banner not in err
