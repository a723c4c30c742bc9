"""Model save/load goes through Spark's writers and Hadoop's FileSystem (classic session):
plain local paths and file:// URIs work alike, a failed save leaves the old model intact, and
a URI of a file system this machine cannot reach fails in Spark instead of being treated as a
local path.  (The same over Spark Connect: tests/test_connect.py.)"""

from __future__ import annotations

import os

import numpy as np
import pytest

from spark_em import GaussianMixtureModel
from spark_em.io.filesystem import atomic_write


@pytest.fixture(scope="module")
def model():
    return GaussianMixtureModel.fromParameters(
        [0.3, 0.7], [[0.0, 1.0], [4.0, -2.0]], [[1.0, 2.0], [0.5, 0.25]], "diag"
    )


@pytest.mark.parametrize("form", ["plain", "file-uri"])
def test_save_load_local_path_and_file_uri(spark, model, tmp_path, form):
    local = tmp_path / "nested" / "model"
    path = str(local) if form == "plain" else local.as_uri()
    model.write().save(path)
    assert (local / "metadata").is_dir() and (local / "data").is_dir()
    with pytest.raises(FileExistsError, match="already exists"):
        model.write().save(path)
    model.write().overwrite().save(path)
    loaded = GaussianMixtureModel.load(path)
    assert loaded.covarianceType == "diag"
    np.testing.assert_array_equal(loaded.weights, model.weights)
    np.testing.assert_array_equal(loaded.means, model.means)
    np.testing.assert_array_equal(loaded.covariances, model.covariances)
    # the temporary sibling is gone after the rename
    assert sorted(os.listdir(local.parent)) == ["model"]


def test_failed_overwrite_keeps_the_old_model(spark, model, tmp_path):
    path = (tmp_path / "model").as_uri()
    model.write().save(path)

    def broken(target):
        spark.range(3).write.parquet(target + "/data")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(spark, path, True, broken)
    np.testing.assert_array_equal(GaussianMixtureModel.load(path).means, model.means)
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_unreachable_object_store_uri_is_not_a_local_path(spark, model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match="(?i)scheme|filesystem"):
        model.write().save("s3a://no-such-bucket-spark-em/models/gmm")
    assert os.listdir(tmp_path) == []  # nothing was written locally instead


def test_a_killed_saves_stale_temporaries_are_removed_by_the_next_save(spark, model, tmp_path):
    import time

    path = tmp_path / "model"
    stale = tmp_path / "model._tmp-0123456789ab"
    old = tmp_path / "model._old-ba9876543210"
    fresh = tmp_path / "model._tmp-aaaaaaaaaaaa"  # a save running right now
    other = tmp_path / "other._tmp-0123456789ab"  # another path's
    for d in (stale, old, fresh, other):
        (d / "data").mkdir(parents=True)
    week_ago = time.time() - 7 * 86400
    for d in (stale, old, other):
        os.utime(d, (week_ago, week_ago))
    model.write().save(str(path))
    assert sorted(os.listdir(tmp_path)) == ["model", fresh.name, other.name]
