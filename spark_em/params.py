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
    HasMaxIter,
    HasPredictionCol,
    HasProbabilityCol,
    HasSeed,
    HasTol,
    HasWeightCol,
)

from .gaussian import COVARIANCE_TYPES
from .init import INIT_MODES

if TYPE_CHECKING:
    from .model import GaussianMixtureModel

__all__ = ["ColumnParams", "GaussianMixtureParams"]


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


class GaussianMixtureParams(ColumnParams, HasMaxIter, HasTol, HasSeed, HasAggregationDepth):
    """The estimator's Params: the columns plus what a fit needs.

    ``tol`` is sklearn's rule, not MLlib's: EM stops when the change in the *mean* weighted
    log-likelihood per row is below ``tol``.  ``aggregationDepth`` may be 1 (no intermediate
    level), although the shared Param's doc says ">= 2" as MLlib requires.
    """

    # Redefined: HasSeed's converter (toInt) refuses None, which means "not reproducible"
    # here, and its default (a hash of the class name) would differ in each Python process.
    seed = Param(Params._dummy(), "seed", "random seed (None: not reproducible)", _to_optional_int)
    k = Param(Params._dummy(), "k", "number of components (>= 1)", TypeConverters.toInt)
    covarianceType = Param(
        Params._dummy(), "covarianceType",
        f"covariance type, one of {COVARIANCE_TYPES}", TypeConverters.toString,
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
    initialModel = Param(
        Params._dummy(), "initialModel",
        "a GaussianMixtureModel to start EM from (warm start)", _identity,
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
            k=2, covarianceType="full", maxIter=100, tol=1e-3, regCovar=1e-6, initMode="kmeans",
            nInit=1, seed=None, initialModel=None, aggregationDepth=2, initSampleSize=10_000,
            blockCache="auto",
        )

    def getK(self) -> int:
        return self.getOrDefault(self.k)

    def getCovarianceType(self) -> str:
        return self.getOrDefault(self.covarianceType)

    def getRegCovar(self) -> float:
        return self.getOrDefault(self.regCovar)

    def getInitMode(self) -> str:
        return self.getOrDefault(self.initMode)

    def getNInit(self) -> int:
        return self.getOrDefault(self.nInit)

    def getSeed(self) -> int | None:
        return self.getOrDefault(self.seed)

    def getInitialModel(self) -> GaussianMixtureModel | None:
        return self.getOrDefault(self.initialModel)

    def getInitSampleSize(self) -> int:
        return self.getOrDefault(self.initSampleSize)

    def getBlockCache(self) -> str:
        return self.getOrDefault(self.blockCache)
