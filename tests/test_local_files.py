"""A model's files on the driver's local file system are written and read by this process
(no Spark job), in the format Spark's writers and Hadoop's checksummed local file system
give; other file systems go through Spark.  Both ways are checked against each other and
against Spark's own readers (the independent truth here: Hadoop verifies the ``.crc``
siblings, Spark parses the Parquet and the metadata text)."""

from __future__ import annotations

import datetime
import json
import os

import numpy as np
import pytest
from pyspark.ml.util import DefaultParamsReader

from spark_em import GaussianMixture, GaussianMixtureModel
from spark_em.io import directory_files


def _through_spark(monkeypatch) -> None:
    """As for a path of any other file system: Spark's readers and writers."""
    monkeypatch.setattr(directory_files, "local_path", lambda spark, path: None)


@pytest.fixture(scope="module")
def segmented(spark):
    rng = np.random.default_rng(5)
    rows = []
    for day in (1, 2, 3):
        X = np.concatenate([rng.normal(0, 1, (40, 3)), rng.normal(5, 1, (40, 3))])
        rows += [(datetime.date(2026, 1, day), x.tolist()) for x in X]
    df = spark.createDataFrame(rows, "day date, features array<double>")
    est = GaussianMixture(k=2, covarianceType="full", maxIter=4, seed=1, segmentCol="day")
    return est.fit(df)


def _same(a: GaussianMixtureModel, b: GaussianMixtureModel) -> None:
    for attr in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
    assert a.segments == b.segments and a.uid == b.uid
    assert a.summary.logLikelihoodHistory == b.summary.logLikelihoodHistory


def test_local_save_is_what_spark_writes_and_reads(spark, segmented, tmp_path, monkeypatch):
    local, remote = tmp_path / "local", tmp_path / "spark"
    segmented.write().save(str(local))
    with monkeypatch.context() as m:
        _through_spark(m)
        segmented.write().save(str(remote))
        # the directory written here loads through Spark's readers (Hadoop checks the .crc
        # files written beside each file), the one Spark wrote loads here
        _same(GaussianMixtureModel.load(str(local)), segmented)
    _same(GaussianMixtureModel.load(str(remote)), segmented)
    _same(GaussianMixtureModel.load(str(local)), segmented)
    # Spark's own readers see the same rows and the same metadata in both directories
    for part in ("data", "segments"):
        a = spark.read.parquet(str(local / part))
        b = spark.read.parquet(str(remote / part))
        assert [f.name for f in a.schema] == [f.name for f in b.schema]
        assert [f.dataType for f in a.schema] == [f.dataType for f in b.schema]
        assert sorted(map(tuple, a.collect())) == sorted(map(tuple, b.collect()))
    meta = [DefaultParamsReader.loadMetadata(str(p), spark) for p in (local, remote)]
    for m in meta:
        m.pop("timestamp")
    assert meta[0] == meta[1]
    # pyspark's generic loader reads the local directory too
    assert DefaultParamsReader.loadParamsInstance(str(local), spark).uid == segmented.uid


def test_a_file_edited_under_its_checksum_is_refused_both_ways(
    spark, segmented, tmp_path, monkeypatch
):
    path = tmp_path / "m"
    segmented.write().save(str(path))
    (meta,) = [f for f in (path / "metadata").iterdir() if f.name.startswith("part-")]
    text = json.loads(meta.read_text())
    text["paramMap"]["maxIter"] = 5  # same length: only the checksum tells
    meta.write_text(json.dumps(text) + "\n")
    assert os.path.exists(path / "metadata" / f".{meta.name}.crc")
    with pytest.raises(Exception, match="(?i)checksum"):
        GaussianMixtureModel.load(str(path))
    with monkeypatch.context() as m:
        _through_spark(m)
        with pytest.raises(Exception, match="(?i)checksum"):
            GaussianMixtureModel.load(str(path))
    # without its .crc sibling the edit is read (Hadoop's rule), and it is the edit
    (path / "metadata" / f".{meta.name}.crc").unlink()
    assert GaussianMixtureModel.load(str(path)).getMaxIter() == 5


def test_estimator_and_its_initial_model_round_trip_both_ways(
    spark, segmented, tmp_path, monkeypatch
):
    est = GaussianMixture(k=2, tol=1e-4, initialModel=segmented)
    est.write().save(str(tmp_path / "local"))
    with monkeypatch.context() as m:
        _through_spark(m)
        est.write().save(str(tmp_path / "spark"))
    for where in ("local", "spark"):
        back = GaussianMixture.load(str(tmp_path / where))
        assert back.getTol() == 1e-4 and back.uid == est.uid
        _same(back.getInitialModel(), segmented)


def test_modes_are_hadoops_not_the_process_umask_and_links_are_followed(spark, segmented, tmp_path):
    """Under a strict process umask, a save gives what Spark's writers give (Hadoop's
    ``fs.permissions.umask-mode``, 022 here): directories 0755, files 0644.  A symbolic
    link to a model's folder is followed, as Hadoop follows it."""
    old = os.umask(0o077)
    try:
        segmented.write().save(str(tmp_path / "m"))
    finally:
        os.umask(old)
    for folder, dirs, files in os.walk(tmp_path / "m"):
        assert os.stat(folder).st_mode & 0o777 == 0o755, folder
        for f in files:
            assert os.stat(os.path.join(folder, f)).st_mode & 0o777 == 0o644, f
    linked = tmp_path / "linked"
    linked.mkdir()
    for part in ("metadata", "data", "segments"):
        os.symlink(tmp_path / "m" / part, linked / part)
    _same(GaussianMixtureModel.load(str(linked)), segmented)
