"""Model directories under awkward paths and with oversized files.

* A path with a space, ``%``, ``#``, ``?``, brackets, braces or non-ASCII letters saves and
  loads (Spark's readers expand globs and its ``inputFiles`` percent-encodes), and the
  jobs write and read models there: ``spark-em fit`` writes one ``spark-em score`` reads.
* A file far larger than a model's can be (a 1.9 GB sparse file: Spark itself refuses
  files over 2 GiB) is refused from the listing's size, before a byte is read, and the
  session still works afterwards (reading it used to take the driver JVM down).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from spark_em import GaussianMixtureModel, ModelFormatError
from spark_em.cli.main import run
from spark_em.io.directory_files import literal

WEIGHTS = [0.25, 0.75]
MEANS = [[0.0, 1.0], [4.0, -2.0]]
COVS = [[[1.0, 0.2], [0.2, 0.5]], [[2.0, -0.3], [-0.3, 1.0]]]
NAMES = ["a b", "a%20b", "p%x", "h#x", "q?x", "br[1]", "c{d,e}", "star*", "ü é ∑"]
HUGE = 1_900_000_000


@pytest.fixture(scope="module")
def model():
    return GaussianMixtureModel.fromParameters(WEIGHTS, MEANS, COVS, "full")


@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_under_awkward_paths(spark, model, tmp_path, name):
    path = tmp_path / name / "model"
    model.write().save(str(path))
    for given in (str(path), "file://" + str(path)):
        loaded = GaussianMixtureModel.load(given)
        np.testing.assert_array_equal(loaded.covariances, COVS)
        np.testing.assert_array_equal(loaded.weights, WEIGHTS)
    # a sibling whose name the glob would match is not read instead of it
    assert sorted(os.listdir(tmp_path / name)) == ["model"]


def test_fit_job_writes_a_model_the_score_job_reads_under_awkward_paths(spark, tmp_path):
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(0, 1, (60, 2)), rng.normal(6, 1, (60, 2))])
    data = tmp_path / "input"  # the jobs expand globs in --input, by design
    root = tmp_path / "lake #1 [x] ü%20"
    rows = [([float(a), float(b)],) for a, b in X]
    spark.createDataFrame(rows, "features array<double>").coalesce(1).write.parquet(str(data))
    out = root / "model {v1}"
    argv = ["--input", str(data), "--features", "features", "--k", "2", "--seed", "1", "--quiet"]
    assert run("fit", argv + ["--model-out", str(out)]) == 0
    fitted = GaussianMixtureModel.load(str(out))
    assert sorted(np.round(fitted.means[:, 0])) == [0.0, 6.0]
    scored = root / "scores ?"
    assert run("score", ["--model", str(out), "--input", str(data), "--output", str(scored)]) == 0
    # (Spark's reader expands globs: the test names its output literally)
    assert spark.read.parquet(literal(str(scored))).count() == 120


def only(path: Path, pattern: str) -> Path:
    (f,) = [f for f in path.glob(pattern) if not f.name.startswith((".", "_"))]
    return f


def huge(f: Path) -> None:
    """``f`` replaced by a sparse file of HUGE bytes (no disk used), its checksum dropped."""
    with open(f, "wb") as fh:
        fh.truncate(HUGE)
    (f.parent / f".{f.name}.crc").unlink(missing_ok=True)


PLACES = {
    "metadata replaced": (lambda p: huge(only(p, "metadata/part-*")), "a model's metadata"),
    "data file replaced": (
        lambda p: huge(only(p, "data/*.parquet")),
        "the data of k=2, d=2, covarianceType='full'",
    ),
    "second data file": (
        lambda p: huge(p / "data" / "part-00001-extra.snappy.parquet"),
        "the data of k=2, d=2, covarianceType='full'",
    ),
}


@pytest.mark.parametrize("place", sorted(PLACES))
def test_a_huge_file_is_refused_from_its_size_and_the_session_survives(
    spark, model, tmp_path, place
):
    tamper, bound_of = PLACES[place]
    path = tmp_path / "model"
    model.write().save(str(path))
    tamper(path)
    with pytest.raises(ModelFormatError, match="more than") as info:
        GaussianMixtureModel.load(str(path))
    message = str(info.value)
    assert int(re.search(r"\((\d+) bytes\), more than", message).group(1)) >= HUGE
    assert bound_of in message and "nothing was read" in message
    assert spark.range(3).count() == 3  # the session is intact
    # the same model without the huge file loads in the same session
    shutil.rmtree(path)
    model.write().save(str(path))
    np.testing.assert_array_equal(GaussianMixtureModel.load(str(path)).means, MEANS)


def test_a_large_legitimate_model_is_within_its_bound(spark, tmp_path):
    rng = np.random.default_rng(0)
    k, d = 4, 60
    A = rng.normal(size=(k, d, d))
    covs = A @ A.transpose(0, 2, 1) / d + np.eye(d)
    m = GaussianMixtureModel.fromParameters(np.full(k, 1 / k), rng.normal(size=(k, d)), covs)
    m.write().save(str(tmp_path / "m"))
    np.testing.assert_allclose(GaussianMixtureModel.load(str(tmp_path / "m")).covariances, covs)


def test_segment_files_are_bounded_too_and_their_model_loads_under_an_awkward_path(spark, tmp_path):
    from spark_em import GaussianMixture

    rng = np.random.default_rng(1)
    rows = [
        (f"day {i % 3}", [float(v) for v in rng.normal(size=2) + 5 * (i % 2)]) for i in range(90)
    ]
    df = spark.createDataFrame(rows, "day string, features array<double>")
    model = GaussianMixture(k=2, seed=1, maxIter=5, segmentCol="day").fit(df)
    path = tmp_path / "seg #[1] ü" / "model"
    model.write().save(str(path))
    assert GaussianMixtureModel.load(str(path)).segments == model.segments
    huge(only(path, "segments/*.parquet"))
    with pytest.raises(ModelFormatError, match="the statistics of 3 segments of k=2, d=2"):
        GaussianMixtureModel.load(str(path))
    assert spark.range(3).count() == 3
