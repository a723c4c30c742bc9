"""Saved models stay loadable across the module split: metadata written before it names
``spark_em.estimator.GaussianMixtureModel``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pyspark.ml.util import DefaultParamsReader

from spark_em import GaussianMixture, GaussianMixtureModel

OLD_CLASS = "spark_em.estimator.GaussianMixtureModel"


def metadata_files(path: Path) -> list[Path]:
    files = [
        f
        for f in (path / "metadata").iterdir()
        if f.name.startswith("part-") and f.stat().st_size > 0
    ]
    assert len(files) == 1, files
    return files


def rewrite_class(path: Path, class_name: str) -> None:
    """Rewrite the saved metadata's class as an older spark-em wrote it."""
    (meta_file,) = metadata_files(path)
    meta = json.loads(meta_file.read_text())
    meta["class"] = class_name
    meta_file.write_text(json.dumps(meta) + "\n")
    for crc in (path / "metadata").glob(".*.crc"):  # Hadoop would refuse the edited file
        crc.unlink()


def test_model_saved_with_the_old_class_name_loads(spark, tmp_path):
    X = np.array([[0.0, 0.1], [0.2, -0.1], [5.0, 5.2], [5.1, 4.9], [4.8, 5.0], [0.1, 0.0]])
    df = spark.createDataFrame([(row.tolist(),) for row in X], "features array<double>")
    model = GaussianMixture(k=2, covarianceType="diag", maxIter=5, seed=3, predictionCol="c").fit(
        df
    )
    path = tmp_path / "model"
    model.write().save(str(path))
    (meta_file,) = metadata_files(path)
    assert json.loads(meta_file.read_text())["class"] == "spark_em.model.GaussianMixtureModel"

    rewrite_class(path, OLD_CLASS)
    # the model's own loader, and pyspark's generic one (PipelineModel.load uses it), which
    # imports the class named in the metadata
    for loaded in (
        GaussianMixtureModel.load(str(path)),
        DefaultParamsReader.loadParamsInstance(str(path), spark),
    ):
        assert type(loaded) is GaussianMixtureModel and loaded.uid == model.uid
        for attr in ("weights", "means", "covariances"):
            np.testing.assert_array_equal(getattr(loaded, attr), getattr(model, attr))
        assert loaded.getPredictionCol() == "c"
        assert loaded.summary.logLikelihoodHistory == model.summary.logLikelihoodHistory
        np.testing.assert_array_equal(
            [r["c"] for r in loaded.transform(df).collect()], model.toSklearn().predict(X)
        )


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_a_model_saved_before_the_layout_change_still_loads(spark, covariance_type):
    """tests/fixtures/model-cd3f2cc-*: directories written by spark-em at commit cd3f2cc
    (the flat package), with the arrays and summary that version reported."""
    from pathlib import Path

    fixtures = Path(__file__).resolve().parent / "fixtures"
    model = GaussianMixtureModel.load(str(fixtures / f"model-cd3f2cc-{covariance_type}"))
    expected = np.load(fixtures / f"model-cd3f2cc-{covariance_type}.expected.npz")
    assert model.covarianceType == covariance_type and model.getK() == 2
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(model, name), expected[name])
    assert model.summary.logLikelihoodHistory == list(expected["history"])
    assert model.summary.clusterSizes == list(expected["sizes"])
    assert model.getSeed() == 5 and model.getFeaturesCol() == "features"
