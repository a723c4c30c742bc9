"""The Params of :class:`~spark_em.GaussianMixture` and :class:`~spark_em.GaussianMixtureModel`.

Where pyspark.ml has a shared Param (``pyspark.ml.param.shared``) it is used as is, so that
spark-em's stages answer ``isinstance(gm, HasMaxIter)`` and carry the same ``Param`` names and
docs as MLlib's.  Three shared Params are redefined because spark-em accepts more values than
pyspark's converters do (see the comments at each); the rest are spark-em's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import (
    HasAggregationDepth,
    HasFeaturesCol,
    HasHandleInvalid,
    HasMaxIter,
    HasPredictionCol,
    HasProbabilityCol,
    HasSeed,
    HasTol,
    HasWeightCol,
)

from .core.mixture import COVARIANCE_TYPES
from .core.initialisation import INIT_MODES

if TYPE_CHECKING:
    from .model import GaussianMixtureModel

__all__ = [
    "DEFAULT_SEED", "HANDLE_INVALID", "ColumnParams", "FitParams", "GaussianMixtureParams",
    "check_handle_invalid",
]

HANDLE_INVALID = ("error", "skip")


def check_handle_invalid(value: str) -> str:
    if value not in HANDLE_INVALID:
        raise ValueError(f"handleInvalid must be one of {HANDLE_INVALID}, got {value!r}")
    return value


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


class ColumnParams(HasFeaturesCol, HasWeightCol, HasPredictionCol, HasProbabilityCol):
    """Column parameters shared by the estimator and the model."""

    # Redefined: HasFeaturesCol's converter (toString) refuses a list of numeric column names.
    featuresCol = Param(
        Params._dummy(),
        "featuresCol",
        "features: a Vector column, an array<double>/array<float> column, or a list of "
        "numeric column names",
        typeConverter=_to_features_col,
    )
    # Redefined: HasWeightCol's converter (toString) refuses None, spark-em's default (no
    # weights), so a stage saved with weightCol=None could not be loaded.
    weightCol = Param(
        Params._dummy(),
        "weightCol",
        "optional column of non-negative row weights",
        typeConverter=_to_optional_string,
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


DEFAULT_SEED = 42
"""The default ``seed``: fits are reproducible unless ``seed=None`` is set explicitly.

A constant, not pyspark's ``HasSeed`` default (``hash`` of the class name, which Python
randomises in each process unless ``PYTHONHASHSEED`` is set)."""


class FitParams(ColumnParams, HasMaxIter, HasTol, HasSeed, HasAggregationDepth, HasHandleInvalid):
    """The Params a fit runs with, which the fitted model carries too (as MLlib's model
    does): the columns, ``k``, ``maxIter``, ``tol``, ``seed``, ``aggregationDepth``,
    ``regCovar``, ``initMode``, ``nInit``, ``initSampleSize``, ``blockCache`` and
    ``handleInvalid``.

    ``handleInvalid`` (pyspark.ml's shared Param, as feature transformers have it):
    ``"error"`` (default) raises for rows with null, NaN, infinite or huge features, wrong
    vector lengths or bad weights; ``"skip"`` leaves them out of the fit and of
    ``score``/``bic``/``aic``, and gives them null outputs in ``transform``.  Rows whose
    features are null get null outputs in ``transform`` either way.

    ``tol`` is sklearn's rule, not MLlib's: EM stops when the change in the *mean* weighted
    log-likelihood per row is below ``tol``.  ``aggregationDepth`` may be 1 (no intermediate
    level), although the shared Param's doc says ">= 2" as MLlib requires.
    """

    # Redefined: HasSeed's converter (toInt) refuses None, which means "not reproducible"
    # here, and its default (a hash of the class name) would differ in each Python process.
    seed = Param(
        Params._dummy(), "seed",
        f"random seed (default {DEFAULT_SEED}; None: a different fit each time)",
        _to_optional_int,
    )
    k = Param(Params._dummy(), "k", "number of components (>= 1)", TypeConverters.toInt)
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
        super().__init__()  # HasSeed sets its hash default here; ours replaces it below
        self._setDefault(
            k=2, maxIter=100, tol=1e-3, regCovar=1e-6, initMode="kmeans", nInit=1,
            seed=DEFAULT_SEED, aggregationDepth=2, initSampleSize=10_000, blockCache="auto",
            handleInvalid="error",
        )

    def getK(self) -> int:
        return self.getOrDefault(self.k)

    def getRegCovar(self) -> float:
        return self.getOrDefault(self.regCovar)

    def getInitMode(self) -> str:
        return self.getOrDefault(self.initMode)

    def getNInit(self) -> int:
        return self.getOrDefault(self.nInit)

    def getSeed(self) -> int | None:
        return self.getOrDefault(self.seed)

    def getInitSampleSize(self) -> int:
        return self.getOrDefault(self.initSampleSize)

    def getBlockCache(self) -> str:
        return self.getOrDefault(self.blockCache)

    def setHandleInvalid(self, value: str):
        return self._set(handleInvalid=value)


class GaussianMixtureParams(FitParams):
    """The estimator's Params: :class:`FitParams` plus ``covarianceType`` (the model has it
    as the plain value ``model.covarianceType``) and ``initialModel``."""

    covarianceType = Param(
        Params._dummy(), "covarianceType",
        f"covariance type, one of {COVARIANCE_TYPES}", TypeConverters.toString,
    )
    initialModel = Param(
        Params._dummy(), "initialModel",
        "a GaussianMixtureModel to start EM from (warm start)", _identity,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(covarianceType="full", initialModel=None)

    def getCovarianceType(self) -> str:
        return self.getOrDefault(self.covarianceType)

    def getInitialModel(self) -> GaussianMixtureModel | None:
        return self.getOrDefault(self.initialModel)
