"""jobs/fit_gmm.py run in-process on the shared session, and the atomic writes it relies on."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import numpy as np
import pytest

from spark_em import GaussianMixtureModel
from spark_em.fs import atomic_write

JOB = Path(__file__).resolve().parents[1] / "jobs" / "fit_gmm.py"


@pytest.fixture(scope="module")
def fit_gmm():
    spec = importlib.util.spec_from_file_location("fit_gmm", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_job_prints_progress_and_writes_outputs(spark, fit_gmm, tmp_path, capsys):
    conf = tmp_path / "demo.toml"
    conf.write_text('[fit]\nk = 3\nseed = 5\ntol = 1e-4\n\n[demo]\nrows = 600\ndim = 2\n')
    model_out, pred_out = tmp_path / "model", tmp_path / "predictions"
    model_out.mkdir()
    (model_out / "stale.txt").write_text("from an older run")  # replaced as a whole
    rc = fit_gmm.main(["--demo", "--conf", str(conf), "--max-iter", "30",
                       "--model-out", str(model_out), "--predictions-out", str(pred_out)])
    out = capsys.readouterr().out
    assert rc == 0
    progress = re.findall(r"^iteration +(\d+) +mean log-likelihood (-?\d+\.\d+)", out, re.M)
    assert len(progress) >= 2 and [int(i) for i, _ in progress] == list(range(1, len(progress) + 1))
    assert "demo data: 600 rows, d=2, k=3" in out
    assert "GaussianMixtureModel: k=3, d=2, covarianceType=full" in out
    assert len(re.findall(r"^  component \d: weight", out, re.M)) == 3
    assert f"model saved to {model_out}" in out and f"predictions written to {pred_out}" in out

    model = GaussianMixtureModel.load(str(model_out))
    assert model.getK() == 3 and model.summary.numIter == len(progress)
    assert not (model_out / "stale.txt").exists()
    lls = [float(v) for _, v in progress]
    assert model.summary.logLikelihoodHistory == pytest.approx(lls, abs=1e-6)

    pred = spark.read.parquet(str(pred_out))
    assert {"features", "prediction", "probability"} <= set(pred.columns)
    assert pred.count() == 600
    sizes = sorted(r["count"] for r in pred.groupBy("prediction").count().collect())
    assert sizes == sorted(model.summary.clusterSizes)
    assert not [p for p in os.listdir(tmp_path) if "_tmp-" in p], "temporary outputs left behind"


def test_job_on_parquet_input_with_numeric_columns(spark, fit_gmm, tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-5, 1, size=(150, 2)), rng.normal(5, 1, size=(150, 2))])
    path = str(tmp_path / "input.parquet")
    spark.createDataFrame([tuple(map(float, x)) for x in X], "x double, y double") \
        .write.parquet(path)
    rc = fit_gmm.main(["--input", path, "--features", "x,y", "--k", "2", "--covariance-type",
                       "diag", "--seed", "1", "--quiet", "--model-out", str(tmp_path / "m")])
    out = capsys.readouterr().out
    assert rc == 0 and "iteration" not in out.split("GaussianMixtureModel")[0]
    model = GaussianMixtureModel.load(str(tmp_path / "m"))
    assert model.covarianceType == "diag"
    np.testing.assert_allclose(np.sort(model.means[:, 0]), [-5, 5], atol=0.3)


def test_atomic_write_leaves_target_untouched_on_failure(spark, tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("keep me")

    def failing(p):
        os.makedirs(p)
        Path(p, "half").write_text("half-written")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(spark, str(target), True, failing)
    assert (target / "old").read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["out"]  # the temporary sibling was removed
    with pytest.raises(FileExistsError, match="already exists"):
        atomic_write(spark, str(target), False, lambda p: None)


def test_demo_job_as_a_new_process(tmp_path):
    """Quick start (a) as a user runs it: a fresh interpreter, no PYSPARK_PYTHON set, the job
    builds its own local Spark whose Python workers must use this same interpreter."""
    import subprocess
    import sys

    conf = tmp_path / "tiny.toml"
    conf.write_text("[fit]\nk = 2\nseed = 1\nmaxIter = 3\n\n[demo]\nrows = 300\ndim = 2\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    proc = subprocess.run(
        [sys.executable, str(JOB), "--demo", "--conf", str(conf), "--master", "local[1]",
         "--model-out", str(tmp_path / "model")],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"^iteration +1 +mean log-likelihood", proc.stdout, re.M)
    assert "GaussianMixtureModel: k=2, d=2" in proc.stdout
    assert (tmp_path / "model" / "metadata").is_dir()
