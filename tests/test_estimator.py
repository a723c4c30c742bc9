"""The pyspark.ml API on a real local Spark, against scikit-learn and closed truths."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import DenseMatrix, DenseVector, MatrixUDT, Vectors, VectorUDT
from pyspark.sql import functions as F
from pyspark.sql import types as T
from sklearn.mixture import GaussianMixture as SkGM

from spark_em import GaussianMixture, GaussianMixtureModel, InvalidInputError
from spark_em.core.mixture import COVARIANCE_TYPES
from spark_em.data.datasets import sample_mixture
from spark_em.data.prepare import prepare
from spark_em.engine.em import Run, best_run, result_of, step

from .conftest import to_df

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N, D, K = 360, 3, 3


@pytest.fixture(scope="module")
def data():
    X, labels, truth = sample_mixture(N, k=K, d=D, covariance_type="full", seed=21, separation=4.0)
    return X, labels, truth


def start_parameters(X, labels, covariance_type):
    """A deliberately rough start: one data row per true cluster, unit-ish covariances."""
    means = np.stack([X[np.flatnonzero(labels == j)[0]] for j in range(K)])
    weights = np.full(K, 1.0 / K)
    scale = np.array([1.0, 1.5, 0.7])
    cov = {
        "full": np.stack([np.diag(scale) * s for s in (1.0, 2.0, 0.5)]),
        "tied": np.diag(scale),
        "diag": np.stack([scale * s for s in (1.0, 2.0, 0.5)]),
        "spherical": np.array([1.0, 2.0, 0.5]),
    }[covariance_type]
    return weights, means, cov


def precisions_of(cov, covariance_type):
    if covariance_type in ("full", "tied"):
        return np.linalg.inv(cov)
    return 1.0 / cov


def sklearn_from_start(X, labels, covariance_type, max_iter, reg_covar=1e-6):
    w, m, c = start_parameters(X, labels, covariance_type)
    return SkGM(
        K,
        covariance_type=covariance_type,
        max_iter=max_iter,
        tol=0.0,
        reg_covar=reg_covar,
        weights_init=w,
        means_init=m,
        precisions_init=precisions_of(c, covariance_type),
        random_state=0,
    ).fit(X)


def warm_start(X, labels, covariance_type):
    return GaussianMixtureModel.fromParameters(
        *start_parameters(X, labels, covariance_type), covarianceType=covariance_type
    )


def assert_params_close(model, other, rtol=1e-6):
    np.testing.assert_allclose(model.weights, other.weights_, rtol=rtol)
    scale = np.abs(other.means_).max()
    np.testing.assert_allclose(model.means, other.means_, rtol=rtol, atol=rtol * scale)
    scale = np.abs(other.covariances_).max()
    np.testing.assert_allclose(model.covariances, other.covariances_, rtol=rtol, atol=rtol * scale)


# ---------------------------------------------------------------- equivalence with sklearn
@pytest.mark.parametrize("partitions", [1, 3, 17])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_same_fit_as_sklearn_from_the_same_start(spark, data, covariance_type, partitions):
    X, labels, _ = data
    max_iter = 3
    sk = sklearn_from_start(X, labels, covariance_type, max_iter)
    gm = GaussianMixture(
        k=K,
        covarianceType=covariance_type,
        maxIter=max_iter,
        tol=0.0,
        regCovar=1e-6,
        initialModel=warm_start(X, labels, covariance_type),
    )
    if partitions > 1 and gm.hasParam("blockCache"):
        # keep the blocks in Spark's partitions (not re-chunked local files): the passes then
        # run one task per partition and tree-reduce their statistics
        gm.setBlockCache("spark")
    model = gm.fit(to_df(spark, X, partitions=partitions))
    assert_params_close(model, sk, rtol=1e-6)
    np.testing.assert_allclose(
        model.precisionsCholesky, sk.precisions_cholesky_, rtol=1e-6, atol=1e-9
    )
    s = model.summary
    assert s.numIter == max_iter and not s.converged
    # sklearn's lower_bound_ is the mean log-likelihood of the last E-step, as our history
    assert s.logLikelihoodHistory[-1] == pytest.approx(sk.lower_bound_, rel=1e-9)
    # MLlib's total log-likelihood: the last E-step's, i.e. sklearn's lower bound times N
    assert s.logLikelihood == pytest.approx(sk.lower_bound_ * N, rel=1e-9)
    # sizes under the final parameters, computed on first access
    np.testing.assert_array_equal(s.clusterSizes, np.bincount(sk.predict(X), minlength=K))


def test_log_likelihood_history_non_decreasing_and_convergence(spark, data):
    X, _, _ = data
    df = to_df(spark, X, partitions=2)
    # a poor start (two means in one cluster) so that EM needs a couple of dozen iterations
    w, m, c = np.full(K, 1.0 / K), X[[0, 1, 2]], np.stack([np.eye(D)] * K)
    start = GaussianMixtureModel.fromParameters(w, m, c)
    model = GaussianMixture(k=K, maxIter=200, tol=1e-7, initialModel=start).fit(df)
    s = model.summary
    h = np.array(s.logLikelihoodHistory)
    assert len(h) == s.numIter >= 10
    assert np.all(np.diff(h) >= -1e-12), np.diff(h)
    assert s.converged and s.numIter < 200 and abs(h[-1] - h[-2]) < 1e-7
    assert s.k == K and s.numRows == N and s.weightSum == N
    # the same start in sklearn with the same tol stops at the same iteration
    sk = SkGM(
        K, tol=1e-7, max_iter=200, weights_init=w, means_init=m, precisions_init=np.linalg.inv(c)
    ).fit(X)
    assert sk.converged_ and sk.n_iter_ == s.numIter
    assert s.logLikelihood == pytest.approx(sk.lower_bound_ * N, rel=1e-9)
    assert model.score(df) == pytest.approx(sk.score(X), rel=1e-9)
    assert_params_close(model, sk, rtol=1e-6)


def test_max_iter_zero_keeps_the_initial_model(spark, data):
    X, labels, _ = data
    init = warm_start(X, labels, "diag")
    model = GaussianMixture(k=K, covarianceType="diag", maxIter=0, initialModel=init).fit(
        to_df(spark, X)
    )
    np.testing.assert_array_equal(model.means, init.means)
    assert model.summary.numIter == 0
    # as sklearn's lower_bound_ with max_iter=0: no E-step ran
    assert model.summary.logLikelihood == -np.inf
    np.testing.assert_array_equal(
        model.summary.clusterSizes, np.bincount(init.toSklearn().predict(X), minlength=K)
    )


# ---------------------------------------------------------------- initialisation
@pytest.fixture(scope="module")
def blobs_df(spark, blobs):
    X, _, _ = blobs
    return to_df(spark, X, partitions=2).cache()


@pytest.fixture(scope="module")
def sklearn_best(blobs):
    X, _, _ = blobs
    return SkGM(3, n_init=3, random_state=0, tol=1e-6).fit(X)


@pytest.mark.parametrize("init_mode", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_init_mode_finds_the_blobs(spark, blobs, blobs_df, sklearn_best, init_mode):
    X, labels, truth = blobs
    model = GaussianMixture(k=3, initMode=init_mode, seed=1, tol=1e-4, maxIter=100).fit(blobs_df)
    assert model.summary.converged
    order = [int(np.argmin(np.linalg.norm(sklearn_best.means_ - m, axis=1))) for m in model.means]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(model.means, sklearn_best.means_[order], atol=2e-2)
    np.testing.assert_allclose(model.weights, sklearn_best.weights_[order], atol=1e-2)
    assert model.summary.logLikelihood / len(X) == pytest.approx(sklearn_best.score(X), abs=1e-3)


def test_n_init_keeps_the_best_run(spark, blobs, blobs_df):
    X, labels, truth = blobs
    store, data = prepare(blobs_df, "features")
    with store:
        good = warm_start_from(truth)
        bad = GaussianMixtureModel.fromParameters(  # three means in one blob
            [0.4, 0.3, 0.3], X[labels == 0][:3], np.stack([np.eye(2)] * 3)
        ).mixture

        def em(starts):  # nInit restarts in one fit, as the estimator runs them
            runs = [Run(p, f"run {i}") for i, p in enumerate(starts)]
            for iteration in range(1, 4):
                step(store, data, runs, iteration, tol=0.0, reg_covar=1e-6)
            return result_of(best_run(runs), data)

        both = em([bad, good])
        only_good = em([good])
        only_bad = em([bad])
    assert only_good.log_likelihood_history[-1] > only_bad.log_likelihood_history[-1]
    np.testing.assert_array_equal(both.params.means, only_good.params.means)
    assert both.log_likelihood_history == only_good.log_likelihood_history
    # through the estimator: more restarts never end worse (run 0 is the nInit=1 run)
    one = GaussianMixture(k=3, initMode="random_from_data", nInit=1, seed=4, maxIter=2).fit(
        blobs_df
    )
    four = GaussianMixture(k=3, initMode="random_from_data", nInit=4, seed=4, maxIter=2).fit(
        blobs_df
    )
    assert four.summary.logLikelihoodHistory[-1] >= one.summary.logLikelihoodHistory[-1] - 1e-12


def warm_start_from(truth):
    return GaussianMixtureModel.fromParameters(
        truth["weights"], truth["means"], truth["covariances"], "full"
    ).mixture


@pytest.mark.parametrize("init_mode", ["kmeans", "random"])
def test_fixed_seed_reproduces_the_fit_exactly(spark, blobs_df, init_mode):
    gm = GaussianMixture(
        k=3, initMode=init_mode, nInit=2, seed=11, maxIter=4, covarianceType="diag"
    )
    a, b = gm.fit(blobs_df), gm.fit(blobs_df)
    np.testing.assert_array_equal(a.means, b.means)
    np.testing.assert_array_equal(a.covariances, b.covariances)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert a.summary.logLikelihoodHistory == b.summary.logLikelihoodHistory


# ---------------------------------------------------------------- inputs
def test_integer_weights_equal_duplicated_rows(spark, data):
    X, labels, _ = data
    rng = np.random.default_rng(2)
    counts = rng.integers(1, 4, size=N)
    weighted = spark.createDataFrame(
        pd.DataFrame({"features": list(X), "w": counts.astype(np.int32)}),
        "features array<double>, w int",
    )
    duplicated = to_df(spark, np.repeat(X, counts, axis=0))
    kw = dict(
        k=K, covarianceType="full", maxIter=5, tol=0.0, initialModel=warm_start(X, labels, "full")
    )
    a = GaussianMixture(weightCol="w", **kw).fit(weighted.repartition(3))
    b = GaussianMixture(**kw).fit(duplicated)
    np.testing.assert_allclose(a.means, b.means, rtol=1e-10)
    np.testing.assert_allclose(a.covariances, b.covariances, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-10)
    assert a.summary.logLikelihood == pytest.approx(b.summary.logLikelihood, rel=1e-10)
    assert a.summary.weightSum == counts.sum() and a.summary.numRows == N
    # weighted score and bic use the weights as row counts
    assert a.score(weighted) == pytest.approx(b.score(duplicated), rel=1e-10)
    assert a.bic(weighted) == pytest.approx(b.bic(duplicated), rel=1e-10)


def feature_frames(spark, X):
    """The same data in each accepted feature layout."""
    rows = []
    for i, x in enumerate(X):
        nz = np.flatnonzero(x)
        rows.append(
            (
                i,
                Vectors.dense(x),
                Vectors.sparse(len(x), nz, x[nz]),
                [float(v) for v in x],
                *[float(v) for v in x],
            )
        )
    schema = T.StructType(
        [
            T.StructField("id", T.LongType()),
            T.StructField("dense", VectorUDT()),
            T.StructField("sparse", VectorUDT()),
            T.StructField("arr", T.ArrayType(T.DoubleType())),
        ]
        + [T.StructField(f"c{j}", T.DoubleType()) for j in range(X.shape[1])]
    )
    df = spark.createDataFrame(rows, schema).withColumn("arr32", F.col("arr").cast("array<float>"))
    return df.withColumn("c1", F.col("c1").cast("float")).repartition(2)


def test_every_features_layout_gives_the_same_fit(spark, data):
    X, labels, _ = data
    # float32-representable values with exact zeros, so every layout holds the same numbers
    X = X.astype(np.float32).astype(np.float64)
    X[::4, 1] = 0.0
    df = feature_frames(spark, X).cache()
    kw = dict(
        k=K, covarianceType="tied", maxIter=4, tol=0.0, initialModel=warm_start(X, labels, "tied")
    )
    fits = {
        str(col): GaussianMixture(featuresCol=col, **kw).fit(df)
        for col in ("dense", "sparse", "arr", "arr32", ["c0", "c1", "c2"])
    }
    sk = SkGM(
        K,
        covariance_type="tied",
        max_iter=4,
        tol=0.0,
        reg_covar=1e-6,
        weights_init=start_parameters(X, labels, "tied")[0],
        means_init=start_parameters(X, labels, "tied")[1],
        precisions_init=np.linalg.inv(start_parameters(X, labels, "tied")[2]),
    ).fit(X)
    for model in fits.values():
        assert_params_close(model, sk, rtol=1e-9)
    # transform reads every layout too: the same predictions from sparse vectors and columns
    a = fits["sparse"].transform(df).select("id", "prediction")
    b = fits[str(["c0", "c1", "c2"])].transform(df).select("id", "prediction")
    assert_df_equality(a, b, ignore_row_order=True)
    assert a.where(F.col("prediction").isNull()).count() == 0
    df.unpersist()


# ---------------------------------------------------------------- the model
@pytest.fixture(scope="module")
def fitted(spark, data):
    X, labels, _ = data
    pdf = pd.DataFrame({"id": np.arange(N), "features": list(X)})
    df = spark.createDataFrame(pdf, "id long, features array<double>").repartition(3)
    model = GaussianMixture(k=K, covarianceType="full", seed=3, maxIter=20).fit(df)
    return model, df, X


def test_transform_matches_sklearn(spark, fitted):
    model, df, X = fitted
    sk = model.toSklearn()
    model = model.copy().setLogLikelihoodCol("ll")
    out = model.transform(df)
    fields = {f.name: f.dataType for f in out.schema.fields}
    assert isinstance(fields["prediction"], T.IntegerType)
    assert isinstance(fields["probability"], VectorUDT)
    assert isinstance(fields["ll"], T.DoubleType)
    assert out.columns[:2] == ["id", "features"]
    prob = vector_to_array("probability")
    actual = out.select(
        "id", "prediction", "ll", *[prob[j].alias(f"p{j}") for j in range(K)]
    ).orderBy("id")
    P = sk.predict_proba(X)
    expected = spark.createDataFrame(
        pd.DataFrame(
            {
                "id": np.arange(N),
                "prediction": sk.predict(X).astype(np.int32),
                "ll": sk.score_samples(X),
                **{f"p{j}": P[:, j] for j in range(K)},
            }
        ),
        "id long, prediction int, ll double, p0 double, p1 double, p2 double",
    )
    assert_approx_df_equality(actual, expected, precision=1e-9, ignore_nullable=True)
    sums = out.select(F.aggregate(prob, F.lit(0.0), lambda a, b: a + b).alias("s")).toPandas()["s"]
    np.testing.assert_allclose(sums, 1.0, atol=1e-12)
    # without logLikelihoodCol there is no such column
    assert fitted[0].transform(df).columns == ["id", "features", "probability", "prediction"]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_transform_uses_the_fits_e_step_for_every_covariance_type(spark, covariance_type):
    """transform's probabilities, predictions and log-likelihoods are sklearn's
    predict_proba, predict and score_samples on the same parameters (one E-step kernel for
    fit and scoring), for every covariance type, with data far from the origin."""
    from sklearn.mixture import GaussianMixture as SkGM

    X, _, _ = sample_mixture(900, k=3, d=3, covariance_type="full", seed=4, separation=3.0)
    X = X + 1e4
    sk = SkGM(3, covariance_type=covariance_type, max_iter=4, random_state=0).fit(X)
    model = GaussianMixtureModel.fromSklearn(sk).setLogLikelihoodCol("ll")
    df = spark.createDataFrame(
        pd.DataFrame({"id": np.arange(len(X)), "features": list(X)}),
        "id long, features array<double>",
    )
    rows = model.transform(df).orderBy("id").collect()
    # sklearn's diag/spherical log-densities expand (x - mu)^2 on raw x, which loses ~1e-8
    # at 1e4 from the origin: the reference is sklearn on the data and means shifted by c
    import copy

    c = X.mean(axis=0)
    ref = copy.deepcopy(sk)
    ref.means_ = sk.means_ - c
    Xc = X - c
    np.testing.assert_allclose(
        [r["probability"].toArray() for r in rows], ref.predict_proba(Xc), atol=1e-9
    )
    np.testing.assert_array_equal([r["prediction"] for r in rows], ref.predict(Xc))
    np.testing.assert_allclose([r["ll"] for r in rows], ref.score_samples(Xc), rtol=1e-9)
    assert model.score(df) == pytest.approx(ref.score(Xc), rel=1e-9)


def test_transform_leaves_rows_with_null_features_null(spark, fitted):
    model, _, X = fitted
    df = spark.createDataFrame(
        [(0, [float(v) for v in X[0]]), (1, None)], "id long, features array<double>"
    )
    rows = model.copy().setLogLikelihoodCol("ll").transform(df).orderBy("id").collect()
    assert rows[0]["prediction"] == model.predict(X[0]) and rows[0]["probability"] is not None
    assert (rows[1]["prediction"], rows[1]["probability"], rows[1]["ll"]) == (None, None, None)
    # but a score over such rows would be wrong: it is refused
    with pytest.raises(InvalidInputError, match="1 rows have null features"):
        model.score(df)
    with pytest.raises(InvalidInputError, match="empty"):
        model.score(df.limit(0))


def test_transform_custom_column_names(spark, fitted):
    model, df, _ = fitted
    out = model.copy({model.predictionCol: "cluster", model.probabilityCol: "post"}).transform(df)
    assert {"cluster", "post"} <= set(out.columns) and "prediction" not in out.columns


def test_predict_and_predict_probability(fitted):
    model, _, X = fitted
    sk = model.toSklearn()
    for x in X[:5]:
        assert model.predict(DenseVector(x)) == sk.predict(x[None])[0]
        assert model.predict(list(x)) == sk.predict(x[None])[0]
        p = model.predictProbability(DenseVector(x))
        assert isinstance(p, DenseVector)
        np.testing.assert_allclose(p.toArray(), sk.predict_proba(x[None])[0], atol=1e-12)


def test_score_bic_aic_match_sklearn(fitted):
    model, df, X = fitted
    sk = model.toSklearn()
    assert model.score(df) == pytest.approx(sk.score(X), rel=1e-10)
    assert model.bic(df) == pytest.approx(sk.bic(X), rel=1e-10)
    assert model.aic(df) == pytest.approx(sk.aic(X), rel=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gaussians_df(spark, covariance_type):
    rng = np.random.default_rng(0)
    w, m, c = (
        [0.5, 0.5],
        rng.normal(size=(2, 3)),
        {
            "full": np.stack([np.eye(3) + 0.1, 2 * np.eye(3)]),
            "tied": np.eye(3) * 3,
            "diag": np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
            "spherical": np.array([1.5, 2.5]),
        }[covariance_type],
    )
    model = GaussianMixtureModel.fromParameters(w, m, c, covariance_type)
    g = model.gaussiansDF
    assert g.columns == ["mean", "cov"]
    assert isinstance(g.schema["mean"].dataType, VectorUDT)
    assert isinstance(g.schema["cov"].dataType, MatrixUDT)
    rows = g.collect()
    assert len(rows) == 2
    expected = model.toSklearn()
    for j, row in enumerate(rows):
        assert isinstance(row["mean"], DenseVector) and isinstance(row["cov"], DenseMatrix)
        np.testing.assert_array_equal(row["mean"].toArray(), m[j])
        full = {
            "full": lambda: c[j],
            "tied": lambda: c,
            "diag": lambda: np.diag(c[j]),
            "spherical": lambda: np.eye(3) * c[j],
        }[covariance_type]()
        np.testing.assert_array_equal(row["cov"].toArray(), full)
    assert expected.covariance_type == covariance_type


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sklearn_round_trip(covariance_type):
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(c, 1.0, size=(60, 2)) for c in (-3, 3)])
    sk = SkGM(2, covariance_type=covariance_type, random_state=0).fit(X)
    model = GaussianMixtureModel.fromSklearn(sk)
    assert model.covarianceType == covariance_type and model.getK() == 2 and model.numFeatures == 2
    np.testing.assert_array_equal(model.means, sk.means_)
    np.testing.assert_allclose(model.precisionsCholesky, sk.precisions_cholesky_, rtol=1e-10)
    back = model.toSklearn()
    for attr in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(back, attr), getattr(sk, attr))
    np.testing.assert_allclose(back.precisions_, sk.precisions_, rtol=1e-9)
    np.testing.assert_allclose(back.predict_proba(X), sk.predict_proba(X), atol=1e-12)
    np.testing.assert_allclose(back.score_samples(X), sk.score_samples(X), rtol=1e-12)
    again = GaussianMixtureModel.fromParameters(
        back.weights_, back.means_, back.covariances_, covarianceType=covariance_type
    )
    np.testing.assert_array_equal(again.covariances, sk.covariances_)


# ---------------------------------------------------------------- Pipeline
def test_pipeline_stage(spark, data, tmp_path):
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.feature import VectorAssembler

    X, labels, _ = data
    cols = pd.DataFrame(X, columns=["a", "b", "c"])
    df = spark.createDataFrame(cols)
    gm = GaussianMixture(
        k=K, featuresCol="vec", maxIter=4, tol=0.0, initialModel=warm_start(X, labels, "full")
    )
    pipe = Pipeline(stages=[VectorAssembler(inputCols=["a", "b", "c"], outputCol="vec"), gm])
    pm = pipe.fit(df)
    out = pm.transform(df)
    assert {"vec", "prediction", "probability"} <= set(out.columns)
    direct = gm.copy().setFeaturesCol(["a", "b", "c"]).fit(df)
    np.testing.assert_allclose(pm.stages[-1].means, direct.means, rtol=1e-12)
    assert_df_equality(
        out.select("a", "b", "c", "prediction"),
        direct.transform(df).select("a", "b", "c", "prediction"),
        ignore_row_order=True,
    )
    # the fitted pipeline saves and loads with our stage inside
    path = str(tmp_path / "pipeline")
    pm.write().overwrite().save(path)
    loaded = PipelineModel.load(path)
    assert isinstance(loaded.stages[-1], GaussianMixtureModel)
    np.testing.assert_array_equal(loaded.stages[-1].means, pm.stages[-1].means)


# ---------------------------------------------------------------- persistence
def assert_json_and_parquet_only(path):
    seen = set()
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as fh:
                head = fh.read(4)
            assert not head.startswith(b"\x80"), f"{full} looks like a pickle"
            if name.endswith(".crc") or name == "_SUCCESS":
                continue
            if name.endswith(".parquet"):
                assert head == b"PAR1", full
                seen.add("parquet")
            else:
                with open(full) as fh:
                    for line in fh:
                        json.loads(line)
                seen.add("json")
    assert seen == {"json", "parquet"}


def test_model_save_load_round_trip(spark, fitted, tmp_path):
    model, df, X = fitted
    model = model.copy().setLogLikelihoodCol("ll").setWeightCol(None)
    sizes = model.summary.clusterSizes  # computed now, so saved with the model
    path = str(tmp_path / "model")
    model.write().overwrite().save(path)
    assert_json_and_parquet_only(path)
    loaded = GaussianMixtureModel.load(path)
    assert loaded.uid == model.uid and loaded.covarianceType == model.covarianceType
    for attr in ("weights", "means", "covariances", "precisionsCholesky"):
        np.testing.assert_array_equal(getattr(loaded, attr), getattr(model, attr))
    assert loaded.summary.logLikelihood == model.summary.logLikelihood
    assert loaded.summary.logLikelihoodHistory == model.summary.logLikelihoodHistory
    assert loaded.summary.clusterSizes == sizes
    assert loaded.getLogLikelihoodCol() == "ll"
    assert_df_equality(loaded.transform(df), model.transform(df), ignore_row_order=True)
    # overwrite replaces, plain save refuses
    model.write().overwrite().save(path)
    with pytest.raises(Exception, match="already exists"):
        model.write().save(path)
    with pytest.raises(Exception, match="already exists"):
        model.save(path)
    assert not [p for p in os.listdir(tmp_path) if "_tmp-" in p]


def test_cluster_sizes_not_asked_for_before_save(spark, data, tmp_path):
    X, labels, _ = data
    model = GaussianMixture(k=K, maxIter=2, initialModel=warm_start(X, labels, "full")).fit(
        to_df(spark, X)
    )
    model.save(str(tmp_path / "m"))
    loaded = GaussianMixtureModel.load(str(tmp_path / "m"))
    assert loaded.summary.logLikelihood == model.summary.logLikelihood
    with pytest.raises(RuntimeError, match="clusterSizes were not computed before"):
        loaded.summary.clusterSizes
    # the fitted model still has its training data: sizes under the final parameters
    expected = np.bincount(loaded.toSklearn().predict(X), minlength=K)
    np.testing.assert_array_equal(model.summary.clusterSizes, expected)


@pytest.mark.parametrize("covariance_type", ["tied", "spherical"])
def test_model_without_summary_save_load(spark, tmp_path, covariance_type):
    rng = np.random.default_rng(0)
    cov = np.eye(2) * 2 if covariance_type == "tied" else np.array([0.5, 3.0])
    model = GaussianMixtureModel.fromParameters(
        [0.25, 0.75], rng.normal(size=(2, 2)), cov, covariance_type
    )
    model.write().save(str(tmp_path / "m"))
    loaded = GaussianMixtureModel.load(str(tmp_path / "m"))
    assert not loaded.hasSummary and loaded.covarianceType == covariance_type
    np.testing.assert_array_equal(loaded.covariances, cov)
    np.testing.assert_array_equal(loaded.weights, [0.25, 0.75])


def test_estimator_save_load_round_trip_with_initial_model(spark, data, tmp_path):
    X, labels, _ = data
    gm = GaussianMixture(
        k=K,
        covarianceType="diag",
        maxIter=3,
        tol=0.0,
        regCovar=1e-4,
        initMode="random",
        nInit=2,
        seed=9,
        featuresCol=["a", "b"],
        weightCol="w",
        logLikelihoodCol="ll",
        initialModel=warm_start(X, labels, "diag"),
    )
    path = str(tmp_path / "estimator")
    gm.write().overwrite().save(path)
    assert_json_and_parquet_only(path)
    loaded = GaussianMixture.load(path)
    assert loaded.uid == gm.uid
    for name in (
        "k",
        "covarianceType",
        "maxIter",
        "tol",
        "regCovar",
        "initMode",
        "nInit",
        "seed",
        "featuresCol",
        "weightCol",
        "logLikelihoodCol",
        "predictionCol",
    ):
        assert loaded.getOrDefault(name) == gm.getOrDefault(name), name
    np.testing.assert_array_equal(loaded.getInitialModel().means, gm.getInitialModel().means)
    np.testing.assert_array_equal(
        loaded.getInitialModel().covariances, gm.getInitialModel().covariances
    )
    # without initialModel too, and with optional params set explicitly to None
    plain = GaussianMixture(k=4, seed=None, weightCol=None, logLikelihoodCol=None)
    plain.write().overwrite().save(path)
    back = GaussianMixture.load(path)
    assert back.getK() == 4 and back.getInitialModel() is None
    assert (back.getSeed(), back.getWeightCol(), back.getLogLikelihoodCol()) == (None, None, None)
    with pytest.raises(Exception, match="already exists"):
        plain.write().save(path)
    # the loaded estimator fits the same as the original
    df = to_df(spark, X)
    a = GaussianMixture(
        k=K, covarianceType="diag", maxIter=3, tol=0.0, initialModel=warm_start(X, labels, "diag")
    )
    a.write().overwrite().save(path)
    np.testing.assert_array_equal(GaussianMixture.load(path).fit(df).means, a.fit(df).means)


# ---------------------------------------------------------------- Params
def test_setters_getters_copy_explain_params():
    gm = GaussianMixture()
    assert (
        gm.getK(),
        gm.getCovarianceType(),
        gm.getMaxIter(),
        gm.getTol(),
        gm.getRegCovar(),
        gm.getInitMode(),
        gm.getNInit(),
        gm.getSeed(),
        gm.getInitialModel(),
        gm.getFeaturesCol(),
        gm.getWeightCol(),
        gm.getPredictionCol(),
        gm.getProbabilityCol(),
        gm.getLogLikelihoodCol(),
    ) == (
        2,
        "full",
        100,
        1e-3,
        1e-6,
        "sample-em",
        1,
        42,
        None,
        "features",
        None,
        "prediction",
        "probability",
        None,
    )
    same = (
        gm.setK(4)
        .setCovarianceType("diag")
        .setMaxIter(7)
        .setTol(0.5)
        .setRegCovar(1e-3)
        .setInitMode("random")
        .setNInit(3)
        .setSeed(5)
        .setFeaturesCol(["x", "y"])
        .setWeightCol("w")
        .setPredictionCol("p")
        .setProbabilityCol("q")
        .setLogLikelihoodCol("l")
    )
    assert same is gm
    assert (
        gm.getK(),
        gm.getCovarianceType(),
        gm.getMaxIter(),
        gm.getTol(),
        gm.getRegCovar(),
        gm.getInitMode(),
        gm.getNInit(),
        gm.getSeed(),
        gm.getFeaturesCol(),
        gm.getWeightCol(),
        gm.getPredictionCol(),
        gm.getProbabilityCol(),
        gm.getLogLikelihoodCol(),
    ) == (4, "diag", 7, 0.5, 1e-3, "random", 3, 5, ["x", "y"], "w", "p", "q", "l")
    c = gm.copy({gm.k: 9})
    assert c.getK() == 9 and gm.getK() == 4 and c.uid == gm.uid
    text = gm.explainParams()
    for name in (
        "k",
        "covarianceType",
        "maxIter",
        "tol",
        "regCovar",
        "initMode",
        "nInit",
        "seed",
        "initialModel",
        "featuresCol",
        "weightCol",
        "logLikelihoodCol",
    ):
        assert f"{name}:" in text
    kw = GaussianMixture(k=5, covarianceType="spherical", featuresCol="v")
    assert (kw.getK(), kw.getCovarianceType(), kw.getFeaturesCol()) == (5, "spherical", "v")
    with pytest.raises(TypeError):
        GaussianMixture(3)  # keyword-only, as pyspark.ml


def test_model_carries_the_estimator_column_params(spark, data):
    X, labels, _ = data
    model = GaussianMixture(
        k=K,
        maxIter=1,
        predictionCol="c",
        probabilityCol="p",
        initialModel=warm_start(X, labels, "full"),
    ).fit(to_df(spark, X))
    assert model.getPredictionCol() == "c" and model.getProbabilityCol() == "p"
    assert model.getK() == K and model.numFeatures == D and model.hasSummary
    assert "GaussianMixtureModel(k=3, d=3" in repr(model)
    assert not GaussianMixtureModel.fromParameters(
        [1.0], np.zeros((1, 2)), np.eye(2)[None]
    ).hasSummary
