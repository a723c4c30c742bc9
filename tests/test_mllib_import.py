"""MLlib's GaussianMixtureModel as a spark-em model: the directory MLlib saves loads with
``GaussianMixtureModel.load``, a live one converts with ``fromMLlib``; the truth is the
model MLlib itself fits and saves in the test."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.clustering import GaussianMixture as MLlibGM
from pyspark.ml.clustering import KMeans
from pyspark.ml.linalg import DenseMatrix, MatrixUDT, SparseMatrix, Vectors, VectorUDT

from spark_em import GaussianMixtureModel, ModelFormatError
from spark_em.data.datasets import sample_mixture
from spark_em.io.mllib_import import _matrix, _vector


@pytest.fixture(scope="module")
def mllib(spark):
    X, _, _ = sample_mixture(300, k=3, d=3, covariance_type="full", seed=11, separation=8.0)
    df = spark.createDataFrame([(i, Vectors.dense(x)) for i, x in enumerate(X)], ["id", "vec"])
    model = MLlibGM(
        k=3, seed=4, maxIter=40, tol=1e-3, featuresCol="vec", predictionCol="cluster"
    ).fit(df)
    return model, df


def mllib_arrays(model):
    gaussians = model.gaussians
    return (
        np.asarray(model.weights),
        np.stack([g.mean.toArray() for g in gaussians]),
        np.stack([g.cov.toArray() for g in gaussians]),
    )


def assert_same_model(ours, mllib_model, df):
    weights, means, covs = mllib_arrays(mllib_model)
    assert ours.covarianceType == "full" and ours.getK() == 3 and ours.numFeatures == 3
    np.testing.assert_array_equal(ours.weights, weights)
    np.testing.assert_array_equal(ours.means, means)
    np.testing.assert_array_equal(ours.covariances, covs)
    # the Params both share; not tol (its rule differs)
    assert (ours.getFeaturesCol(), ours.getPredictionCol(), ours.getSeed(), ours.getMaxIter()) == (
        "vec",
        "cluster",
        4,
        40,
    )
    assert ours.getTol() == 1e-3 and not ours.isSet("tol")
    # the same clusters as MLlib's own transform (well separated data)
    theirs = [r["cluster"] for r in mllib_model.transform(df).orderBy("id").collect()]
    mine = [r["cluster"] for r in ours.transform(df).orderBy("id").collect()]
    assert mine == theirs


def test_load_a_directory_saved_by_mllib(spark, mllib, tmp_path):
    model, df = mllib
    path = str(tmp_path / "mllib-model")
    model.save(path)
    ours = GaussianMixtureModel.load(path)
    assert isinstance(ours, GaussianMixtureModel) and not ours.hasSummary
    assert ours.uid == model.uid
    assert_same_model(ours, model, df)
    # saved again, it is a spark-em model with the same parameters
    ours.save(str(tmp_path / "ours"))
    again = GaussianMixtureModel.load(str(tmp_path / "ours"))
    np.testing.assert_array_equal(again.covariances, ours.covariances)
    assert again.getPredictionCol() == "cluster"


def test_from_mllib_converts_a_live_model(mllib):
    model, df = mllib
    assert_same_model(GaussianMixtureModel.fromMLlib(model), model, df)
    with pytest.raises(TypeError, match="fromMLlib expects a fitted"):
        GaussianMixtureModel.fromMLlib(object())


def test_other_mllib_directories_get_a_message_naming_what_they_are(spark, mllib, tmp_path):
    model, df = mllib
    MLlibGM(k=3).save(str(tmp_path / "estimator"))
    with pytest.raises(
        ModelFormatError,
        match="saved MLlib GaussianMixture estimator, not a model: load it with pyspark",
    ):
        GaussianMixtureModel.load(str(tmp_path / "estimator"))
    KMeans(k=2, featuresCol="vec", maxIter=2).fit(df).save(str(tmp_path / "kmeans"))
    with pytest.raises(
        ModelFormatError,
        match="org.apache.spark.ml.clustering.KMeansModel, not a Gaussian mixture model",
    ):
        GaussianMixtureModel.load(str(tmp_path / "kmeans"))


@pytest.mark.parametrize(
    "matrix",
    [
        DenseMatrix(2, 3, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        DenseMatrix(2, 3, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], isTransposed=True),
        SparseMatrix(3, 2, [0, 1, 3], [1, 0, 2], [7.0, 8.0, 9.0]),
        SparseMatrix(3, 2, [0, 1, 2, 3], [1, 0, 1], [7.0, 8.0, 9.0], isTransposed=True),
    ],
)
def test_udt_structs_decode_as_pyspark_reads_them(matrix):
    """Spark's own serialisation (MatrixUDT/VectorUDT.serialize) is the truth."""
    fields = ("type", "numRows", "numCols", "colPtrs", "rowIndices", "values", "isTransposed")
    np.testing.assert_array_equal(
        _matrix(dict(zip(fields, MatrixUDT().serialize(matrix)))), matrix.toArray()
    )
    for vector in (Vectors.dense([1.0, -2.0, 3.0]), Vectors.sparse(4, [1, 3], [5.0, 6.0])):
        struct = dict(zip(("type", "size", "indices", "values"), VectorUDT().serialize(vector)))
        np.testing.assert_array_equal(_vector(struct), vector.toArray())
