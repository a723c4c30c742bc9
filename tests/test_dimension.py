"""One malformed row cannot pick the dimension (issue 20, point 3): d is the most frequent
length over the whole input (or the schema's size where Spark knows it), whatever the
partitioning and the store, and the rows of other lengths are ``wrong_length`` -- named
with their counts.  Truth: with k=1 the model is the weighted mean and covariance of the
good rows (closed form, + regCovar), written here."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.linalg import Vectors

from spark_em import GaussianMixture
from spark_em.errors import InvalidRowsError

REG = 1e-6


def rows():
    rng = np.random.default_rng(3)
    good = rng.normal(size=(39, 2)) * [1.0, 3.0] + [2.0, -1.0]
    return [rng.normal(size=5).tolist()] + good.tolist(), good


def frame(spark, kind, partitions):
    data, good = rows()
    if kind == "vector":
        df = spark.createDataFrame([(Vectors.dense(x),) for x in data], ["features"])
    else:
        df = spark.createDataFrame([(x,) for x in data], "features array<double>")
    # one partition keeps the malformed row first; four spread the rows
    return (df.coalesce(1) if partitions == 1 else df.repartition(4)), good


def closed_form(good):
    mean = good.mean(axis=0)
    return mean, np.cov(good.T, bias=True) + REG * np.eye(2)


@pytest.mark.parametrize("kind", ["array", "vector"])
@pytest.mark.parametrize("partitions", [1, 4])
def test_skip_takes_the_most_frequent_length(spark, kind, partitions, caplog):
    df, good = frame(spark, kind, partitions)
    assert len(df.head()["features"]) == 5 or partitions == 4
    gm = GaussianMixture(k=1, handleInvalid="skip", maxIter=3, regCovar=REG, initMode="random")
    with caplog.at_level("WARNING", logger="spark_em"):
        model = gm.fit(df)
    assert model.means.shape == (1, 2)
    assert {k: v for k, v in model.summary.numRowsSkipped.items() if v} == {"wrong_length": 1}
    mean, cov = closed_form(good)
    np.testing.assert_allclose(model.means[0], mean, rtol=1e-12)
    np.testing.assert_allclose(model.covariances[0], cov, rtol=1e-10)
    assert "rows by length: 2: 39, 5: 1" in caplog.text


@pytest.mark.parametrize("kind", ["array", "vector"])
def test_error_names_the_rows_of_each_length(spark, kind):
    df, _ = frame(spark, kind, 1)
    with pytest.raises(
        InvalidRowsError, match=r"other than d=2 \(rows by length: 2: 39, 5: 1\)"
    ) as e:
        GaussianMixture(k=1, maxIter=2, initMode="random").fit(df)
    assert e.value.d == 2 and e.value.bad_rows == {"wrong_length": 1}


def test_the_parquet_store_too(spark, tmp_path):
    """The Parquet listing's first guess (the first file's first row) is corrected too."""
    df, good = frame(spark, "array", 1)
    path = str(tmp_path / "rows.parquet")
    df.write.parquet(path)
    model = GaussianMixture(
        k=1, handleInvalid="skip", maxIter=3, regCovar=REG, blockCache="parquet", initMode="random"
    ).fit(spark.read.parquet(path))
    mean, cov = closed_form(good)
    np.testing.assert_allclose(model.means[0], mean, rtol=1e-12)
    np.testing.assert_allclose(model.covariances[0], cov, rtol=1e-10)


def test_the_schema_size_wins(spark):
    """A vector column whose ML attributes give its size (VectorAssembler's output does):
    that size is d, even when most rows have another length."""
    from pyspark.sql import functions as F

    df, _ = frame(spark, "vector", 4)
    df = df.withColumn(
        "features", F.col("features").alias("features", metadata={"ml_attr": {"num_attrs": 5}})
    )
    model = GaussianMixture(
        k=1, handleInvalid="skip", maxIter=2, regCovar=REG, initMode="random"
    ).fit(df)
    first = np.array(rows()[0][0])
    np.testing.assert_allclose(model.means[0], first, rtol=1e-12)
    np.testing.assert_allclose(model.covariances[0], REG * np.eye(5), rtol=1e-9)
    assert model.summary.numRowsSkipped["wrong_length"] == 39


def test_vector_assembler_output_has_its_size_in_the_schema(spark):
    from spark_em.data.dimension import schema_dimension

    df = spark.createDataFrame([(1.0, 2.0, 3.0)], "a double, b double, c double")
    out = VectorAssembler(inputCols=["a", "b", "c"], outputCol="features").transform(df)
    assert schema_dimension(out, "features") == 3
    assert schema_dimension(df, ["a", "b"]) == 2


def test_update_with_a_malformed_first_row(spark):
    """The update path (incremental EM by segment): a night whose first row is malformed
    updates the model as the night's good rows alone do -- d is the model's, not the
    first row's (before: 'initialModel has dimension 2 but featuresCol has dimension 5')."""
    rng = np.random.default_rng(8)
    nights = {n: rng.normal(size=(30, 2)) + [n, 0.0] for n in (1, 2, 3)}
    schema = "features array<double>, night long"

    def frame_of(which, first=None):
        rows = ([(first, 3)] if first else []) + [(x.tolist(), n) for n in which for x in nights[n]]
        return spark.createDataFrame(rows, schema).coalesce(1)

    model = GaussianMixture(
        k=2, maxIter=3, segmentCol="night", handleInvalid="skip", initMode="random", seed=2
    ).fit(frame_of((1, 2)))
    clean = model.update(frame_of((3,)), maxIter=3)
    malformed = frame_of((3,), first=rng.normal(size=5).tolist())
    assert len(malformed.head()["features"]) == 5
    got = model.update(malformed, maxIter=3)
    np.testing.assert_allclose(got.means, clean.means, rtol=1e-12)
    np.testing.assert_allclose(got.covariances, clean.covariances, rtol=1e-12)
    np.testing.assert_allclose(got.weights, clean.weights, rtol=1e-12)


def test_fit_job_names_the_lengths_and_skips_to_d2(spark, tmp_path, capsys):
    """The fit job (spark-em fit): its one-line refusal names the rows of each length; with
    --handle-invalid skip its model has d=2."""
    from spark_em import GaussianMixtureModel
    from spark_em.cli.main import run

    df, good = frame(spark, "array", 1)
    path = str(tmp_path / "rows.parquet")
    df.write.parquet(path)
    argv = ["--input", path, "--features", "features", "--k", "1", "--quiet"]
    assert run("fit", argv + ["--model-out", str(tmp_path / "refused")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "has vectors of a length other than 2 in 1 row (rows by length: 2: 39, 5: 1)" in err[0]
    out, report = str(tmp_path / "m"), tmp_path / "report.json"
    skip = ["--handle-invalid", "skip", "--model-out", out, "--report-out", str(report)]
    assert run("fit", argv + skip) == 0
    # the job's report and its warning name the lengths too
    record = json.loads(report.read_text())["skipped_rows"]
    assert record["by_kind"] == {"wrong_length": 1}
    assert record["rows_by_length"] == {"2": 39, "5": 1}
    model = GaussianMixtureModel.load(out)
    np.testing.assert_allclose(model.means[0], good.mean(axis=0), rtol=1e-12)
