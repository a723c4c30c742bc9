"""API scenarios run unchanged on a classic session and on a Spark Connect session.

pyspark allows one kind of session per Python process (a remote session cannot start while a
classic one runs, and starting one flips pyspark.ml into remote mode for the whole process).
So the Connect client lives in its own spawned process (:class:`ConnectClient`), which runs
the functions below by name and returns plain numpy results; the classic reference runs the
same functions in the pytest process on the shared local[2] session.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np

_SESSION = None


# ---------------------------------------------------------------------------------------
# The client process
# ---------------------------------------------------------------------------------------
def _init_client(url: str) -> None:
    global _SESSION
    from pyspark.sql import SparkSession

    _SESSION = SparkSession.builder.remote(url).getOrCreate()
    assert _SESSION.range(3).count() == 3  # a trivial query works


def _call(name: str, args: tuple, kwargs: dict):
    return globals()[name](_SESSION, *args, **kwargs)


class ConnectClient:
    """A spawned Python process holding one Spark Connect session to ``url``."""

    def __init__(self, url: str):
        ctx = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(
            1, mp_context=ctx, initializer=_init_client, initargs=(url,)
        )
        self.run("session_kind")  # fail early if the session cannot be created

    def submit(self, name: str, *args, **kwargs):
        """Start ``name(session, *args, **kwargs)`` in the client; returns a Future."""
        return self._pool.submit(_call, name, args, kwargs)

    def run(self, name: str, *args, timeout: float = 600, **kwargs):
        return self.submit(name, *args, **kwargs).result(timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------
# Scenarios: (spark, ...) -> picklable results
# ---------------------------------------------------------------------------------------
def session_kind(spark) -> dict:
    from spark_em.data.env import SparkEnv

    return {
        "type": f"{type(spark).__module__}.{type(spark).__name__}",
        "is_connect": SparkEnv.of(spark).connect,
    }


def read_data(spark, path: str, partitions: int = 3):
    # one input file -> one scan partition; repartition from it is deterministic, so
    # classic and Connect see the same rows in the same partitions and order
    return spark.read.parquet(path).repartition(partitions)


def estimator(**params):
    """A GaussianMixture that, where it has the choice, keeps its blocks in Spark's cache —
    the only layout on Connect and on clusters — so seeded per-block randomness (the
    ``random`` init) lines up between the compared sessions."""
    from spark_em import GaussianMixture

    gm = GaussianMixture(**params)
    if gm.hasParam("blockCache"):
        gm._set(blockCache="spark")
    return gm


def _model_result(model) -> dict:
    s = model.summary if model.hasSummary else None
    out = {
        "weights": model.weights,
        "means": model.means,
        "covariances": model.covariances,
        "precisionsCholesky": model.precisionsCholesky,
        "covarianceType": model.covarianceType,
    }
    if s is not None:
        out.update(
            logLikelihood=s.logLikelihood,
            history=np.array(s.logLikelihoodHistory),
            numIter=s.numIter,
            converged=s.converged,
            clusterSizes=list(s.clusterSizes),
        )
    return out


def fit(
    spark,
    path: str,
    params: dict,
    initial: dict | None = None,
    weight_col: str | None = None,
    score: bool = False,
) -> dict:
    """Fit; with ``score`` also transform / score / bic / aic / gaussiansDF on the same data."""
    from pyspark.sql import functions as F

    from spark_em import GaussianMixtureModel

    df = read_data(spark, path)
    gm = estimator(**params)
    if weight_col:
        df = df.withColumn(weight_col, 1.0 + F.abs(F.col("features")[0]) / 10.0)
        gm.setWeightCol(weight_col)
    if initial is not None:
        gm.setInitialModel(GaussianMixtureModel.fromParameters(**initial))
    model = gm.fit(df)
    out = _model_result(model)
    if score:
        model.setLogLikelihoodCol("logp")
        rows = (
            model.transform(df).orderBy("id").select("prediction", "probability", "logp").collect()
        )
        gaussians = model.gaussiansDF.collect()
        out.update(
            prediction=np.array([r["prediction"] for r in rows]),
            probability=np.array([r["probability"].toArray() for r in rows]),
            logp=np.array([r["logp"] for r in rows]),
            score=model.score(df),
            bic=model.bic(df),
            aic=model.aic(df),
            gaussian_means=np.array([g["mean"].toArray() for g in gaussians]),
            gaussian_covs=np.array([g["cov"].toArray() for g in gaussians]),
        )
    return out


def update(spark, path: str, params: dict) -> dict:
    """A fit with ``segmentCol`` (``day = id % 3``) on days 0 and 1, then ``model.update``
    on days 1 (refreshed) and 2 (new): the updated model, its segments and what the update
    reported of the new day."""
    from pyspark.sql import functions as F

    df = read_data(spark, path).withColumn("day", F.col("id") % 3)
    model = estimator(segmentCol="day", **params).fit(df.where("day < 2"))
    updated = model.update(df.where("day > 0"))
    out = _model_result(updated)
    out["segments"] = [tuple(s) for s in updated.segments]
    out["newSegments"] = updated.summary.update.get("newSegments")
    return out


def save_load(spark, data_path: str, model_paths: list[str], params: dict, initial: dict) -> dict:
    """Warm-started fit; save it to each path, check FileExistsError without overwrite,
    overwrite, load back; save and load the estimator (with its initialModel) too."""
    from spark_em import GaussianMixture, GaussianMixtureModel

    start = GaussianMixtureModel.fromParameters(**initial)
    est = estimator(initialModel=start, **params)
    model = est.fit(read_data(spark, data_path))
    out = {"model": _model_result(model), "loaded": [], "exists_errors": [], "estimators": []}
    for path in model_paths:
        model.write().save(path)
        try:
            model.write().save(path)
        except FileExistsError as exc:
            out["exists_errors"].append(str(exc))
        model.write().overwrite().save(path)
        loaded = GaussianMixtureModel.load(path)
        res = _model_result(loaded)
        res["params"] = {
            p.name: loaded.getOrDefault(p) for p in loaded.params if loaded.isDefined(p)
        }
        out["loaded"].append(res)
        est_path = path.rstrip("/") + "-estimator"
        est.write().overwrite().save(est_path)
        est2 = GaussianMixture.load(est_path)
        out["estimators"].append(
            {
                "k": est2.getK(),
                "maxIter": est2.getMaxIter(),
                "covarianceType": est2.getCovarianceType(),
                "initial_means": est2.getInitialModel().means,
            }
        )
    return out


def load_model(spark, path: str) -> dict:
    from spark_em import GaussianMixtureModel

    return _model_result(GaussianMixtureModel.load(path))


def dropin(spark, data_path: str, mllib_path: str, bad_path: str, n: int, seed: int) -> dict:
    """MLlib's saved model loaded, a sample drawn from it, a tampered directory's error, and
    a fit's summary predictions."""
    from pyspark.ml.functions import vector_to_array

    from spark_em import GaussianMixtureModel, ModelFormatError

    imported = GaussianMixtureModel.load(mllib_path)
    rows = (
        imported.sample(n, seed).select(vector_to_array("features").alias("x"), "label").collect()
    )
    try:
        GaussianMixtureModel.load(bad_path)
        error = None
    except ModelFormatError as exc:
        error = str(exc)
    df = read_data(spark, data_path)
    model = estimator(k=3, maxIter=2, tol=0.0).fit(df)
    predictions = model.summary.predictions.orderBy("id").select("prediction").collect()
    return {
        "imported": _model_result(imported),
        "sample": np.array([r["x"] for r in rows]),
        "labels": np.array([r["label"] for r in rows]),
        "error": error,
        "summary_predictions": np.array([r["prediction"] for r in predictions]),
        "model": _model_result(model),
    }


