"""``spark-em fit`` run in-process on the shared session: outputs, report, plots, progress,
warm start, convergence, errors, and outputs that go together or not at all.

The job's numbers are checked against scikit-learn given the fitted parameters (BIC, AIC,
cluster sizes, probabilities), not against the job's own code.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from spark_em import GaussianMixtureModel
from spark_em.cli.main import run
from spark_em.data.datasets import draw_mixture, sample_mixture
from spark_em.io.filesystem import atomic_write

from .servers import write_id_features_parquet


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """Two days of rows from one 3-component mixture in 2-D, as id+features Parquet."""
    X, _, truth = sample_mixture(600, k=3, d=2, seed=11, separation=5.0)
    X2, _ = draw_mixture(600, truth, "full", np.random.default_rng(12))
    root = tmp_path_factory.mktemp("lake")
    return {
        "day1": write_id_features_parquet(root / "day1.parquet", X),
        "X1": X,
        "day2": write_id_features_parquet(root / "day2.parquet", X2),
        "X2": X2,
        "truth": truth,
    }


def sk_of(model):
    return model.toSklearn()


def no_temporaries(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if "._tmp-" in p.name or "._old-" in p.name]


def test_fit_writes_model_predictions_report_and_plots(spark, lake, tmp_path, capsys):
    out = tmp_path / "out"
    rc = run(
        "fit",
        [
            "--input",
            lake["day1"],
            "--k",
            "3",
            "--seed",
            "3",
            "--tol",
            "1e-5",
            "--model-out",
            str(out / "model"),
            "--predictions-out",
            str(out / "pred"),
            "--report-out",
            str(out / "report.json"),
            "--plot-dir",
            str(out / "plots"),
            "--log-likelihood-col",
            "loglik",
        ],
    )
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    model = GaussianMixtureModel.load(str(out / "model"))
    report = json.loads((out / "report.json").read_text())
    sk, X = sk_of(model), lake["X1"]

    # report: sklearn with the fitted parameters is the truth
    assert report["converged"] is True and report["iterations"] == model.summary.numIter
    assert report["log_likelihood_history"] == pytest.approx(model.summary.logLikelihoodHistory)
    assert report["bic"] == pytest.approx(sk.bic(X), rel=1e-9)
    assert report["aic"] == pytest.approx(sk.aic(X), rel=1e-9)
    assert report["mean_log_likelihood"] == pytest.approx(sk.score(X), rel=1e-9)
    assert report["cluster_sizes"] == np.bincount(sk.predict(X), minlength=3).tolist()
    assert report["rows"] == 600 and report["weight_sum"] == 600
    assert report["parameters"]["k"] == 3 and report["parameters"]["seed"] == 3
    assert report["spark"]["application_id"] == spark.sparkContext.applicationId
    assert set(report["seconds"]) >= {"validation", "initialisation", "iterations", "total"}
    assert all(v >= 0 for v in report["seconds"].values())
    assert report["outputs"] == {
        "model-out": str(out / "model"),
        "predictions-out": str(out / "pred"),
        "report-out": str(out / "report.json"),
        "plot-dir": str(out / "plots"),
    }
    assert report["total_log_likelihood"] == pytest.approx(sk.score(X) * 600, rel=1e-9)

    # predictions: int prediction, array<double> probability, log-likelihood per row
    pred = spark.read.parquet(str(out / "pred"))
    types = dict(pred.dtypes)
    assert types["prediction"] == "int" and types["probability"] == "array<double>"
    rows = sorted(pred.collect(), key=lambda r: r["id"])
    np.testing.assert_allclose([r["probability"] for r in rows], sk.predict_proba(X), atol=1e-9)
    np.testing.assert_allclose([r["loglik"] for r in rows], sk.score_samples(X), rtol=1e-9)
    assert [r["prediction"] for r in rows] == sk.predict(X).tolist()

    # plots: real PNG files
    for name in ("log_likelihood.png", "clusters.png"):
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # progress on stderr: validation, initialisation, then one line per iteration with label
    err = cap.err
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d validation: 600 rows, 0 bad rows", err, re.M)
    assert re.search(
        r"^\S+ \S+ initialisation: sample-em, 1 run \(best of 10 starts on 600 sample rows: "
        r"-\d+\.\d+ per row\), \d+\.\d+s",
        err,
        re.M,
    )
    its = re.findall(
        r"^\S+ \S+ \[run 0\] iteration +(\d+)  log-likelihood (-\d+\.\d+).*rows/s", err, re.M
    )
    assert [int(i) for i, _ in its] == list(range(1, model.summary.numIter + 1))
    assert [float(v) for _, v in its] == pytest.approx(model.summary.logLikelihoodHistory, abs=1e-6)
    assert "model written to" in cap.out and "GaussianMixtureModel: k=3, d=2" in cap.out
    assert not no_temporaries(tmp_path)


def test_n_init_runs_are_labelled(spark, lake, tmp_path, capsys):
    rc = run(
        "fit",
        [
            "--input",
            lake["day1"],
            "--k",
            "3",
            "--n-init",
            "2",
            "--max-iter",
            "3",
            "--model-out",
            str(tmp_path / "m"),
        ],
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    for label in ("run 0", "run 1"):
        assert len(re.findall(rf"\[{label}\] iteration", err)) >= 1
    assert "initialisation: sample-em, 2 runs" in err
    assert "(10 starts each on 600 sample rows)" in err


def test_warm_start_converges_in_fewer_iterations(spark, tmp_path, capsys):
    """Yesterday's model started on today's rows (same mixture, overlapping components):
    fewer iterations than a cold k-means start (sklearn: 42 cold, 8 warm on these rows; the
    default sample-em start does its iterations on the sample instead); k and covariance
    type come from the saved model."""
    X, _, truth = sample_mixture(3000, k=3, d=2, seed=11, separation=3.0)
    X2, _ = draw_mixture(3000, truth, "full", np.random.default_rng(12))
    from sklearn.mixture import GaussianMixture as SkGM

    # yesterday's model, fitted by sklearn on yesterday's rows (saves ~100 Spark iterations)
    GaussianMixtureModel.fromSklearn(
        SkGM(3, tol=1e-6, max_iter=300, random_state=4).fit(X)
    ).write().save(str(tmp_path / "yesterday"))
    day2 = write_id_features_parquet(tmp_path / "day2.parquet", X2)
    common = ["--tol", "1e-6", "--max-iter", "300", "--seed", "4", "--quiet"]
    assert (
        run(
            "fit",
            [
                "--input",
                day2,
                "--k",
                "3",
                "--init-mode",
                "kmeans",
                "--model-out",
                str(tmp_path / "cold"),
                "--report-out",
                str(tmp_path / "cold.json"),
            ]
            + common,
        )
        == 0
    )
    assert (
        run(
            "fit",
            [
                "--input",
                day2,
                "--init-model",
                str(tmp_path / "yesterday"),
                "--model-out",
                str(tmp_path / "warm"),
                "--report-out",
                str(tmp_path / "warm.json"),
            ]
            + common,
        )
        == 0
    )
    cold = json.loads((tmp_path / "cold.json").read_text())
    warm = json.loads((tmp_path / "warm.json").read_text())
    assert warm["converged"] and cold["converged"]
    assert warm["iterations"] < cold["iterations"], (warm["iterations"], cold["iterations"])
    assert warm["parameters"]["k"] == 3 and warm["parameters"]["covariance-type"] == "full"
    assert "initialisation: initialModel, 1 run" not in capsys.readouterr().err  # --quiet
    # asking for another k than the saved model's is a usage error naming both
    assert (
        run(
            "fit",
            [
                "--input",
                day2,
                "--init-model",
                str(tmp_path / "yesterday"),
                "--k",
                "4",
                "--model-out",
                str(tmp_path / "x"),
            ],
        )
        == 2
    )
    assert "--k is 4 but --init-model" in capsys.readouterr().err


def test_not_converged_warns_and_require_convergence_exits_3(spark, lake, tmp_path, capsys):
    import warnings

    from spark_em import ConvergenceWarning

    base = ["--input", lake["day1"], "--k", "3", "--max-iter", "2", "--tol", "0", "--quiet"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert (
            run(
                "fit",
                base
                + ["--model-out", str(tmp_path / "m1"), "--report-out", str(tmp_path / "r1.json")],
            )
            == 0
        )
    # one line of the job's own, not also the library's ConvergenceWarning
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    err = capsys.readouterr().err
    assert err.count("did not converge") == 1 and "WARNING: the fit did not converge" in err
    r1 = json.loads((tmp_path / "r1.json").read_text())
    assert r1["converged"] is False and r1["iterations"] == 2 and r1["warnings"]

    rc = run(
        "fit",
        base
        + [
            "--model-out",
            str(tmp_path / "m2"),
            "--predictions-out",
            str(tmp_path / "p2"),
            "--report-out",
            str(tmp_path / "r2.json"),
            "--require-convergence",
        ],
    )
    err = capsys.readouterr().err
    assert rc == 3
    assert err.strip().splitlines()[-1].startswith("spark-em fit: error: the fit did not converge")
    assert not (tmp_path / "m2").exists() and not (tmp_path / "p2").exists()
    r2 = json.loads((tmp_path / "r2.json").read_text())
    assert r2["converged"] is False and r2["status"].startswith("refused")
    assert r2["outputs"] == {"report-out": str(tmp_path / "r2.json")}  # only what was written
    assert not no_temporaries(tmp_path)


# A directory where mkdir fails although os.access says it is writable (root, sysfs): the
# only way on this machine to fail a write after the model was staged, once every local
# check before Spark has passed.
UNWRITABLE = "/sys/fs/spark-em-predictions"


@pytest.mark.skipif(
    not (os.path.isdir("/sys/fs") and os.access("/sys/fs", os.W_OK)),
    reason="needs /sys/fs to look writable (running as root) so that the write fails in Spark",
)
def test_failed_run_leaves_older_outputs_untouched(spark, lake, tmp_path, capsys):
    model_out = tmp_path / "model"
    assert (
        run("fit", ["--input", lake["day1"], "--k", "2", "--quiet", "--model-out", str(model_out)])
        == 0
    )
    before = {p.relative_to(model_out): p.read_bytes() for p in model_out.rglob("*") if p.is_file()}
    rc = run(
        "fit",
        [
            "--input",
            lake["day1"],
            "--k",
            "3",
            "--quiet",
            "--overwrite",
            "--model-out",
            str(model_out),
            "--report-out",
            str(tmp_path / "r.json"),
            "--predictions-out",
            UNWRITABLE,
        ],
    )
    err = capsys.readouterr().err.strip()
    assert rc == 1, err
    # Spark's failure in one line of the job's words
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"spark-em fit: error: cannot write --predictions-out {UNWRITABLE}: ")
    assert err.endswith("; nothing was written"), err
    after = {p.relative_to(model_out): p.read_bytes() for p in model_out.rglob("*") if p.is_file()}
    assert after == before  # the k=2 model, byte for byte
    assert GaussianMixtureModel.load(str(model_out)).getK() == 2
    report = json.loads((tmp_path / "r.json").read_text())  # the failure's report only
    assert report["status"] == "failed" and report["outputs"] == {
        "report-out": str(tmp_path / "r.json")
    }
    assert sorted(os.listdir(tmp_path)) == ["model", "r.json"]
    assert not no_temporaries(tmp_path)


def test_overwrite_refuses_a_directory_of_other_files(spark, lake, tmp_path, capsys):
    target = tmp_path / "thesis"
    (target / "sub").mkdir(parents=True)
    (target / "thesis.tex").write_text("\\documentclass{book}")
    (target / "sub" / "notes.txt").write_text("keep")
    args = ["--input", lake["day1"], "--k", "2", "--quiet", "--model-out", str(target)]
    assert run("fit", args) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert run("fit", args + ["--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not hold a spark-em model (sub/, thesis.tex)" in err
    assert len(err.splitlines()) == 1
    assert (target / "thesis.tex").exists() and (target / "sub" / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--input", "{tmp}/nowhere.parquet"], "input path not found"),
        (["--table", "no_such_table_x"], "table not found"),
        (["--input", "{day1}", "--features", "nope"], "featuresCol 'nope' does not exist"),
        (["--input", "{day1}", "--features", "id,nope"], "feature column 'nope' does not exist"),
        (["--input", "{strings}", "--features", "s"], "featuresCol 's' has type string"),
        (["--input", "{day1}", "--weight-col", "w"], "weightCol 'w' does not exist"),
        (["--input", "{day1}", "--where", "nope > 1"], "--where: column not found"),
        (["--input", "{nan}", "--features", "x,y"], "NaN"),
        (["--input", "{day1}", "--init-model", "{tmp}/no-model"], "--init-model"),
        (
            ["--input", "{clash}", "--predictions-out", "{tmp}/pred"],
            "already has a column 'prediction'",
        ),
    ],
    ids=[
        "missing-path",
        "missing-table",
        "missing-column",
        "missing-listed-column",
        "non-numeric",
        "missing-weight",
        "where-column",
        "nan-rows",
        "missing-init-model",
        "prediction-column-clash",
    ],
)
def test_data_errors_exit_1_in_one_line(spark, lake, tmp_path, capsys, args, message):
    strings = tmp_path / "strings.parquet"
    spark.createDataFrame([("a",), ("b",)], "s string").write.parquet(str(strings))
    nan = tmp_path / "nan.parquet"
    spark.createDataFrame(
        [(1.0, 2.0), (float("nan"), 1.0), (3.0, 4.0)], "x double, y double"
    ).write.parquet(str(nan))
    clash = tmp_path / "clash.parquet"
    spark.createDataFrame(
        [([1.0, 2.0], 0), ([3.0, 1.0], 1), ([0.5, 4.0], 0)],
        "features array<double>, prediction int",
    ).write.parquet(str(clash))
    fmt = dict(tmp=tmp_path, day1=lake["day1"], strings=strings, nan=nan, clash=clash)
    argv = [a.format(**fmt) for a in args] + [
        "--k",
        "2",
        "--quiet",
        "--model-out",
        str(tmp_path / "model"),
    ]
    rc = run("fit", argv)
    err = capsys.readouterr().err
    assert rc == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spark-em fit: error: "), err
    assert message in lines[0]
    assert "Traceback" not in err and not (tmp_path / "model").exists()
    if "--features" not in args:
        return
    # --verbose: the same line, after the stack trace
    assert run("fit", argv + ["--verbose"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and message in err.strip().splitlines()[-1]


def test_commit_puts_earlier_outputs_back_when_a_later_one_fails(spark, tmp_path):
    """Two outputs staged; the second rename fails (its staged directory vanished): the first
    output is back to its older content, nothing else is left."""
    from spark_em.cli.outputs import PLOTS, REPORT, Outputs

    report, plots = tmp_path / "report.json", tmp_path / "plots"
    report.write_text(json.dumps({"spark_em_report": {"version": 1}, "old": True}))
    outputs = Outputs(spark, overwrite=True)
    r, p = (
        outputs.add("report-out", str(report), REPORT),
        outputs.add("plot-dir", str(plots), PLOTS),
    )
    outputs.stage(r, lambda path: Path(path).write_text('{"spark_em_report": {}, "new": 1}'))
    outputs.stage(p, lambda path: os.makedirs(path))
    os.rmdir(p.staged)
    with pytest.raises(OSError):
        outputs.commit()
    assert json.loads(report.read_text())["old"] is True
    assert sorted(os.listdir(tmp_path)) == ["report.json"]


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


def test_mlflow_logs_params_metrics_report_and_model(spark, lake, tmp_path, monkeypatch, capsys):
    """Against a local file tracking store and its model registry (mlflow-skinny has no
    database backend): the README's metric names, the run id printed, the model in MLflow's
    format (a pyfunc that scores pandas rows as sklearn does), registered."""
    mlflow = pytest.importorskip("mlflow")
    import pandas as pd
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # undone after the test
    uri = (tmp_path / "mlruns").as_uri()
    rc = run(
        "fit",
        [
            "--input",
            lake["day1"],
            "--k",
            "3",
            "--seed",
            "2",
            "--n-init",
            "2",
            "--tol",
            "1e-5",
            "--quiet",
            "--model-out",
            str(tmp_path / "model"),
            "--plot-dir",
            str(tmp_path / "plots"),
            "--mlflow",
            "--mlflow-tracking-uri",
            uri,
            "--mlflow-experiment",
            "nightly",
            "--mlflow-register",
            "nightly-gmm",
        ],
    )
    out = capsys.readouterr().out
    assert rc == 0
    model = GaussianMixtureModel.load(str(tmp_path / "model"))
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.get_experiment_by_name("nightly")
    (run_info,) = client.search_runs([exp.experiment_id])
    run_id = run_info.info.run_id
    assert f"MLflow run {run_id} (experiment 'nightly'" in out
    assert "MLflow: registered nightly-gmm version 1" in out
    assert run_info.info.status == "FINISHED"
    assert run_info.data.params["k"] == "3" and run_info.data.params["covarianceType"] == "full"
    # the README's names: the model's own history, and one per run with n-init > 1
    history = client.get_metric_history(run_id, "em_mean_log_likelihood")
    assert [m.step for m in history] == list(range(1, model.summary.numIter + 1))
    assert [m.value for m in history] == pytest.approx(model.summary.logLikelihoodHistory)
    assert {"em_mean_log_likelihood_run_0", "em_mean_log_likelihood_run_1"} <= set(
        run_info.data.metrics
    )
    sk = model.toSklearn()
    X = lake["X1"]
    metrics = run_info.data.metrics
    assert metrics["bic"] == pytest.approx(sk.bic(X), rel=1e-9)
    assert metrics["mean_log_likelihood"] == pytest.approx(sk.score(X), rel=1e-9)
    assert metrics["total_log_likelihood"] == pytest.approx(sk.score(X) * len(X), rel=1e-9)
    artifacts = {f.path for f in client.list_artifacts(run_id)}
    assert {"report.json", "spark-model", "plots"} <= artifacts
    model_files = {f.path for f in client.list_artifacts(run_id, "spark-model")}
    assert {"spark-model/metadata", "spark-model/data"} <= model_files
    report = mlflow.artifacts.load_dict(f"{run_info.info.artifact_uri}/report.json")
    assert report["iterations"] == model.summary.numIter
    assert mlflow.active_run() is None

    # the registered version is an MLflow model: pandas rows in, sklearn's numbers out
    mlflow.set_registry_uri(uri)
    pyfunc = mlflow.pyfunc.load_model("models:/nightly-gmm/1")
    features = [list(x) for x in X]
    features[5] = [float("nan"), 1.0]
    rows = pd.DataFrame({"id": range(len(X)), "features": features})
    got = pyfunc.predict(rows)
    keep = np.arange(len(X)) != 5
    np.testing.assert_array_equal(got["prediction"][keep].astype(int), sk.predict(X[keep]))
    np.testing.assert_allclose(
        np.stack(got["probability"][keep]), sk.predict_proba(X[keep]), atol=1e-12
    )
    np.testing.assert_allclose(got["log_likelihood"][keep], sk.score_samples(X[keep]), rtol=1e-12)
    assert got["probability"][5] is None and pd.isna(got["prediction"][5])


def test_fit_a_table_with_where_sample_columns_and_weights(spark, tmp_path, capsys):
    """--table (a view here), --where, --sample-fraction, numeric feature columns and a
    weight column: the same model as the library fitted on the same rows."""
    from pyspark.sql import functions as F

    from spark_em import GaussianMixture

    X, _, _ = sample_mixture(800, k=2, d=2, seed=8, separation=6.0)
    df = spark.createDataFrame(
        [
            (i, float(x), float(y), 1.0 + (i % 3), "a" if i % 4 else "b")
            for i, (x, y) in enumerate(X)
        ],
        "id long, x double, y double, w double, g string",
    )
    df.createOrReplaceTempView("spark_em_job_input")
    try:
        rc = run(
            "fit",
            [
                "--table",
                "spark_em_job_input",
                "--where",
                "g = 'a'",
                "--sample-fraction",
                "0.8",
                "--seed",
                "9",
                "--features",
                "x,y",
                "--weight-col",
                "w",
                "--k",
                "2",
                "--tol",
                "1e-6",
                "--quiet",
                "--model-out",
                str(tmp_path / "m"),
                "--report-out",
                str(tmp_path / "r.json"),
            ],
        )
        assert rc == 0, capsys.readouterr().err
        rows = spark.table("spark_em_job_input").where("g = 'a'").sample(fraction=0.8, seed=9)
        reference = GaussianMixture(
            k=2, seed=9, tol=1e-6, featuresCol=["x", "y"], weightCol="w"
        ).fit(rows)
        model = GaussianMixtureModel.load(str(tmp_path / "m"))
        np.testing.assert_allclose(model.means, reference.means, rtol=1e-9, atol=1e-9)
        report = json.loads((tmp_path / "r.json").read_text())
        assert report["rows"] == rows.count()
        assert report["weight_sum"] == pytest.approx(rows.agg(F.sum("w")).first()[0])
        assert report["parameters"]["features"] == ["x", "y"]
        assert "where g = 'a'" in report["input"]
    finally:
        spark.catalog.dropTempView("spark_em_job_input")
