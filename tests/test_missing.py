"""``missingValues="marginalize"``: EM that integrates missing features out.

Truth: a row-by-row numpy EM written here from the formulas (Ghahramani & Jordan 1994;
Little & Rubin ch. 11) -- per row the marginal N(x_o | mu_o, Sigma_oo), the conditional
mean mu_m + Sigma_mo Sigma_oo^-1 (x_o - mu_o) filling the missing coordinates and the
conditional covariance Sigma_mm - Sigma_mo Sigma_oo^-1 Sigma_om added to the second
moment -- with scipy's multivariate normal density; never the project's own kernel.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from spark_em import GaussianMixture, GaussianMixtureModel, InvalidInputError
from spark_em.data.datasets import sample_mixture

K, D, N = 2, 3, 240
REG = 1e-6
ITERATIONS = 15
TYPES = ("full", "tied", "diag", "spherical")


# ------------------------------------------------------------------ the reference
def full_covariances(covariances, covariance_type, k, d):
    c = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "full":
        return c
    if covariance_type == "tied":
        return np.stack([c] * k)
    if covariance_type == "diag":
        return np.stack([np.diag(v) for v in c])
    return np.stack([np.eye(d) * v for v in c])


def reference_e_step(X, w, weights, means, covs):
    """Row by row: (total weighted log-likelihood, N_k, sum r x_hat, sum r (x_hat x_hat^T + C),
    log p(x_o) per row, responsibilities per row)."""
    n, d = X.shape
    k = len(weights)
    nk, sk, mk = np.zeros(k), np.zeros((k, d)), np.zeros((k, d, d))
    total, lls, resp = 0.0, np.zeros(n), np.zeros((n, k))
    for i in range(n):
        o = ~np.isnan(X[i])
        m = ~o
        lp = np.array(
            [
                np.log(weights[j])
                + multivariate_normal.logpdf(X[i, o], means[j, o], covs[j][np.ix_(o, o)])
                for j in range(k)
            ]
        )
        lls[i] = logsumexp(lp)
        r = np.exp(lp - lls[i])
        resp[i] = r
        total += w[i] * lls[i]
        for j in range(k):
            inv_oo = np.linalg.inv(covs[j][np.ix_(o, o)])
            x_hat = X[i].copy()
            x_hat[m] = means[j, m] + covs[j][np.ix_(m, o)] @ inv_oo @ (X[i, o] - means[j, o])
            cond = np.zeros((d, d))
            cond[np.ix_(m, m)] = (
                covs[j][np.ix_(m, m)] - covs[j][np.ix_(m, o)] @ inv_oo @ covs[j][np.ix_(o, m)]
            )
            nk[j] += w[i] * r[j]
            sk[j] += w[i] * r[j] * x_hat
            mk[j] += w[i] * r[j] * (np.outer(x_hat, x_hat) + cond)
    return total, nk, sk, mk, lls, resp


def reference_m_step(nk, sk, mk, covariance_type, reg):
    """Weights, means and covariances (sklearn's shapes) from the expected statistics."""
    k, d = sk.shape
    means = sk / nk[:, None]
    scatter = mk - nk[:, None, None] * np.einsum("ki,kj->kij", means, means)
    if covariance_type == "full":
        cov = scatter / nk[:, None, None] + reg * np.eye(d)
    elif covariance_type == "tied":
        cov = scatter.sum(axis=0) / nk.sum() + reg * np.eye(d)
    else:
        var = np.diagonal(scatter, axis1=1, axis2=2) / nk[:, None] + reg
        cov = var if covariance_type == "diag" else var.mean(axis=1)
    return nk / nk.sum(), means, cov


def reference_em(X, w, start, covariance_type, iterations, reg=REG):
    """``(mean log-likelihood per iteration, final (weights, means, covariances))``."""
    weights, means, cov = start
    history = []
    for _ in range(iterations):
        covs = full_covariances(cov, covariance_type, len(weights), X.shape[1])
        total, nk, sk, mk, _, _ = reference_e_step(X, w, weights, means, covs)
        history.append(total / w.sum())
        weights, means, cov = reference_m_step(nk, sk, mk, covariance_type, reg)
    return history, (weights, means, cov)


# ------------------------------------------------------------------ data
def with_holes(X, seed):
    """X with 25 % of the rows missing one feature and 10 % two, at random."""
    rng = np.random.default_rng(seed)
    X = X.copy()
    n, d = X.shape
    kind = rng.random(n)
    for i in range(n):
        holes = 1 if kind[i] < 0.25 else 2 if kind[i] < 0.35 else 0
        X[i, rng.choice(d, holes, replace=False)] = np.nan
    return X


def make_holes():
    """``(complete rows, the rows with holes, a start's means)``."""
    X, labels, _ = sample_mixture(N, k=K, d=D, covariance_type="full", seed=11, separation=5.0)
    Xm = with_holes(X, 3)
    means = np.stack([X[np.flatnonzero(labels == j)[0]] for j in range(K)])
    return X, Xm, means


@pytest.fixture(scope="module")
def holes():
    return make_holes()


def start_of(covariance_type, means):
    cov = {
        "full": np.stack([np.eye(D) * 2.0] * K),
        "tied": np.eye(D) * 2.0,
        "diag": np.full((K, D), 2.0),
        "spherical": np.full(K, 2.0),
    }[covariance_type]
    return np.full(K, 1.0 / K), means, cov


def frame(spark, Xm, form, partitions, tmp_path=None):
    """The rows as an array column with NaN, numeric columns with nulls, or Vectors with
    NaN, in ``partitions`` partitions; with ``tmp_path`` a plain Parquet scan of them."""
    if form == "columns":
        rows = [tuple(None if np.isnan(v) else float(v) for v in x) for x in Xm]
        df = spark.createDataFrame(rows, ", ".join(f"f{j} double" for j in range(D)))
        features = [f"f{j}" for j in range(D)]
    elif form == "vector":
        from pyspark.ml.linalg import Vectors

        df = spark.createDataFrame([(Vectors.dense(x.tolist()),) for x in Xm], ["features"])
        features = "features"
    else:
        df = spark.createDataFrame([(x.tolist(),) for x in Xm], "features array<double>")
        features = "features"
    df = df.repartition(partitions) if partitions > 1 else df.coalesce(1)
    if tmp_path is not None:
        path = str(tmp_path / f"{form}-{partitions}")
        df.write.parquet(path)
        df = spark.read.parquet(path)
    return df, features


# ------------------------------------------------------------------ 3: exact
CASES = [
    # (covariance type, store, form, partitions): every type in every store, each form
    (t, store, form, parts)
    for t in TYPES
    for store, form, parts in (
        ("local", "array", 1),
        ("spark", "columns", 3),
        ("parquet", "array" if t in ("full", "diag") else "columns", 3),
    )
] + [("full", "local", "vector", 2), ("diag", "spark", "array", 1)]


@pytest.mark.parametrize("covariance_type,store,form,partitions", CASES)
def test_em_equals_the_row_by_row_reference(
    spark, holes, tmp_path, covariance_type, store, form, partitions
):
    _, Xm, means = holes
    start = start_of(covariance_type, means)
    df, features = frame(spark, Xm, form, partitions, tmp_path if store == "parquet" else None)
    model = (
        GaussianMixture(
            k=K,
            covarianceType=covariance_type,
            maxIter=ITERATIONS,
            tol=0.0,
            regCovar=REG,
            featuresCol=features,
            blockCache=store,
            missingValues="marginalize",
        )
        .setInitialModel(GaussianMixtureModel.fromParameters(*start, covariance_type))
        .fit(df)
    )
    history, (weights, mu, cov) = reference_em(Xm, np.ones(N), start, covariance_type, ITERATIONS)
    assert model.summary.numIter == ITERATIONS
    np.testing.assert_allclose(model.summary.logLikelihoodHistory, history, rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.weights, weights, rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.means, mu, rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.covariances, cov, rtol=0, atol=1e-6)
    assert model.summary.numRows == N


def test_without_missing_values_marginalize_gives_the_same_model(spark, holes):
    X, _, _ = holes
    df, _ = frame(spark, X, "array", 2)
    models = [
        GaussianMixture(k=3, maxIter=20, seed=5, missingValues=mode).fit(df)
        for mode in ("invalid", "marginalize")
    ]
    for attr in ("weights", "means", "covariances"):
        np.testing.assert_allclose(
            getattr(models[1], attr), getattr(models[0], attr), rtol=0, atol=1e-12
        )
    assert models[1].summary.logLikelihoodHistory == pytest.approx(
        models[0].summary.logLikelihoodHistory, abs=1e-12
    )


@pytest.mark.parametrize("covariance_type", TYPES)
def test_observed_log_likelihood_never_decreases(spark, holes, covariance_type):
    _, Xm, _ = holes
    df, _ = frame(spark, Xm, "array", 2)
    model = GaussianMixture(
        k=3,
        covarianceType=covariance_type,
        maxIter=25,
        tol=0.0,
        regCovar=0.0,
        seed=2,
        missingValues="marginalize",
    ).fit(df)
    history = np.array(model.summary.logLikelihoodHistory)
    assert history.shape[0] == 25
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[1:]))


