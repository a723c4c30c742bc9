"""The nightly jobs on a Hive-style Parquet lake (``features/day=YYYY-MM-DD/``, an ``id``
and numeric feature columns, day 2 with NaN and null features in rows of both its files),
following the README's nightly recipe: invalid rows refused in one line (columns, counts
over all rows, an example, the fix) or skipped (null outputs, counts per partition),
leaf paths that keep their partition column, components aligned to yesterday's, anomaly
flags, a checkpoint of another fit, one schema per output data set.

In-process on the shared session; the truths are the arrays the lake was written from and
scikit-learn given the fitted parameters.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spark_em import GaussianMixture, GaussianMixtureModel
from spark_em.cli.main import run
from spark_em.data.datasets import sample_mixture

from .conftest import to_df

D1, D2 = "2026-12-01", "2026-12-02"
F = "f1,f2,f3,f4"
NAN_F3 = [1203, 1250, 1333, 1790, 1801, 2222, 2398]  # ids (day 2 is ids 1200..2399)
NULL_F4 = [1201, 1444, 1805, 2000, 2301]


def _write_day(root: Path, day: str, ids: np.ndarray, X: np.ndarray) -> None:
    """Two files per day (so the bad rows are in different tasks)."""
    folder = root / "features" / f"day={day}"
    folder.mkdir(parents=True)
    for part, rows in enumerate(np.array_split(np.arange(len(ids)), 2)):
        cols = {"id": pa.array(ids[rows], pa.int64())}
        for j in range(X.shape[1]):
            v = X[rows, j]
            nulls = np.isin(ids[rows], NULL_F4) if j == 3 else None
            cols[f"f{j + 1}"] = pa.array(v, pa.float64(), mask=nulls)
        pq.write_table(pa.table(cols), str(folder / f"part-{part:05d}.parquet"))


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake")
    X, _, _ = sample_mixture(2400, k=3, d=4, seed=31, separation=6.0)
    ids = np.arange(2400)
    X2 = X[1200:].copy()
    X2[np.isin(ids[1200:], NAN_F3), 2] = np.nan
    _write_day(root, D1, ids[:1200], X[:1200])
    _write_day(root, D2, ids[1200:], X2)
    clean2 = ~np.isin(ids[1200:], NAN_F3 + NULL_F4)
    return {
        "root": root,
        "features": str(root / "features"),
        "day": {D1: str(root / "features" / f"day={D1}"), D2: str(root / "features" / f"day={D2}")},
        "X1": X[:1200],
        "X2": X[1200:],
        "clean2": clean2,
    }


@pytest.fixture(scope="module")
def day1_model(spark, lake, tmp_path_factory):
    """The fit of day 1 (a leaf path: its partition column is kept)."""
    out = tmp_path_factory.mktemp("models") / "day1"
    argv = ["--input", lake["day"][D1], "--features", F, "--k", "3", "--seed", "1"]
    assert run("fit", argv + ["--tol", "1e-6", "--quiet", "--model-out", str(out)]) == 0
    return str(out)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_fit_refuses_invalid_rows_naming_columns_counts_example_and_fix(
    spark, lake, tmp_path, capsys
):
    """Day 2: 7 rows with NaN in f3 and 5 with null in f4, in both files."""
    report = tmp_path / "r.json"
    argv = ["--input", lake["day"][D2], "--features", F, "--k", "3", "--quiet"]
    rc = run("fit", argv + ["--model-out", str(tmp_path / "m"), "--report-out", str(report)])
    line = one_line(capsys.readouterr().err)
    assert rc == 1
    assert line == (
        "spark-em fit: error: 12 rows of 1,200 cannot be fitted: f3 holds NaN or infinity "
        "in 7 rows; f4 holds null in 5 rows; first: id=1201; "
        "pass --handle-invalid skip to leave them out, "
        "or --missing-values marginalize to keep their observed values"
    )
    assert not (tmp_path / "m").exists()
    doc = json.loads(report.read_text())
    assert doc["status"] == "failed" and doc["exit_code"] == 1 and doc["error"] in line
    assert doc["invalid_rows"]["by_kind"] == {"null_element": 5, "non_finite": 7}
    assert doc["invalid_rows"]["by_column"] == {"null_element": {"f4": 5}, "non_finite": {"f3": 7}}
    assert doc["outputs"] == {"report-out": str(report)}  # nothing else was written

    # --handle-invalid skip: fitted without them, and the skipped rows by kind and column
    rc = run(
        "fit",
        argv
        + ["--handle-invalid", "skip", "--model-out", str(tmp_path / "m")]
        + ["--report-out", str(report), "--overwrite"],
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    assert (
        "WARNING: skipped 12 rows of 1,200: f3 holds NaN or infinity in 7 rows; f4 holds null"
        in err
    )
    doc = json.loads(report.read_text())
    assert doc["status"] == "succeeded" and doc["rows"] == 1188
    assert doc["skipped_rows"]["by_column"] == {"null_element": {"f4": 5}, "non_finite": {"f3": 7}}
    assert GaussianMixtureModel.load(str(tmp_path / "m")).summary.numRowsSkipped == {
        "null_element": 5,
        "non_finite": 7,
    }


def test_without_an_id_the_example_is_the_file_and_row(spark, tmp_path, capsys):
    X, _, _ = sample_mixture(300, k=2, d=2, seed=3)
    X[[41, 170, 250], 1] = np.inf
    folder = tmp_path / "data"
    folder.mkdir()
    for part, rows in enumerate(np.array_split(np.arange(300), 2)):
        arr = pa.FixedSizeListArray.from_arrays(pa.array(X[rows].ravel()), 2)
        pq.write_table(pa.table({"v": arr}), str(folder / f"part-{part}.parquet"))
    argv = ["--input", str(folder), "--features", "v", "--k", "2", "--quiet"]
    assert run("fit", argv + ["--model-out", str(tmp_path / "m")]) == 1
    line = one_line(capsys.readouterr().err)
    assert "3 rows of 300 cannot be fitted: v[1] holds NaN or infinity in 3 rows" in line
    # rows 0..149 are part-0, 150..299 part-1: the first bad row is row 41 of part-0
    assert "first: row 41 of file:" in line and f"{folder}/part-0.parquet;" in line


def test_score_a_hive_leaf_path_with_skip_counts_and_anomaly_flags(
    spark, lake, day1_model, tmp_path, capsys
):
    """The README's nightly score on a leaf path: ``day`` is kept for --partition-by, the
    invalid rows get null outputs, the rows scored and skipped are printed and reported
    per partition, and is_anomaly flags rows below the model's training quantile."""
    from pyspark.sql import functions as F_

    out, report = tmp_path / "clusters", tmp_path / "score.json"
    base = ["--model", day1_model, "--output", str(out), "--partition-by", "day"]
    base += ["--mode", "overwrite-partitions", "--handle-invalid", "skip"]
    base += ["--log-likelihood-col", "loglik", "--anomaly-quantile", "0.01"]
    rc = run("score", base + ["--input", lake["day"][D2], "--report-out", str(report)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "rows: 1,188 scored, 12 skipped (null outputs)" in cap.out
    assert f"day={D2}: 1,188 scored, 12 skipped" in cap.out
    doc = json.loads(report.read_text())
    assert doc["rows"] == {
        "scored": 1188,
        "skipped": 12,
        "partitions": [{"day": D2, "scored": 1188, "skipped": 12}],
    }
    model = GaussianMixtureModel.load(day1_model)
    threshold = model.logLikelihoodThreshold(0.01)
    assert doc["anomaly"]["threshold"] == pytest.approx(threshold)

    rows = sorted(
        spark.read.parquet(str(out)).withColumn("day", F_.col("day").cast("string")).collect(),
        key=lambda r: r["id"],
    )
    assert {r["day"] for r in rows} == {D2} and len(rows) == 1200
    sk, X2, clean = model.toSklearn(), lake["X2"], lake["clean2"]
    for r, good in zip(rows, clean):
        if not good:
            assert r["prediction"] is None and r["probability"] is None
            assert r["loglik"] is None and r["is_anomaly"] is None
    good_rows = [r for r, g in zip(rows, clean) if g]
    np.testing.assert_allclose(
        [r["probability"] for r in good_rows], sk.predict_proba(X2[clean]), atol=1e-9
    )
    scores = sk.score_samples(X2[clean])
    assert [r["is_anomaly"] for r in good_rows] == (scores < threshold).tolist()

    # every day by a glob (the root given explicitly): each partition replaced, counted apart
    rc = run(
        "score", base + ["--input", f"{lake['features']}/day=*", "--base-path", lake["features"]]
    )
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert f"day={D1}: 1,200 scored, 0 skipped" in cap.out
    assert f"day={D2}: 1,188 scored, 12 skipped" in cap.out
    assert spark.read.parquet(str(out)).count() == 2400

    # one schema per data set: probabilities as vectors into array<double> partitions
    before = sorted(p.name for p in out.rglob("*.parquet"))
    for mode in ("overwrite-partitions", "append"):
        argv = ["--model", day1_model, "--output", str(out), "--partition-by", "day"]
        argv += ["--mode", mode, "--handle-invalid", "skip", "--probability-format", "vector"]
        argv += ["--log-likelihood-col", "loglik", "--anomaly-quantile", "0.01"]
        rc = run("score", argv + ["--input", lake["day"][D1]])
        line = one_line(capsys.readouterr().err)
        assert rc == 2
        assert (
            f"--output {out} holds column 'probability' as array<double>; the scored rows "
            "have it as vector" in line
        )
        assert sorted(p.name for p in out.rglob("*.parquet")) == before  # nothing written


def test_score_refuses_invalid_rows_in_one_line_and_leaves_nothing(
    spark, lake, day1_model, tmp_path, capsys
):
    for mode in ("error", "append"):
        out = tmp_path / f"out-{mode}"
        argv = ["--model", day1_model, "--input", lake["day"][D2], "--output", str(out)]
        rc = run("score", argv + ["--mode", mode])
        line = one_line(capsys.readouterr().err)
        assert rc == 1
        # the counts of all rows (two files, two tasks), not of one batch
        assert line == (
            "spark-em score: error: 12 rows of 1,200 cannot be scored: f3 holds NaN or "
            "infinity in 7 rows; f4 holds null in 5 rows; first: id=1201; "
            "pass --handle-invalid skip to leave them out, "
            "or --missing-values marginalize to keep their observed values"
        )
        assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == []  # no temporaries either


def test_select_and_fit_align_components_to_yesterdays_model(
    spark, lake, day1_model, tmp_path, capsys
):
    """select on the dirty day with skip: the table in mean log-likelihood per row, the
    skipped rows reported, the best model's components in day 1's order; fit with another
    seed, aligned the same way."""
    yesterday = GaussianMixtureModel.load(day1_model)

    def nearest(model):
        return [int(np.argmin(np.linalg.norm(yesterday.means - m, axis=1))) for m in model.means]

    report = tmp_path / "select.json"
    argv = ["--input", lake["day"][D2], "--features", F, "--k", "2..4", "--seed", "5"]
    argv += ["--handle-invalid", "skip", "--align-to", day1_model, "--quiet"]
    rc = run("select", argv + ["--model-out", str(tmp_path / "s"), "--report-out", str(report)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    best = GaussianMixtureModel.load(str(tmp_path / "s"))
    assert best.getK() == 3 and nearest(best) == [0, 1, 2]
    doc = json.loads(report.read_text())
    assert doc["skipped_rows"]["by_column"] == {"null_element": {"f4": 5}, "non_finite": {"f3": 7}}
    assert sorted(doc["aligned_to"]["order"]) == [0, 1, 2]
    row = next(r for r in doc["candidates"] if r["k"] == 3)
    mean = best.toSklearn().score(lake["X2"][lake["clean2"]])
    assert row["meanLogLikelihood"] == pytest.approx(mean, rel=1e-9)
    assert f"{mean:.6f}" in next(line for line in cap.out.splitlines() if "<- best" in line)
    assert set(doc["outputs"]) == {"model-out", "report-out"}

    for seed in range(2, 8):  # a seed whose components come out in another order
        argv = ["--input", lake["day"][D1], "--features", F, "--k", "3", "--seed", str(seed)]
        out = tmp_path / f"fit{seed}"
        assert run("fit", argv + ["--quiet", "--model-out", str(out)]) == 0
        if nearest(GaussianMixtureModel.load(str(out))) != [0, 1, 2]:
            break
    else:
        pytest.fail("no seed permuted the components")
    aligned = tmp_path / "aligned"
    argv += ["--quiet", "--align-to", day1_model, "--model-out", str(aligned)]
    assert run("fit", argv) == 0
    assert nearest(GaussianMixtureModel.load(str(aligned))) == [0, 1, 2]
    capsys.readouterr()


def test_a_checkpoint_of_another_fit_is_refused_in_words(spark, lake, tmp_path, capsys):
    """An interrupted fit's checkpoint; the night's job over other rows is refused, naming
    what differs and the flag; --discard-checkpoint starts afresh, and the finished fit
    removes its checkpoint."""
    ckpt = tmp_path / "ckpt"

    class Stop(KeyboardInterrupt):
        pass

    def stop_at_2(event):
        if getattr(event, "iteration", 0) == 2:
            raise Stop()

    cols = ["f1", "f2", "f3", "f4"]
    day1 = spark.read.parquet(lake["day"][D1])
    gm = GaussianMixture(k=3, featuresCol=cols, tol=0.0, maxIter=5).setCheckpointDir(str(ckpt))
    gm.progress = stop_at_2
    with pytest.raises(Stop):
        gm.fit(day1)
    argv = ["--input", lake["day"][D2], "--features", F, "--k", "3", "--handle-invalid", "skip"]
    argv += ["--tol", "0", "--max-iter", "5", "--quiet", "--model-out", str(tmp_path / "m")]
    argv += ["--checkpoint-dir", str(ckpt)]
    assert run("fit", argv) == 2
    line = one_line(capsys.readouterr().err)
    assert f"--checkpoint-dir {ckpt} holds another fit's state (other settings" in line
    assert line.endswith("pass --discard-checkpoint to start afresh")
    assert run("fit", argv + ["--discard-checkpoint"]) == 0
    assert not ckpt.exists()
    capsys.readouterr()


def test_require_convergence_refuses_a_random_start_still_on_its_plateau(spark, tmp_path, capsys):
    """--init-mode random stops after 2 iterations with a change below the default tol
    (sklearn's rule would call it converged, far below the optimum): not converged, and
    --require-convergence refuses it."""
    from .test_components import _issue_mixture

    X = _issue_mixture(20_000, 5)  # the rows of test_components: a plateau at seed 1
    path = tmp_path / "x.parquet"
    arr = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), X.shape[1])
    pq.write_table(pa.table({"features": arr}), str(path))
    report = tmp_path / "r.json"
    argv = ["--input", str(path), "--k", "5", "--init-mode", "random", "--seed", "1"]
    argv += ["--max-iter", "2", "--require-convergence", "--quiet"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = run("fit", argv + ["--model-out", str(tmp_path / "m"), "--report-out", str(report)])
    assert rc == 3, capsys.readouterr().err
    doc = json.loads(report.read_text())
    history = doc["log_likelihood_history"]
    assert abs(history[1] - history[0]) < 1e-3 and doc["converged"] is False
    assert doc["outputs"] == {"report-out": str(report)}  # only what was written
    assert doc["status"].startswith("refused") and not (tmp_path / "m").exists()


def test_mixed_ids_and_null_vectors_are_named(spark, tmp_path, capsys):
    """String ids name the example; a score in error mode gives rows with null features
    null outputs (not an error), so only the NaN rows are refused."""
    df = spark.createDataFrame(
        [("b-7", [1.0, 2.0]), ("a-9", [float("nan"), 1.0]), ("c-1", None), ("a-2", [3.0, 1.0])]
        + [(f"z{i}", [float(i % 5), float(i % 3)]) for i in range(40)],
        "user_id string, features array<double>",
    )
    path = tmp_path / "x.parquet"
    df.write.parquet(str(path))
    X, _, _ = sample_mixture(200, k=2, d=2, seed=2)
    model = GaussianMixture(k=2, seed=1, handleInvalid="skip").fit(to_df(spark, X))
    model.write().save(str(tmp_path / "m"))
    argv = ["--model", str(tmp_path / "m"), "--input", str(path), "--output", str(tmp_path / "o")]
    assert run("score", argv) == 1
    line = one_line(capsys.readouterr().err)
    assert "1 row of 44 cannot be scored: features[0] holds NaN or infinity in 1 row" in line
    assert "first: user_id='a-9'" in line


def _spark_em(*args, cwd):
    """The console script in a fresh process with its own embedded Spark (this checkout's
    code: PYTHONPATH is kept)."""
    import subprocess
    import sys

    from .servers import FAST_JVM, SPARK_HOME

    env = dict(os.environ)
    env.pop("PYSPARK_PYTHON", None)
    env.pop("PYSPARK_DRIVER_PYTHON", None)
    env.update(SPARK_HOME=str(SPARK_HOME), JAVA_TOOL_OPTIONS=FAST_JVM, SPARK_LOCAL_IP="127.0.0.1")
    script = str(Path(sys.executable).with_name("spark-em"))
    return subprocess.run(
        [script, *args, "--master", "local[2]"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _spark_noise(stderr: str) -> list[str]:
    """Lines of stderr that are neither the job's own error line nor the JVM's start-up
    notes (``WARNING: Using incubator modules``, Spark's WARN about native Hadoop)."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip()
        and not line.startswith("spark-em ")
        and "Using incubator modules" not in line
        and "Picked up JAVA_TOOL_OPTIONS" not in line
        and not line.endswith("using builtin-java classes where applicable")
    ]


def test_spark_failures_are_one_line_without_java_traces(lake, day1_model, tmp_path):
    """Spark's own warnings and task failures stay off the terminal at the default log
    level: a globbed Hive input whose rows are refused by the scoring tasks, and a file
    that is not Parquet inside an input directory (Spark's schema inference fails)."""
    res = _spark_em(
        "score",
        "--model",
        day1_model,
        "--input",
        "features/day=*",
        "--output",
        str(tmp_path / "scored"),
        cwd=lake["root"],
    )
    assert res.returncode == 1, res.stderr
    assert not _spark_noise(res.stderr), res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        "spark-em score: error: 12 rows of 2,400 cannot be scored: f3 holds NaN or infinity "
        "in 7 rows; f4 holds null in 5 rows; first: id=1201; "
        "pass --handle-invalid skip to leave them out, "
        "or --missing-values marginalize to keep their observed values"
    )
    assert not (tmp_path / "scored").exists()

    folder = tmp_path / "exported"
    folder.mkdir()
    (folder / "part-0.csv").write_text("a,b\n1,2\n")
    res = _spark_em("fit", "--input", str(folder), "--model-out", str(tmp_path / "m"), cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert not _spark_noise(res.stderr), res.stderr
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("spark-em fit: error: cannot read file:") and "part-0.csv" in line
    assert "it is not a Parquet file" in line and not (tmp_path / "m").exists()