def pipeline(spark, path: str, save_path: str, params: dict) -> dict:
    """VectorAssembler + GaussianMixture in a Pipeline over numeric columns; save/load."""
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    df = read_data(spark, path)
    d = len(df.first()["features"])
    cols = [f"x{i}" for i in range(d)]
    flat = df.select("id", *[F.col("features")[i].alias(c) for i, c in enumerate(cols)])
    pipe = Pipeline(
        stages=[
            VectorAssembler(inputCols=cols, outputCol="vec"),
            estimator(featuresCol="vec", **params),
        ]
    )
    fitted = pipe.fit(flat)
    before = fitted.transform(flat).orderBy("id").select("prediction", "probability").collect()
    fitted.write().overwrite().save(save_path)
    reloaded = PipelineModel.load(save_path)
    after = reloaded.transform(flat).orderBy("id").select("prediction", "probability").collect()
    return {
        "model": _model_result(fitted.stages[-1]),
        "stage_types": [type(s).__name__ for s in reloaded.stages],
        "before": np.array([r["probability"].toArray() for r in before]),
        "after": np.array([r["probability"].toArray() for r in after]),
        "pred_before": np.array([r["prediction"] for r in before]),
        "pred_after": np.array([r["prediction"] for r in after]),
    }


def store_choice(spark, path: str, params: dict) -> dict:
    """Fits of the plain scan with the ``parquet`` store, of a selection of its columns with
    ``auto`` (a plain scan too: the Parquet store on a cluster or Connect), and of a filtered
    DataFrame with ``auto`` (Spark's cache); the store each fit used (from its progress)."""
    from spark_em import GaussianMixture
    from spark_em.progress import ValidationDone

    out = {}
    for name, block_cache, make in (
        ("parquet", "parquet", lambda: spark.read.parquet(path)),
        ("auto_plain", "auto", lambda: spark.read.parquet(path).select("features")),
        ("auto_filtered", "auto", lambda: spark.read.parquet(path).where("id >= 0")),
    ):
        seen = []
        gm = GaussianMixture(blockCache=block_cache, **params)
        gm.progress = lambda e: seen.append(e.store) if isinstance(e, ValidationDone) else None
        res = _model_result(gm.fit(make()))
        res["store"] = seen[0]
        out[name] = res
    return out


def concurrent_fits(spark, path: str, configs: list[dict]) -> dict:
    """Each config fitted alone, then all at once in threads sharing this session and the
    same DataFrame; the session's cache batch size (a value the user set) after each."""
    from concurrent.futures import ThreadPoolExecutor

    key = "spark.sql.inMemoryColumnarStorage.batchSize"
    old = spark.conf.get(key, None)
    spark.conf.set(key, "7777")
    try:
        df = read_data(spark, path)

        def run(params):
            return _model_result(estimator(**params).fit(df))

        alone = [run(p) for p in configs]
        batch_alone = spark.conf.get(key)
        with ThreadPoolExecutor(len(configs)) as pool:
            together = list(pool.map(run, configs))
        return {
            "alone": alone,
            "together": together,
            "batch_alone": batch_alone,
            "batch_together": spark.conf.get(key),
        }
    finally:
        if old is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, old)