# ------------------------------------------------------------------ 1: the Param, validation
def test_invalid_is_the_default_and_nan_stays_invalid(spark, holes):
    _, Xm, _ = holes
    df, _ = frame(spark, Xm, "array", 1)
    assert GaussianMixture().getMissingValues() == "invalid"
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        GaussianMixture(k=K, maxIter=2).fit(df)
    with pytest.raises(ValueError, match="missingValues must be one of"):
        GaussianMixture(k=K, missingValues="impute").fit(df)


def test_rows_without_an_observed_feature_are_left_out_with_one_warning(spark, holes, caplog):
    _, Xm, means = holes
    rows = [(x.tolist(),) for x in Xm] + [([float("nan")] * D,), ([None] * D,)]
    df = spark.createDataFrame(rows, "features array<double>").coalesce(2)
    start = GaussianMixtureModel.fromParameters(*start_of("full", means))
    gm = GaussianMixture(k=K, maxIter=3, tol=0.0, missingValues="marginalize")
    with caplog.at_level(logging.WARNING, logger="spark_em"):
        model = gm.setInitialModel(start).fit(df)
    assert model.summary.numRowsSkipped == {"all_missing": 2}
    assert model.summary.numRows == N
    warned = [r for r in caplog.records if "every feature missing" in r.getMessage()]
    assert len(warned) == 1
    history, _ = reference_em(Xm, np.ones(N), start_of("full", means), "full", 3)
    np.testing.assert_allclose(model.summary.logLikelihoodHistory, history, atol=1e-6)


