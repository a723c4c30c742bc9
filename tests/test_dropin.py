"""The members a user of pyspark.ml or scikit-learn reaches for: the model's Params and
``gaussians``, the summary's DataFrames, a reproducible default seed, ``precisions``, the
sklearn fit attributes through ``toSklearn``/``fromSklearn``, and ``ConvergenceWarning``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.ml.linalg import DenseMatrix, DenseVector
from pyspark.ml.stat import MultivariateGaussian
from sklearn.mixture import GaussianMixture as SkGM

import spark_em
from spark_em import ConvergenceWarning, GaussianMixture, GaussianMixtureModel
from spark_em.core.mixture import COVARIANCE_TYPES
from spark_em.data.datasets import sample_mixture

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N, D, K = 240, 2, 3


@pytest.fixture(scope="module")
def data(spark):
    X, labels, _ = sample_mixture(N, k=K, d=D, covariance_type="full", seed=5, separation=6.0)
    pdf = pd.DataFrame({"id": np.arange(N), "features": list(X)})
    df = spark.createDataFrame(pdf, "id long, features array<double>").coalesce(2)
    return X, labels, df


def metadata(path: Path) -> dict:
    (meta_file,) = [f for f in (path / "metadata").iterdir() if f.name.startswith("part-")]
    return json.loads(meta_file.read_text())


FIT_PARAMS = dict(
    k=K,
    maxIter=30,
    tol=1e-4,
    seed=7,
    aggregationDepth=3,
    regCovar=1e-5,
    initMode="k-means++",
    nInit=2,
    initSampleSize=500,
    predictionCol="c",
    probabilityCol="p",
)


# ---------------------------------------------------------------- Params carried by the model
def test_model_carries_and_saves_the_fit_params(spark, data, tmp_path):
    _, _, df = data
    gm = GaussianMixture(covarianceType="diag", **FIT_PARAMS)
    model = gm.fit(df)
    for name, value in FIT_PARAMS.items():
        getter = getattr(model, f"get{name[0].upper()}{name[1:]}")
        assert getter() == value, name
        assert model.isSet(name), name
    assert model.getCovarianceType() == model.covarianceType == "diag"
    # unset Params keep the estimator's defaults (as MLlib's _copyValues does)
    assert not model.isSet("blockCache") and model.getBlockCache() == "auto"
    assert model.getFeaturesCol() == "features" and model.getWeightCol() is None

    path = tmp_path / "model"
    model.save(str(path))
    meta = metadata(path)
    assert meta["formatVersion"] == 1
    # pyspark.ml's DefaultParamsWriter layout: the set Params in paramMap, defaults apart
    assert set(meta["paramMap"]) == set(FIT_PARAMS)
    assert meta["paramMap"]["tol"] == 1e-4 and meta["paramMap"]["seed"] == 7
    assert meta["defaultParamMap"]["maxIter"] == 100 and meta["defaultParamMap"]["seed"] == 42
    loaded = GaussianMixtureModel.load(str(path))
    for name, value in FIT_PARAMS.items():
        assert getattr(loaded, f"get{name[0].upper()}{name[1:]}")() == value, name
    assert loaded.getRegCovar() == 1e-5 and loaded.getInitMode() == "k-means++"
    assert "maxIter: max number of iterations" in loaded.explainParams()


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gaussians_are_mllib_multivariate_gaussians(covariance_type):
    rng = np.random.default_rng(3)
    cov = {
        "full": np.stack([[[2.0, 0.3], [0.3, 1.0]], [[1.0, -0.2], [-0.2, 0.5]]]),
        "tied": np.array([[2.0, 0.4], [0.4, 1.0]]),
        "diag": np.array([[1.0, 2.0], [3.0, 0.5]]),
        "spherical": np.array([0.7, 1.9]),
    }[covariance_type]
    means = rng.normal(size=(2, 2))
    model = GaussianMixtureModel.fromParameters([0.4, 0.6], means, cov, covariance_type)
    gaussians = model.gaussians
    assert len(gaussians) == 2
    for j, g in enumerate(gaussians):
        assert isinstance(g, MultivariateGaussian)
        assert isinstance(g.mean, DenseVector) and isinstance(g.cov, DenseMatrix)
        full = {
            "full": lambda: cov[j],
            "tied": lambda: cov,
            "diag": lambda: np.diag(cov[j]),
            "spherical": lambda: np.eye(2) * cov[j],
        }[covariance_type]()
        np.testing.assert_array_equal(g.mean.toArray(), means[j])
        np.testing.assert_array_equal(g.cov.toArray(), full)


# ---------------------------------------------------------------- summary
def test_summary_predictions_probability_cluster(spark, data, tmp_path):
    X, _, df = data
    model = GaussianMixture(k=K, seed=1, predictionCol="c", probabilityCol="p").fit(df)
    s = model.summary
    assert (s.featuresCol, s.predictionCol, s.probabilityCol) == ("features", "c", "p")
    model.setPredictionCol("renamed")  # as MLlib: the summary keeps the fit's columns
    predictions = s.predictions
    assert predictions.columns == ["id", "features", "p", "c"]  # MLlib's order
    assert s.probability.columns == ["p"] and s.cluster.columns == ["c"]
    rows = predictions.orderBy("id").collect()
    sk = model.toSklearn()
    np.testing.assert_array_equal([r["c"] for r in rows], sk.predict(X))
    np.testing.assert_allclose([r["p"].toArray() for r in rows], sk.predict_proba(X), atol=1e-12)
    assert sorted(r["c"] for r in s.cluster.collect()) == sorted(sk.predict(X))
    assert s.probability.count() == N
    # a saved model keeps the summary but not the training DataFrame
    model.save(str(tmp_path / "m"))
    loaded = GaussianMixtureModel.load(str(tmp_path / "m"))
    assert loaded.summary.predictionCol == "c" and loaded.summary.featuresCol == "features"
    with pytest.raises(RuntimeError, match="only available on the model returned by fit"):
        loaded.summary.predictions


# ---------------------------------------------------------------- reproducible by default
def test_default_seed_is_a_constant_in_every_process():
    code = (
        "from spark_em import GaussianMixture; from pyspark.ml.param.shared import HasSeed;"
        "print(GaussianMixture().getSeed(), HasSeed().getSeed())"
    )
    outs = []
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        outs.append(
            subprocess.run(
                [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
            ).stdout.split()
        )
    assert outs[0][0] == outs[1][0] == "42"
    assert outs[0][1] != outs[1][1]  # pyspark's HasSeed default: hash(class name)


def test_fits_without_a_seed_are_reproducible_and_seed_none_is_random(spark, data):
    _, _, df = data
    a = GaussianMixture(k=K, initMode="random", maxIter=3, tol=0.0)
    b = GaussianMixture(k=K, initMode="random", maxIter=3, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        first, second = a.fit(df), b.fit(df)
        np.testing.assert_array_equal(first.means, second.means)
        r1 = GaussianMixture(k=K, initMode="random", maxIter=3, tol=0.0, seed=None).fit(df)
        r2 = GaussianMixture(k=K, initMode="random", maxIter=3, tol=0.0, seed=None).fit(df)
    assert r1.getSeed() is None
    assert not np.array_equal(r1.means, r2.means)


# ---------------------------------------------------------------- sklearn members
def test_convergence_warning(spark, data):
    _, _, df = data
    assert issubclass(ConvergenceWarning, UserWarning) and "ConvergenceWarning" in spark_em.__all__
    with pytest.warns(ConvergenceWarning, match="did not converge in maxIter=2"):
        model = GaussianMixture(k=K, maxIter=2, tol=0.0).fit(df)
    assert not model.summary.converged and model.summary.numIter == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        assert GaussianMixture(k=K, maxIter=200, tol=1e-2).fit(df).summary.converged
        GaussianMixture(k=K, maxIter=0).fit(df)  # no iterations asked for: no warning


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_precisions_and_fit_attributes_round_trip_through_sklearn(data, covariance_type):
    X, _, _ = data
    sk = SkGM(K, covariance_type=covariance_type, max_iter=4, tol=0.0, random_state=0).fit(X)
    model = GaussianMixtureModel.fromSklearn(sk)
    np.testing.assert_allclose(model.precisions, sk.precisions_, rtol=1e-9)
    assert model.precisions.shape == sk.precisions_.shape
    assert model.summary.numIter == 4 and model.summary.converged is False
    back = model.toSklearn()
    assert (back.converged_, back.n_iter_) == (sk.converged_, sk.n_iter_) == (False, 4)
    assert back.lower_bound_ == sk.lower_bound_
    assert back.lower_bounds_ == sk.lower_bounds_ and len(back.lower_bounds_) == 4
    np.testing.assert_allclose(back.precisions_, sk.precisions_, rtol=1e-9)
    # without a fit there is nothing to report (as before)
    plain = GaussianMixtureModel.fromParameters(
        sk.weights_, sk.means_, sk.covariances_, covariance_type
    ).toSklearn()
    assert (plain.converged_, plain.n_iter_, plain.lower_bound_, plain.lower_bounds_) == (
        True,
        0,
        -np.inf,
        [],
    )


def test_to_sklearn_reports_the_same_lower_bounds_as_sklearn_from_the_same_start(spark, data):
    X, labels, df = data
    means = np.stack([X[np.flatnonzero(labels == j)[0]] for j in range(K)])
    w, cov = np.full(K, 1.0 / K), np.stack([np.eye(D)] * K)
    sk = SkGM(
        K, max_iter=5, tol=0.0, weights_init=w, means_init=means, precisions_init=np.linalg.inv(cov)
    ).fit(X)
    start = GaussianMixtureModel.fromParameters(w, means, cov)
    with pytest.warns(ConvergenceWarning):
        ours = GaussianMixture(k=K, maxIter=5, tol=0.0, initialModel=start).fit(df).toSklearn()
    assert (ours.converged_, ours.n_iter_) == (sk.converged_, sk.n_iter_) == (False, 5)
    np.testing.assert_allclose(ours.lower_bounds_, sk.lower_bounds_, rtol=1e-9)
    assert ours.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-9)
