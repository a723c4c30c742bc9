"""The whole API over a real Spark Connect server, checked against classic Spark.

The server is pyspark's own ``sbin/start-connect-server.sh`` on a free loopback port; the
client runs in a spawned process (see :mod:`tests.scenarios`), the classic reference in this
process on the shared local[2] session.  Both read the same Parquet file, so every fit sees
the same rows in the same partitions: results must agree to 1e-9.
"""

from __future__ import annotations

import numpy as np
import pytest

from . import scenarios
from .servers import ConnectServer, write_id_features_parquet

pytestmark = pytest.mark.connect

TOL = dict(rtol=1e-9, atol=1e-9)


@pytest.fixture(scope="session")
def connect_server(tmp_path_factory):
    server = ConnectServer(tmp_path_factory.mktemp("connect-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(connect_server):
    try:
        c = scenarios.ConnectClient(connect_server.url)
    except Exception as exc:
        raise RuntimeError(
            f"cannot use {connect_server.url}: {exc}\nserver log:\n{connect_server.log_tail()}"
        ) from exc
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """600 rows, d=3, three components; one Parquet file with ``id`` and ``features``."""
    from spark_em.data.datasets import sample_mixture

    X, labels, truth = sample_mixture(600, k=3, d=3, seed=11, separation=5.0)
    path = tmp_path_factory.mktemp("connect-data") / "data.parquet"
    return write_id_features_parquet(path, X), X, truth


def assert_same_model(a: dict, b: dict) -> None:
    assert a["covarianceType"] == b["covarianceType"]
    for key in ("weights", "means", "covariances", "precisionsCholesky"):
        np.testing.assert_allclose(a[key], b[key], **TOL, err_msg=key)
    if "history" in a or "history" in b:
        np.testing.assert_allclose(a["history"], b["history"], **TOL)
        np.testing.assert_allclose(a["logLikelihood"], b["logLikelihood"], **TOL)
        assert (a["numIter"], a["converged"], a["clusterSizes"]) == (
            b["numIter"],
            b["converged"],
            b["clusterSizes"],
        )


def test_session_type_is_detected(client, spark):
    remote = client.run("session_kind")
    assert remote["is_connect"] and remote["type"].startswith("pyspark.sql.connect")
    assert not scenarios.session_kind(spark)["is_connect"]


def both(client, spark, name, *args, **kwargs):
    """Run scenario ``name`` on Connect (in the client process) and on classic Spark (here)
    at the same time; returns (connect result, classic result)."""
    future = client.submit(name, *args, **kwargs)
    local = getattr(scenarios, name)(spark, *args, **kwargs)
    return future.result(timeout=900), local


# every covariance type and every init mode at least once; nInit, weights and scoring too
FIT_CASES = [
    ("full", "kmeans", 1, None, False),
    ("tied", "k-means++", 2, None, False),
    ("diag", "random", 1, "w", True),
    ("spherical", "random_from_data", 2, None, False),
]


@pytest.mark.parametrize(
    "cov,init,n_init,weight_col,score", FIT_CASES, ids=[f"{c[0]}-{c[1]}" for c in FIT_CASES]
)
def test_fit_matches_classic(client, spark, data, cov, init, n_init, weight_col, score):
    path, X, _ = data
    params = dict(k=3, covarianceType=cov, initMode=init, nInit=n_init, seed=5, maxIter=4, tol=1e-6)
    remote, local = both(client, spark, "fit", path, params, weight_col=weight_col, score=score)
    assert_same_model(remote, local)
    assert remote["numIter"] >= 2
    if score:
        check_scores(remote, local, X, cov)


def check_scores(remote: dict, local: dict, X: np.ndarray, cov: str) -> None:
    """transform / score / bic / aic / gaussiansDF: Connect == classic, and == sklearn."""
    for key in ("probability", "logp", "score", "bic", "aic", "gaussian_means", "gaussian_covs"):
        np.testing.assert_allclose(remote[key], local[key], **TOL, err_msg=key)
    np.testing.assert_array_equal(remote["prediction"], local["prediction"])
    # independent truth: sklearn with the fitted parameters, on the same rows (unweighted)
    from sklearn.mixture import GaussianMixture as SkGM

    sk = SkGM(n_components=len(remote["weights"]), covariance_type=cov)
    sk.weights_, sk.means_ = remote["weights"], remote["means"]
    sk.covariances_, sk.precisions_cholesky_ = remote["covariances"], remote["precisionsCholesky"]
    sk.n_features_in_ = X.shape[1]
    np.testing.assert_allclose(remote["probability"], sk.predict_proba(X), rtol=1e-7, atol=1e-10)
    np.testing.assert_array_equal(remote["prediction"], sk.predict(X))
    np.testing.assert_allclose(remote["logp"], sk.score_samples(X), rtol=1e-9)


def test_warm_start_save_load_local_path_and_file_uri(client, spark, data, tmp_path):
    path, _, truth = data
    initial = dict(
        weights=truth["weights"],
        means=truth["means"] + 0.5,
        covariances=truth["covariances"],
        covarianceType="full",
    )
    params = dict(k=3, covarianceType="full", maxIter=3, tol=0.0)
    targets = [str(tmp_path / "plain" / "model"), (tmp_path / "uri" / "model").as_uri()]
    assert targets[1].startswith("file:///")
    out = client.submit("save_load", path, targets, params, initial)
    local = scenarios.fit(spark, path, params, initial=initial)
    out = out.result(timeout=900)
    assert_same_model(out["model"], local)  # warm start: Connect == classic
    assert out["model"]["numIter"] == 3
    assert len(out["exists_errors"]) == 2
    assert all("already exists" in msg for msg in out["exists_errors"])
    for loaded, est in zip(out["loaded"], out["estimators"]):
        assert_same_model(loaded, out["model"])
        assert loaded["params"]["featuresCol"] == "features"
        assert (est["k"], est["maxIter"], est["covarianceType"]) == (3, 3, "full")
        np.testing.assert_array_equal(est["initial_means"], initial["means"])
    # what Connect wrote, classic Spark reads (same files, Spark's formats)
    for target in targets:
        assert_same_model(scenarios.load_model(spark, target), out["model"])


def test_pipeline_fit_save_load(client, spark, data, tmp_path):
    path, _, _ = data
    params = dict(k=3, covarianceType="full", seed=2, maxIter=3)
    future = client.submit("pipeline", path, str(tmp_path / "remote-pipe"), params)
    local = scenarios.pipeline(spark, path, str(tmp_path / "local-pipe"), params)
    remote = future.result(timeout=900)
    assert remote["stage_types"] == ["VectorAssembler", "GaussianMixtureModel"]
    assert_same_model(remote["model"], local["model"])
    np.testing.assert_allclose(remote["after"], remote["before"], **TOL)
    np.testing.assert_array_equal(remote["pred_after"], remote["pred_before"])
    np.testing.assert_allclose(remote["before"], local["before"], **TOL)


def test_mllib_import_sample_checked_load_and_summary_over_connect(client, spark, data, tmp_path):
    import warnings

    from pyspark.ml.clustering import GaussianMixture as MLlibGM
    from pyspark.ml.functions import array_to_vector

    from spark_em import ConvergenceWarning, GaussianMixtureModel

    path, X, truth = data
    mllib_path = str(tmp_path / "mllib")
    vectors = spark.read.parquet(path).select(array_to_vector("features").alias("features"))
    MLlibGM(k=3, seed=1, maxIter=5).fit(vectors).save(mllib_path)
    bad = tmp_path / "bad"
    GaussianMixtureModel.fromParameters(
        truth["weights"], truth["means"], truth["covariances"]
    ).save(str(bad))
    (bad / "data" / "stray.txt").write_text("x")
    remote = client.submit("dropin", path, mllib_path, str(bad), 3000, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local = scenarios.dropin(spark, path, mllib_path, str(bad), 3000, 7)
    remote = remote.result(timeout=900)
    assert_same_model(remote["imported"], local["imported"])
    # the same (n, seed) draws the same rows on both sessions
    np.testing.assert_array_equal(remote["sample"], local["sample"])
    np.testing.assert_array_equal(remote["labels"], local["labels"])
    assert remote["error"] == local["error"] and "unexpected files" in remote["error"]
    assert_same_model(remote["model"], local["model"])
    np.testing.assert_array_equal(remote["summary_predictions"], local["summary_predictions"])
    assert len(remote["summary_predictions"]) == len(X)


def test_fit_job_over_connect(connect_server, spark, data, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from spark_em import GaussianMixtureModel

    from .servers import base_env

    path, X, _ = data
    job = Path(__file__).resolve().parents[1] / "jobs" / "fit.py"
    model_out, pred_out = tmp_path / "model", (tmp_path / "predictions").as_uri()
    report = tmp_path / "report.json"
    args = [
        sys.executable,
        str(job),
        "--remote",
        connect_server.url,
        "--input",
        path,
        "--k",
        "3",
        "--seed",
        "5",
        "--max-iter",
        "2",
        "--tol",
        "0",
        "--model-out",
        str(model_out),
        "--predictions-out",
        pred_out,
        "--report-out",
        str(report),
    ]
    res = subprocess.run(args, env=base_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    assert f"model written to {model_out}" in res.stdout
    assert "[run 0] iteration   2" in res.stderr and "Traceback" not in res.stderr
    import json

    rep = json.loads(report.read_text())
    assert rep["spark"]["kind"] == "connect" and rep["iterations"] == 2
    # an existing output without --overwrite: refused before the fit, on the server's paths
    again = subprocess.run(args, env=base_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "already exists" in again.stderr.strip().splitlines()[-1]
    model = GaussianMixtureModel.load(str(model_out))
    reference = scenarios.estimator(k=3, seed=5, maxIter=2, tol=0.0).fit(spark.read.parquet(path))
    for key in ("weights", "means", "covariances"):
        np.testing.assert_allclose(getattr(model, key), getattr(reference, key), **TOL)
    assert spark.read.parquet(pred_out).count() == len(X)


def test_parquet_store_over_connect(client, spark, data):
    """Over Connect the plain Parquet scan is recognised from the client-side plan and read
    by the server's tasks themselves; the fits equal classic Spark's (any store)."""
    path, _, _ = data
    params = dict(k=3, seed=5, maxIter=4, tol=0.0)
    remote = client.run("store_choice", path, params)
    assert remote["parquet"]["store"] == "parquet"
    assert remote["auto_plain"]["store"] == "parquet"
    assert remote["auto_filtered"]["store"] == "spark"
    local = scenarios.fit(spark, path, params)  # classic, Spark's cache
    for name in ("parquet", "auto_plain", "auto_filtered"):
        res = remote[name]
        for key in ("weights", "means", "covariances"):
            np.testing.assert_allclose(res[key], local[key], **TOL, err_msg=f"{name} {key}")


def test_concurrent_fits_leave_the_session_settings_alone(client, data):
    """Two fits of the same DataFrame in two threads of one Connect session: each gives the
    model it gives alone, and the session's cache batch size stays the user's."""
    path, _, _ = data
    configs = [
        dict(k=3, seed=1, maxIter=2, tol=0.0),
        dict(k=2, seed=2, maxIter=2, tol=0.0, covarianceType="diag"),
    ]
    out = client.run("concurrent_fits", path, configs, timeout=900)
    assert out["batch_alone"] == out["batch_together"] == "7777"
    for together, alone in zip(out["together"], out["alone"]):
        for key in ("weights", "means", "covariances", "history"):
            np.testing.assert_array_equal(together[key], alone[key], err_msg=key)


def test_missing_values_over_connect(client, spark, data, tmp_path):
    """missingValues='marginalize' over Connect: NaN features are integrated out as on
    classic Spark (whose EM equals the row-by-row reference of tests/test_missing.py), with
    nInit restarts and the default start searched on the sample's complete rows."""
    _, X, _ = data
    rng = np.random.default_rng(4)
    Xm = X.copy()
    rows = rng.choice(len(X), 150, replace=False)
    Xm[rows, rng.integers(0, X.shape[1], size=150)] = np.nan
    path = write_id_features_parquet(tmp_path / "holes.parquet", Xm)
    params = dict(k=3, seed=5, nInit=2, maxIter=4, tol=0.0, missingValues="marginalize")
    remote, local = both(client, spark, "fit", path, params)
    assert_same_model(remote, local)
    assert remote["numIter"] == 4


def test_update_over_connect(client, spark, data):
    """model.update over Connect equals classic Spark's, both on Spark's cache, whose blocks
    keep each segment's rows apart: the segments' statistics and the new day's score come
    from the update's own passes (on classic Spark, equal to the numpy reference of
    incremental EM: tests/test_update.py)."""
    path, _, _ = data
    remote, local = both(client, spark, "update", path, dict(k=3, seed=5, maxIter=5, tol=0.0))
    assert_same_model(remote, local)
    assert remote["segments"] == local["segments"]
    assert [s[0] for s in local["segments"]] == [0, 1, 2]
    new, ref = remote["newSegments"], local["newSegments"]
    assert new["keys"] == ref["keys"] == ["2"]
    for key in ("weightSum", "logLikelihood"):
        assert new[key] == pytest.approx(ref[key], rel=1e-9)