def test_infinity_huge_values_and_wrong_lengths_stay_invalid(spark):
    good = [[0.0, 1.0], [1.0, float("nan")], [2.0, 0.5], [0.5, 2.0]]
    gm = GaussianMixture(k=1, maxIter=2, missingValues="marginalize")
    for bad, what in (
        ([float("inf"), float("nan")], "NaN or infinite"),
        ([1e80, float("nan")], "beyond"),
        ([1.0], "vector length"),
    ):
        df = spark.createDataFrame([(x,) for x in good + [bad]], "features array<double>")
        with pytest.raises(InvalidInputError, match=what):
            gm.fit(df)
        model = gm.copy({gm.handleInvalid: "skip"}).fit(df)
        assert sum(model.summary.numRowsSkipped.values()) == 1


def test_a_feature_missing_in_every_row_is_an_error(spark):
    rows = [(float(i), None) for i in range(5)]
    df = spark.createDataFrame(rows, "a double, b double")
    with pytest.raises(InvalidInputError, match="feature 'b' is missing in every row"):
        GaussianMixture(k=1, featuresCol=["a", "b"], missingValues="marginalize").fit(df)


def test_the_param_is_saved_with_the_model_and_settable(spark, holes, tmp_path):
    _, Xm, _ = holes
    df, _ = frame(spark, Xm, "array", 1)
    model = GaussianMixture(k=K, maxIter=3, missingValues="marginalize").fit(df)
    assert model.getMissingValues() == "marginalize"
    path = str(tmp_path / "model")
    model.write().save(path)
    loaded = GaussianMixtureModel.load(path)
    assert loaded.getMissingValues() == "marginalize"
    assert loaded.setMissingValues("invalid").getMissingValues() == "invalid"


