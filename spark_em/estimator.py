"""pyspark.ml-style API: :class:`GaussianMixture` (an Estimator) and :class:`GaussianMixtureModel`."""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.linalg import DenseMatrix, DenseVector, Vector
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import (
    DefaultParamsReader,
    DefaultParamsWriter,
    MLReadable,
    MLReader,
    MLWritable,
    MLWriter,
)
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from .arrow_blocks import list_to_matrix
from .columns import feature_array, quoted
from .distributed import BLOCK_CACHES, prepare
from .errors import InvalidInputError
from .em import initialise, run_em
from .fs import atomic_write
from .gaussian import (
    COVARIANCE_TYPES,
    GaussianParams,
    check_covariance_type,
    n_parameters,
)
from .init import INIT_MODES
from .progress import InitialisationDone, IterationInfo, ValidationDone

__all__ = ["GaussianMixture", "GaussianMixtureModel", "GaussianMixtureSummary"]


def _to_features_col(value: Any) -> str | list[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise TypeError(f"featuresCol must be a column name or a list of column names, got {value!r}")


def _to_optional_int(value: Any) -> int | None:
    return None if value is None else TypeConverters.toInt(value)


def _to_optional_string(value: Any) -> str | None:
    # None is a valid value (no weight column, no log-likelihood column); pyspark's own
    # toString rejects it, which broke loading a saved stage whose param was set to None.
    return None if value is None else TypeConverters.toString(value)


def _identity(value: Any) -> Any:
    return value


class _ColumnParams(Params):
    """Column parameters shared by the estimator and the model."""

    featuresCol = Param(
        Params._dummy(),
        "featuresCol",
        "features: a Vector column, an array<double>/array<float> column, or a list of "
        "numeric column names",
        typeConverter=_to_features_col,
    )
    weightCol = Param(
        Params._dummy(),
        "weightCol",
        "optional column of non-negative row weights",
        typeConverter=_to_optional_string,
    )
    predictionCol = Param(
        Params._dummy(), "predictionCol", "output column: most probable component (int)",
        typeConverter=TypeConverters.toString,
    )
    probabilityCol = Param(
        Params._dummy(), "probabilityCol",
        "output column: posterior probability of each component (Vector)",
        typeConverter=TypeConverters.toString,
    )
    logLikelihoodCol = Param(
        Params._dummy(), "logLikelihoodCol",
        "optional output column: per-row log-density log p(x) (double)",
        typeConverter=_to_optional_string,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(
            featuresCol="features",
            weightCol=None,
            predictionCol="prediction",
            probabilityCol="probability",
            logLikelihoodCol=None,
        )

    def getFeaturesCol(self) -> str | list[str]:
        return self.getOrDefault(self.featuresCol)

    def getWeightCol(self) -> str | None:
        return self.getOrDefault(self.weightCol)

    def getPredictionCol(self) -> str:
        return self.getOrDefault(self.predictionCol)

    def getProbabilityCol(self) -> str:
        return self.getOrDefault(self.probabilityCol)

    def getLogLikelihoodCol(self) -> str | None:
        return self.getOrDefault(self.logLikelihoodCol)

    def setFeaturesCol(self, value):
        return self._set(featuresCol=value)

    def setWeightCol(self, value):
        return self._set(weightCol=value)

    def setPredictionCol(self, value):
        return self._set(predictionCol=value)

    def setProbabilityCol(self, value):
        return self._set(probabilityCol=value)

    def setLogLikelihoodCol(self, value):
        return self._set(logLikelihoodCol=value)


class _GaussianMixtureParams(_ColumnParams):
    k = Param(Params._dummy(), "k", "number of components (>= 1)", TypeConverters.toInt)
    covarianceType = Param(
        Params._dummy(), "covarianceType",
        f"covariance type, one of {COVARIANCE_TYPES}", TypeConverters.toString,
    )
    maxIter = Param(Params._dummy(), "maxIter", "maximum EM iterations (>= 0)", TypeConverters.toInt)
    tol = Param(
        Params._dummy(), "tol",
        "stop when the change in mean log-likelihood per row is below tol", TypeConverters.toFloat,
    )
    regCovar = Param(
        Params._dummy(), "regCovar", "non-negative regularisation added to covariance diagonals",
        TypeConverters.toFloat,
    )
    initMode = Param(
        Params._dummy(), "initMode", f"initialisation, one of {INIT_MODES}", TypeConverters.toString
    )
    nInit = Param(
        Params._dummy(), "nInit", "number of initialisations; the best log-likelihood is kept",
        TypeConverters.toInt,
    )
    seed = Param(Params._dummy(), "seed", "random seed (None: not reproducible)", _to_optional_int)
    initialModel = Param(
        Params._dummy(), "initialModel",
        "a GaussianMixtureModel to start EM from (warm start)", _identity,
    )
    aggregationDepth = Param(
        Params._dummy(), "aggregationDepth", "depth of the tree reduction (>= 1)",
        TypeConverters.toInt,
    )
    initSampleSize = Param(
        Params._dummy(), "initSampleSize",
        "rows sampled (with probability proportional to weight) for k-means style initialisation",
        TypeConverters.toInt,
    )
    blockCache = Param(
        Params._dummy(), "blockCache",
        "where the prepared feature blocks live during a fit: 'auto' (local files read by "
        "the tasks in local mode, Spark's cache otherwise) or 'spark' (always Spark's "
        "MEMORY_AND_DISK cache)",
        TypeConverters.toString,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(
            k=2, covarianceType="full", maxIter=100, tol=1e-3, regCovar=1e-6, initMode="kmeans",
            nInit=1, seed=None, initialModel=None, aggregationDepth=2, initSampleSize=10_000,
            blockCache="auto",
        )

    def getK(self) -> int:
        return self.getOrDefault(self.k)

    def getCovarianceType(self) -> str:
        return self.getOrDefault(self.covarianceType)

    def getMaxIter(self) -> int:
        return self.getOrDefault(self.maxIter)

    def getTol(self) -> float:
        return self.getOrDefault(self.tol)

    def getRegCovar(self) -> float:
        return self.getOrDefault(self.regCovar)

    def getInitMode(self) -> str:
        return self.getOrDefault(self.initMode)

    def getNInit(self) -> int:
        return self.getOrDefault(self.nInit)

    def getSeed(self) -> int | None:
        return self.getOrDefault(self.seed)

    def getInitialModel(self) -> "GaussianMixtureModel | None":
        return self.getOrDefault(self.initialModel)

    def getAggregationDepth(self) -> int:
        return self.getOrDefault(self.aggregationDepth)

    def getInitSampleSize(self) -> int:
        return self.getOrDefault(self.initSampleSize)

    def getBlockCache(self) -> str:
        return self.getOrDefault(self.blockCache)


class GaussianMixtureSummary:
    """Training summary, as MLlib's.

    * ``logLikelihood``: total weighted log-likelihood of the training data at the last
      iteration's E-step (MLlib's ``summary.logLikelihood``; sklearn's ``lower_bound_`` times
      the weight sum), ``-inf`` when no iteration ran.  The log-likelihood under the fitted
      parameters is ``model.score(df)`` times the weight sum.
    * ``logLikelihoodHistory``: the mean weighted log-likelihood per row at each iteration
      (before that iteration's M-step, as sklearn's lower bound).
    * ``clusterSizes``: training rows by most probable component under the fitted
      parameters.  As in MLlib, the fit does not compute them: the first access runs one
      pass over the training DataFrame, and the result is kept (and saved with the model).
    """

    def __init__(
        self,
        k: int,
        logLikelihoodHistory: list[float],
        numIter: int,
        converged: bool,
        weightSum: float = 0.0,
        numRows: int = 0,
        clusterSizes: list[int] | None = None,
        *,
        cluster_sizes_fn: Callable[[], list[int]] | None = None,
        **_ignored: Any,  # fields of older saved summaries (a logLikelihood under the final parameters)
    ) -> None:
        self.k = k
        self.logLikelihoodHistory = list(logLikelihoodHistory)
        self.numIter = numIter
        self.converged = converged
        self.weightSum = weightSum
        self.numRows = numRows
        self._cluster_sizes = None if clusterSizes is None else [int(c) for c in clusterSizes]
        self._cluster_sizes_fn = cluster_sizes_fn

    @property
    def logLikelihood(self) -> float:
        if not self.logLikelihoodHistory:
            return float("-inf")
        return self.logLikelihoodHistory[-1] * self.weightSum

    @property
    def clusterSizes(self) -> list[int]:
        if self._cluster_sizes is None:
            if self._cluster_sizes_fn is None:
                raise RuntimeError(
                    "clusterSizes were not computed before this model was saved; count "
                    "model.transform(df)'s prediction column instead"
                )
            self._cluster_sizes = self._cluster_sizes_fn()
            self._cluster_sizes_fn = None  # drop the reference to the training DataFrame
        return list(self._cluster_sizes)

    def to_json(self) -> dict:
        """What is saved with the model: cluster sizes only if they were computed."""
        return {
            "k": self.k, "logLikelihoodHistory": self.logLikelihoodHistory,
            "numIter": self.numIter, "converged": self.converged,
            "weightSum": self.weightSum, "numRows": self.numRows,
            "clusterSizes": self._cluster_sizes,
        }

    def __repr__(self) -> str:
        return (f"GaussianMixtureSummary(k={self.k}, numIter={self.numIter}, "
                f"converged={self.converged}, logLikelihood={self.logLikelihood:.6g})")


class GaussianMixture(Estimator, _GaussianMixtureParams, MLReadable, MLWritable):
    """Gaussian mixture model fitted by EM on a Spark DataFrame.

    >>> gm = GaussianMixture(k=3, covarianceType="diag", seed=1)
    >>> model = gm.fit(df)                                  # doctest: +SKIP
    >>> model.transform(df).select("prediction", "probability")  # doctest: +SKIP

    Parameters match pyspark.ml (camelCase); shapes and numerics match scikit-learn's
    ``GaussianMixture``.  ``progress`` (not a Param) is an optional callable receiving the
    events of :mod:`spark_em.progress` (validation done, initialisation done, each EM
    iteration).
    """

    @keyword_only
    def __init__(
        self,
        *,
        k: int = 2,
        covarianceType: str = "full",
        maxIter: int = 100,
        tol: float = 1e-3,
        regCovar: float = 1e-6,
        initMode: str = "kmeans",
        nInit: int = 1,
        seed: int | None = None,
        initialModel: "GaussianMixtureModel | None" = None,
        featuresCol: str | Sequence[str] = "features",
        weightCol: str | None = None,
        predictionCol: str = "prediction",
        probabilityCol: str = "probability",
        logLikelihoodCol: str | None = None,
        aggregationDepth: int = 2,
        initSampleSize: int = 10_000,
        blockCache: str = "auto",
    ) -> None:
        super().__init__()
        self.progress: Callable[[IterationInfo], None] | None = None
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, **kwargs: Any) -> "GaussianMixture":
        return self._set(**kwargs)

    def setK(self, value: int): return self._set(k=value)
    def setCovarianceType(self, value: str): return self._set(covarianceType=value)
    def setMaxIter(self, value: int): return self._set(maxIter=value)
    def setTol(self, value: float): return self._set(tol=value)
    def setRegCovar(self, value: float): return self._set(regCovar=value)
    def setInitMode(self, value: str): return self._set(initMode=value)
    def setNInit(self, value: int): return self._set(nInit=value)
    def setSeed(self, value: int | None): return self._set(seed=value)
    def setInitialModel(self, value): return self._set(initialModel=value)
    def setAggregationDepth(self, value: int): return self._set(aggregationDepth=value)
    def setInitSampleSize(self, value: int): return self._set(initSampleSize=value)
    def setBlockCache(self, value: str): return self._set(blockCache=value)

    def _check_params(self) -> None:
        k = self.getK()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        check_covariance_type(self.getCovarianceType())
        if self.getInitMode() not in INIT_MODES:
            raise ValueError(f"initMode must be one of {INIT_MODES}, got {self.getInitMode()!r}")
        for name, low in (("maxIter", 0), ("nInit", 1), ("aggregationDepth", 1), ("initSampleSize", 1)):
            value = self.getOrDefault(getattr(self, name))
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        for name in ("tol", "regCovar"):
            value = self.getOrDefault(getattr(self, name))
            if not (value >= 0 and np.isfinite(value)):
                raise ValueError(f"{name} must be a non-negative number, got {value}")
        if self.getBlockCache() not in BLOCK_CACHES:
            raise ValueError(f"blockCache must be one of {BLOCK_CACHES}, got {self.getBlockCache()!r}")
        init = self.getInitialModel()
        if init is not None and not isinstance(init, GaussianMixtureModel):
            raise TypeError("initialModel must be a GaussianMixtureModel")

    def _fit(self, dataset: DataFrame) -> "GaussianMixtureModel":
        self._check_params()
        k, ct = self.getK(), self.getCovarianceType()
        rng = np.random.default_rng(self.getSeed())
        sample_seed, *init_seeds = (int(s) for s in rng.integers(0, 2**31 - 1, 1 + self.getNInit()))
        progress = getattr(self, "progress", None)
        t0 = time.perf_counter()
        data = prepare(
            dataset,
            self.getFeaturesCol(),
            self.getWeightCol(),
            sample_size=max(self.getInitSampleSize(), k),
            seed=sample_seed,
            aggregation_depth=self.getAggregationDepth(),
            block_cache=self.getBlockCache(),
        )
        try:
            if k > data.n_rows:
                raise InvalidInputError(
                    f"k={k} is larger than the number of valid rows ({data.n_rows}) in "
                    f"featuresCol {self.getFeaturesCol()!r}"
                )
            if progress is not None:
                progress(ValidationDone(
                    rows=data.n_rows, weight_sum=data.weight_sum, bad_rows={},
                    seconds=time.perf_counter() - t0,
                    store="local" if data.block_dir is not None else "spark",
                ))
            t0 = time.perf_counter()
            init = self.getInitialModel()
            if init is not None:
                starts = [self._check_initial_model(init, data.d)]
            else:
                starts = initialise(
                    data, k, ct, self.getRegCovar(), self.getInitMode(), init_seeds
                )
            if progress is not None:
                progress(InitialisationDone(
                    runs=len(starts), seconds=time.perf_counter() - t0,
                    mode="initialModel" if init is not None else self.getInitMode(),
                ))
            result = run_em(
                data, starts, max_iter=self.getMaxIter(), tol=self.getTol(),
                reg_covar=self.getRegCovar(), progress=progress,
            )
        finally:
            data.unpersist()
        summary = GaussianMixtureSummary(
            k=k,
            logLikelihoodHistory=result.log_likelihood_history,
            numIter=result.num_iter,
            converged=result.converged,
            weightSum=result.weight_sum,
            numRows=result.n_rows,
        )
        model = self._copyValues(GaussianMixtureModel(result.params, summary))
        summary._cluster_sizes_fn = lambda: model._cluster_sizes(dataset)
        return model

    def _check_initial_model(self, init: "GaussianMixtureModel", d: int) -> GaussianParams:
        p = init._gaussian
        if p.k != self.getK():
            raise ValueError(f"initialModel has k={p.k} but k={self.getK()}")
        if p.d != d:
            raise ValueError(
                f"initialModel has dimension {p.d} but featuresCol {self.getFeaturesCol()!r} "
                f"has dimension {d}"
            )
        if p.covariance_type != self.getCovarianceType():
            raise ValueError(
                f"initialModel has covarianceType {p.covariance_type!r} but covarianceType is "
                f"{self.getCovarianceType()!r}"
            )
        return p

    def copy(self, extra=None) -> "GaussianMixture":
        that = super().copy(extra)
        that.progress = getattr(self, "progress", None)
        return that

    def write(self) -> MLWriter:
        return _EstimatorWriter(self)

    @classmethod
    def read(cls) -> MLReader:
        return _EstimatorReader(cls)


class GaussianMixtureModel(Model, _ColumnParams, MLReadable, MLWritable):
    """A fitted Gaussian mixture.

    Arrays use scikit-learn's shapes: ``weights (k,)``, ``means (k, d)``, ``covariances`` —
    full ``(k, d, d)``, tied ``(d, d)``, diag ``(k, d)``, spherical ``(k,)`` — and
    ``precisionsCholesky`` likewise.
    """

    def __init__(
        self, params: GaussianParams | None = None, summary: GaussianMixtureSummary | None = None
    ) -> None:
        super().__init__()
        self._gaussian = params
        self._summary = summary

    # ------------------------------------------------------------------ parameters
    @property
    def weights(self) -> np.ndarray:
        return self._gaussian.weights

    @property
    def means(self) -> np.ndarray:
        return self._gaussian.means

    @property
    def covariances(self) -> np.ndarray:
        return self._gaussian.covariances

    @property
    def precisionsCholesky(self) -> np.ndarray:
        return self._gaussian.precisions_cholesky

    @property
    def covarianceType(self) -> str:
        return self._gaussian.covariance_type

    def getK(self) -> int:
        return self._gaussian.k

    @property
    def numFeatures(self) -> int:
        return self._gaussian.d

    @property
    def hasSummary(self) -> bool:
        return self._summary is not None

    @property
    def summary(self) -> GaussianMixtureSummary:
        if self._summary is None:
            raise RuntimeError("No training summary available for this GaussianMixtureModel")
        return self._summary

    def full_covariances(self) -> np.ndarray:
        """Covariances expanded to ``(k, d, d)`` whatever the covariance type."""
        p = self._gaussian
        k, d = p.k, p.d
        c = p.covariances
        if p.covariance_type == "full":
            return c.copy()
        if p.covariance_type == "tied":
            return np.broadcast_to(c, (k, d, d)).copy()
        if p.covariance_type == "diag":
            return np.stack([np.diag(v) for v in c])
        return np.stack([np.eye(d) * v for v in c])

    @property
    def gaussiansDF(self) -> DataFrame:
        """DataFrame of the components: ``mean`` (DenseVector), ``cov`` (DenseMatrix d x d)."""
        from pyspark.ml.linalg import MatrixUDT, VectorUDT
        from pyspark.sql.types import StructField, StructType

        spark = SparkSession.active()
        d = self.numFeatures
        rows = [
            (DenseVector(m), DenseMatrix(d, d, c.ravel(order="F").tolist()))
            for m, c in zip(self.means, self.full_covariances())
        ]
        schema = StructType([StructField("mean", VectorUDT()), StructField("cov", MatrixUDT())])
        return spark.createDataFrame(rows, schema)

    @classmethod
    def fromParameters(
        cls, weights, means, covariances, covarianceType: str = "full", regCovar: float | None = None
    ) -> "GaussianMixtureModel":
        """A model from explicit parameters (sklearn shapes); e.g. to warm-start a fit."""
        return cls(GaussianParams.from_covariances(weights, means, covariances, covarianceType, regCovar))

    def toSklearn(self):
        """An equivalent fitted ``sklearn.mixture.GaussianMixture`` (needs scikit-learn)."""
        from sklearn.mixture import GaussianMixture as SkGM

        p = self._gaussian
        est = SkGM(n_components=p.k, covariance_type=p.covariance_type)
        est.weights_ = p.weights.copy()
        est.means_ = p.means.copy()
        est.covariances_ = p.covariances.copy()
        est.precisions_cholesky_ = p.precisions_cholesky.copy()
        if p.covariance_type == "full":
            est.precisions_ = np.einsum("kij,klj->kil", p.precisions_cholesky, p.precisions_cholesky)
        elif p.covariance_type == "tied":
            est.precisions_ = p.precisions_cholesky @ p.precisions_cholesky.T
        else:
            est.precisions_ = p.precisions_cholesky**2
        est.converged_ = bool(self._summary.converged) if self._summary else True
        est.n_iter_ = int(self._summary.numIter) if self._summary else 0
        est.lower_bound_ = (
            self._summary.logLikelihoodHistory[-1]
            if self._summary and self._summary.logLikelihoodHistory else -np.inf
        )
        est.n_features_in_ = p.d
        return est

    @classmethod
    def fromSklearn(cls, est) -> "GaussianMixtureModel":
        """A model from a fitted ``sklearn.mixture.GaussianMixture``."""
        return cls.fromParameters(est.weights_, est.means_, est.covariances_, est.covariance_type)

    # ------------------------------------------------------------------ local prediction
    def _as_matrix(self, X) -> np.ndarray:
        if isinstance(X, Vector):
            X = X.toArray()
        X = np.asarray(X, dtype=np.float64)
        return X.reshape(1, -1) if X.ndim == 1 else X

    def predict(self, value) -> int:
        """Most probable component of one vector (MLlib's ``predict``)."""
        _, log_resp = self._gaussian.log_resp(self._as_matrix(value))
        return int(np.argmax(log_resp[0]))

    def predictProbability(self, value) -> DenseVector:
        """Posterior probabilities of one vector (MLlib's ``predictProbability``)."""
        _, log_resp = self._gaussian.log_resp(self._as_matrix(value))
        return DenseVector(np.exp(log_resp[0]))

    # ------------------------------------------------------------------ distributed scoring
    def _posterior_udf(self):
        from pyspark.sql.functions import arrow_udf

        params = self._gaussian
        d = params.d
        column = self.getFeaturesCol()
        out_type = pa.struct(
            [("prediction", pa.int32()), ("probability", pa.list_(pa.float64())),
             ("logLikelihood", pa.float64())]
        )

        def posterior(arr: pa.Array) -> pa.Array:
            X, valid, counts = list_to_matrix(arr, d)
            bad = {k: v for k, v in counts.items() if v and k != "null_vector"}
            if bad:
                raise ValueError(
                    f"featuresCol {column!r}: rows that cannot be scored "
                    f"(dimension {d} expected): {bad}"
                )
            ll, log_resp = params.log_resp(X)
            prob = np.exp(log_resp)
            n, k = prob.shape
            offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
            mask = pa.array(~valid)
            probs = pa.ListArray.from_arrays(offsets, pa.array(prob.ravel()), mask=mask)
            return pa.StructArray.from_arrays(
                [
                    pa.array(np.argmax(log_resp, axis=1).astype(np.int32), mask=~valid),
                    probs,
                    pa.array(ll, mask=~valid),
                ],
                fields=list(out_type),
            )

        return arrow_udf(
            posterior,
            "struct<prediction:int,probability:array<double>,logLikelihood:double>",
        )

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from pyspark.ml.functions import array_to_vector

        arr = feature_array(dataset, self.getFeaturesCol())
        tmp = "__spark_em_posterior"
        out = dataset.withColumn(tmp, self._posterior_udf()(arr))
        cols = [F.col("*")]
        cols.append(F.col(f"{tmp}.prediction").alias(self.getPredictionCol()))
        prob = F.col(f"{tmp}.probability")
        # array_to_vector fails on null arrays: rows with null features stay null
        cols.append(
            F.when(prob.isNull(), F.lit(None)).otherwise(array_to_vector(prob))
            .alias(self.getProbabilityCol())
        )
        if self.getLogLikelihoodCol():
            cols.append(F.col(f"{tmp}.logLikelihood").alias(self.getLogLikelihoodCol()))
        return out.select(*cols).drop(tmp)

    def _log_likelihood_sums(self, dataset: DataFrame) -> tuple[float, float]:
        arr = feature_array(dataset, self.getFeaturesCol())
        wcol = self.getWeightCol()
        w = quoted(wcol).cast("double") if wcol and wcol in dataset.columns else F.lit(1.0)
        ll = self._posterior_udf()(arr).getField("logLikelihood")
        row = dataset.select(
            F.sum(w * ll).alias("s"), F.sum(w).alias("n"),
            F.sum(F.when(ll.isNull(), 1).otherwise(0)).alias("nulls"),
        ).first()
        if row["nulls"]:
            # rows that cannot be scored would silently shrink the mean otherwise
            raise InvalidInputError(
                f"featuresCol {self.getFeaturesCol()!r}: {row['nulls']} rows have null "
                "features and cannot be scored"
            )
        if row is None or row["n"] is None or row["n"] == 0:
            raise InvalidInputError("cannot score an empty DataFrame")
        return float(row["s"]), float(row["n"])

    def _cluster_sizes(self, dataset: DataFrame) -> list[int]:
        """Rows of ``dataset`` by most probable component (one pass; rows with null
        features are not counted)."""
        arr = feature_array(dataset, self.getFeaturesCol())
        pred = self._posterior_udf()(arr).getField("prediction")
        rows = dataset.select(pred.alias("p")).where(F.col("p").isNotNull()) \
            .groupBy("p").count().collect()
        sizes = [0] * self._gaussian.k
        for r in rows:
            sizes[int(r["p"])] = int(r["count"])
        return sizes

    def score(self, dataset: DataFrame) -> float:
        """Mean (weighted) log-likelihood per row, as sklearn's ``score``."""
        s, n = self._log_likelihood_sums(dataset)
        return s / n

    def _n_parameters(self) -> int:
        return n_parameters(self._gaussian.k, self._gaussian.d, self._gaussian.covariance_type)

    def bic(self, dataset: DataFrame) -> float:
        """Bayesian information criterion, sklearn's formula: -2 log L + p log n
        (n = the sum of weights, the row count when there is no weight column)."""
        s, n = self._log_likelihood_sums(dataset)
        return -2.0 * s + self._n_parameters() * np.log(n)

    def aic(self, dataset: DataFrame) -> float:
        """Akaike information criterion, sklearn's formula: -2 log L + 2 p."""
        s, _ = self._log_likelihood_sums(dataset)
        return -2.0 * s + 2.0 * self._n_parameters()

    # ------------------------------------------------------------------ persistence
    def copy(self, extra=None) -> "GaussianMixtureModel":
        that = super().copy(extra)
        that._gaussian = self._gaussian
        that._summary = self._summary
        return that

    def write(self) -> MLWriter:
        return _ModelWriter(self)

    @classmethod
    def read(cls) -> MLReader:
        return _ModelReader(cls)

    def __repr__(self) -> str:
        p = self._gaussian
        if p is None:
            return "GaussianMixtureModel(<empty>)"
        return f"GaussianMixtureModel(k={p.k}, d={p.d}, covarianceType={p.covariance_type!r})"


# ---------------------------------------------------------------------------------------
# Writers and readers: JSON metadata (Spark's text writer) + numeric arrays (Parquet)
# ---------------------------------------------------------------------------------------
class _AtomicWriter(MLWriter):
    """Saves through Spark's writers into the cluster's file system (any URI Spark writes);
    on classic Spark into a temporary sibling that is then renamed (see :mod:`spark_em.fs`)."""

    def __init__(self, instance) -> None:
        super().__init__()
        self.instance = instance

    def save(self, path: str) -> None:
        if not isinstance(path, str):
            raise TypeError(f"path should be a string, got {type(path)}")
        atomic_write(self.sparkSession, path, self.shouldOverwrite, self.saveImpl)


class _ModelWriter(_AtomicWriter):
    def saveImpl(self, path: str) -> None:
        p = self.instance._gaussian
        summary = self.instance._summary
        extra = {
            "covarianceType": p.covariance_type,
            "k": p.k,
            "d": p.d,
            "summary": summary.to_json() if summary is not None else None,
        }
        _write_arrays(self.sparkSession, f"{path}/data", {
            "weights": p.weights, "means": p.means, "covariances": p.covariances,
        })
        # Metadata last: where the save is not atomic (Spark Connect), a save that failed
        # half-way has no metadata and cannot be loaded.
        DefaultParamsWriter.saveMetadata(self.instance, path, self.sparkSession, extraMetadata=extra)


class _ModelReader(MLReader):
    def __init__(self, cls) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> GaussianMixtureModel:
        spark = self.sparkSession
        meta = DefaultParamsReader.loadMetadata(path, spark)
        arrays = _read_arrays(spark, f"{path}/data")
        k, d, ct = int(meta["k"]), int(meta["d"]), meta["covarianceType"]
        shapes = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}
        params = GaussianParams.from_covariances(
            arrays["weights"].reshape(k), arrays["means"].reshape(k, d),
            arrays["covariances"].reshape(shapes[ct]), ct,
        )
        summary = GaussianMixtureSummary(**meta["summary"]) if meta.get("summary") else None
        model = GaussianMixtureModel(params, summary)
        model._resetUid(meta["uid"])
        DefaultParamsReader.getAndSetParams(model, meta)
        return model


def _write_arrays(spark: SparkSession, path: str, arrays: dict[str, np.ndarray]) -> None:
    rows = [(name, list(a.shape), np.ravel(a).astype(float).tolist()) for name, a in arrays.items()]
    spark.createDataFrame(rows, "name string, shape array<int>, values array<double>") \
        .coalesce(1).write.parquet(path)


def _read_arrays(spark: SparkSession, path: str) -> dict[str, np.ndarray]:
    return {
        r["name"]: np.asarray(r["values"], dtype=np.float64).reshape(r["shape"])
        for r in spark.read.parquet(path).collect()
    }


class _EstimatorWriter(_AtomicWriter):
    def saveImpl(self, path: str) -> None:
        inst = self.instance
        params = {p.name: v for p, v in inst._paramMap.items() if p.name != "initialModel"}
        init = inst.getInitialModel()
        extra = {"hasInitialModel": init is not None}
        if init is not None:
            _ModelWriter(init).session(self.sparkSession).saveImpl(f"{path}/initialModel")
        DefaultParamsWriter.saveMetadata(  # last, as in _ModelWriter
            inst, path, self.sparkSession, extraMetadata=extra, paramMap=params
        )


class _EstimatorReader(MLReader):
    def __init__(self, cls) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> GaussianMixture:
        spark = self.sparkSession
        meta = DefaultParamsReader.loadMetadata(path, spark)
        est = GaussianMixture()
        est._resetUid(meta["uid"])
        meta["paramMap"].pop("initialModel", None)
        meta.get("defaultParamMap", {}).pop("initialModel", None)
        DefaultParamsReader.getAndSetParams(est, meta)
        if meta.get("hasInitialModel"):
            est.setInitialModel(_ModelReader(GaussianMixtureModel).session(spark).load(f"{path}/initialModel"))
        return est
