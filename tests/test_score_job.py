"""``spark-em score`` in-process on the shared session: columns and their types, the write
modes on a partitioned Parquet data set and on a catalog table, and its errors.  Scores
are checked against scikit-learn with the model's parameters."""

from __future__ import annotations

import os

import numpy as np
import pytest
from pyspark.sql import functions as F

from spark_em import GaussianMixture, GaussianMixtureModel
from spark_em.cli.main import run
from spark_em.data.datasets import sample_mixture


@pytest.fixture(scope="module")
def days(spark, tmp_path_factory):
    """300 rows for each of two days (``id``, ``day``, ``features``), and a saved k=3 model."""
    root = tmp_path_factory.mktemp("score")
    X, _, _ = sample_mixture(600, k=3, d=2, seed=5, separation=5.0)
    rows = [
        (i, "2026-11-27" if i < 300 else "2026-11-28", [float(v) for v in X[i]]) for i in range(600)
    ]
    df = spark.createDataFrame(rows, "id long, day string, features array<double>")
    paths = {}
    for day in ("2026-11-27", "2026-11-28"):
        paths[day] = str(root / f"in-{day}")
        df.where(F.col("day") == day).coalesce(1).write.parquet(paths[day])
    model = GaussianMixture(k=3, seed=1, tol=1e-6).fit(df)
    model.write().save(str(root / "model"))
    return {"X": X, "paths": paths, "model": str(root / "model"), "sk": model.toSklearn()}


def files_of(path):
    return {
        os.path.relpath(os.path.join(d, f), path): os.stat(os.path.join(d, f)).st_mtime_ns
        for d, _, fs in os.walk(path)
        for f in fs
    }


def test_score_partitions_day_by_day(spark, days, tmp_path, capsys):
    out = str(tmp_path / "clusters")
    base = [
        "--model",
        days["model"],
        "--output",
        out,
        "--partition-by",
        "day",
        "--log-likelihood-col",
        "loglik",
    ]
    assert run("score", base + ["--input", days["paths"]["2026-11-27"]]) == 0
    day27 = files_of(os.path.join(out, "day=2026-11-27"))

    # a new day: overwrite-partitions adds it and leaves the other day's files alone
    assert (
        run(
            "score",
            base + ["--input", days["paths"]["2026-11-28"], "--mode", "overwrite-partitions"],
        )
        == 0
    )
    # the same day again: replaced, not doubled
    assert (
        run(
            "score",
            base + ["--input", days["paths"]["2026-11-28"], "--mode", "overwrite-partitions"],
        )
        == 0
    )
    assert files_of(os.path.join(out, "day=2026-11-27")) == day27
    scored = spark.read.parquet(out).withColumn("day", F.col("day").cast("string"))
    counts = {r["day"]: r["count"] for r in scored.groupBy("day").count().collect()}
    assert counts == {"2026-11-27": 300, "2026-11-28": 300}

    types = dict(scored.dtypes)
    assert types["prediction"] == "int" and types["probability"] == "array<double>"
    assert types["loglik"] == "double"
    rows = sorted(scored.collect(), key=lambda r: r["id"])
    X, sk = days["X"], days["sk"]
    np.testing.assert_allclose([r["probability"] for r in rows], sk.predict_proba(X), atol=1e-9)
    np.testing.assert_allclose([r["loglik"] for r in rows], sk.score_samples(X), rtol=1e-9)
    assert [r["prediction"] for r in rows] == sk.predict(X).tolist()

    # append adds the rows again; the default mode refuses an existing output
    assert run("score", base + ["--input", days["paths"]["2026-11-28"], "--mode", "append"]) == 0
    again = spark.read.parquet(out).withColumn("day", F.col("day").cast("string"))
    assert again.where(F.col("day") == "2026-11-28").count() == 600
    capsys.readouterr()
    assert run("score", base + ["--input", days["paths"]["2026-11-28"]]) == 2
    assert "already exists; choose --mode overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("fmt,expected", [("vector", "vector"), ("none", None)])
def test_probability_formats(spark, days, tmp_path, fmt, expected):
    out = str(tmp_path / "p")
    assert (
        run(
            "score",
            [
                "--model",
                days["model"],
                "--input",
                days["paths"]["2026-11-27"],
                "--output",
                out,
                "--probability-format",
                fmt,
            ],
        )
        == 0
    )
    types = dict(spark.read.parquet(out).dtypes)
    assert types.get("probability") == expected and types["prediction"] == "int"


def test_score_into_a_partitioned_table(spark, days, tmp_path):
    """overwrite-partitions on a catalog table replaces only the day being scored."""
    table = "spark_em_scored_test"
    location = (tmp_path / "table").as_uri()
    spark.sql(f"DROP TABLE IF EXISTS {table}")
    spark.sql(
        f"CREATE TABLE {table} (id long, features array<double>, prediction int, "
        f"probability array<double>, day string) USING parquet PARTITIONED BY (day) "
        f"LOCATION '{location}'"
    )
    try:
        base = ["--model", days["model"], "--output-table", table, "--partition-by", "day"]
        for day in ("2026-11-27", "2026-11-28", "2026-11-28"):
            assert (
                run(
                    "score",
                    base + ["--input", days["paths"][day], "--mode", "overwrite-partitions"],
                )
                == 0
            )
        counts = {r["day"]: r["count"] for r in spark.table(table).groupBy("day").count().collect()}
        assert counts == {"2026-11-27": 300, "2026-11-28": 300}
        # the rows went into the right columns (insertInto matches by position)
        row = spark.table(table).where("id = 0").first()
        assert row["day"] == "2026-11-27" and len(row["probability"]) == 3
    finally:
        spark.sql(f"DROP TABLE IF EXISTS {table}")


def test_score_errors(spark, days, tmp_path, capsys):
    day = days["paths"]["2026-11-27"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("keep")
    cases = [
        (
            ["--model", str(tmp_path / "none"), "--input", day, "--output", str(tmp_path / "o")],
            1,
            "--model",
        ),
        (
            [
                "--model",
                days["model"],
                "--input",
                day,
                "--output",
                str(other),
                "--mode",
                "overwrite",
            ],
            2,
            "does not hold a Parquet data set",
        ),
        (
            [
                "--model",
                days["model"],
                "--input",
                day,
                "--output",
                str(tmp_path / "o"),
                "--partition-by",
                "month",
            ],
            1,
            "--partition-by column 'month' does not exist",
        ),
        (
            [
                "--model",
                days["model"],
                "--input",
                day,
                "--output",
                str(tmp_path / "o"),
                "--features",
                "id",
            ],
            1,
            "featuresCol 'id' has vectors of a length other than 2 in 300 rows",
        ),
    ]
    for argv, code, message in cases:
        rc = run("score", argv)
        err = capsys.readouterr().err.strip()
        assert rc == code, err
        assert len(err.splitlines()) == 1 and message in err, err
    assert sorted(os.listdir(other)) == ["thesis.tex"]
    assert not (tmp_path / "o").exists()
    assert sorted(os.listdir(tmp_path)) == ["other"]  # no temporaries either
    model = GaussianMixtureModel.load(days["model"])
    assert model.getK() == 3