# ------------------------------------------------------------------ 4: scoring
def test_scoring_gives_the_marginal_posteriors_of_incomplete_rows(spark, holes):
    _, Xm, means = holes
    weights, mu, cov = start_of("full", means)
    cov = cov + np.array([[0.0, 0.5, 0.2], [0.5, 0.0, 0.3], [0.2, 0.3, 0.0]])
    model = GaussianMixtureModel.fromParameters(weights, mu, cov, "full")
    model.setMissingValues("marginalize").setLogLikelihoodCol("ll")
    df, _ = frame(spark, Xm, "array", 2)
    rows = model.transform(df).collect()
    got = {tuple(np.nan_to_num(r["features"], nan=1e300)): r for r in rows}
    _, _, _, _, lls, resp = reference_e_step(Xm, np.ones(N), weights, mu, cov)
    for x, ll, r in zip(Xm, lls, resp):
        row = got[tuple(np.nan_to_num(x, nan=1e300))]
        assert row["ll"] == pytest.approx(ll, abs=1e-9)
        np.testing.assert_allclose(row["probability"].toArray(), r, atol=1e-9)
        assert row["prediction"] == int(np.argmax(r))
    assert model.score(df) == pytest.approx(lls.mean(), abs=1e-9)
    i = int(np.flatnonzero(np.isnan(Xm).any(axis=1))[0])
    np.testing.assert_allclose(model.predictProbability(Xm[i]).toArray(), resp[i], atol=1e-9)
    assert model.predict(Xm[i]) == int(np.argmax(resp[i]))
    with pytest.raises(Exception, match="NaN or infinite"):
        model.setMissingValues("invalid").score(df)


# ------------------------------------------------------------------ 8: the jobs
def test_fit_and_score_jobs_take_missing_values(spark, holes, tmp_path):
    from spark_em.cli.main import run

    _, Xm, _ = holes
    df, _ = frame(spark, Xm, "array", 1)
    data = str(tmp_path / "in")
    df.write.parquet(data)
    model_dir, out = str(tmp_path / "model"), str(tmp_path / "scored")
    fit = ["--input", data, "--k", "2", "--max-iter", "5", "--model-out", model_dir]
    assert run("fit", fit + ["--quiet"]) == 1  # NaN are invalid by default
    report = str(tmp_path / "fit.json")
    marginalize = ["--quiet", "--missing-values", "marginalize", "--report-out", report]
    assert run("fit", fit + marginalize) == 0
    model = GaussianMixtureModel.load(model_dir)
    assert model.getMissingValues() == "marginalize"
    with open(report) as fh:
        counts = json.load(fh)["rows_missing_per_feature"]
    assert counts == {str(j): int(np.isnan(Xm[:, j]).sum()) for j in range(D)}
    assert model.summary.numMissingPerFeature == list(counts.values())
    args = ["--model", model_dir, "--input", data, "--output", out, "--log-likelihood-col", "ll"]
    assert run("score", args) == 0  # the model's own missingValues
    scored = spark.read.parquet(out).collect()
    _, _, _, _, lls, _ = reference_e_step(
        Xm, np.ones(N), model.weights, model.means, model.covariances
    )
    assert sorted(r["ll"] for r in scored) == pytest.approx(sorted(lls), abs=1e-9)
