"""The pyspark.ml Estimator :class:`GaussianMixture`: its setters, the checks of its Params,
and ``fit``, which runs prepare → initialise → EM and wraps the result in a
:class:`~spark_em.model.GaussianMixtureModel`.

The model and its summary are re-exported here: models saved before the API was split into
modules name ``spark_em.estimator.GaussianMixtureModel`` in their metadata.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.util import MLReadable, MLReader, MLWritable, MLWriter
from pyspark.sql import DataFrame

from .em import FitResult, initialise, run_em
from .errors import InvalidInputError
from .gaussian import GaussianParams, check_covariance_type
from .init import INIT_MODES
from .model import GaussianMixtureModel
from .params import GaussianMixtureParams
from .persistence import EstimatorReader, EstimatorWriter
from .prepare import PreparedData, prepare
from .progress import InitialisationDone, IterationInfo, ValidationDone
from .stores import check_block_cache
from .summary import GaussianMixtureSummary

__all__ = ["GaussianMixture", "GaussianMixtureModel", "GaussianMixtureSummary"]


class GaussianMixture(Estimator, GaussianMixtureParams, MLReadable, MLWritable):
    """Gaussian mixture model fitted by EM on a Spark DataFrame.

    >>> gm = GaussianMixture(k=3, covarianceType="diag", seed=1)
    >>> model = gm.fit(df)                                  # doctest: +SKIP
    >>> model.transform(df).select("prediction", "probability")  # doctest: +SKIP

    Parameters match pyspark.ml (camelCase); shapes and numerics match scikit-learn's
    ``GaussianMixture``; so does ``tol``: EM stops when the mean weighted log-likelihood per
    row changes by less than ``tol`` (MLlib compares the total).  ``progress`` (not a Param) is an optional callable receiving the
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
        initialModel: GaussianMixtureModel | None = None,
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
        check_block_cache(self.getBlockCache())
        seed = self.getSeed()
        if seed is not None and not -(2**63) <= seed < 2**63:
            raise ValueError(
                f"seed must be None or an integer from -2**63 to 2**63 - 1 (a Spark long, as "
                f"MLlib's), got {seed}")
        init = self.getInitialModel()
        if init is not None and not isinstance(init, GaussianMixtureModel):
            raise TypeError("initialModel must be a GaussianMixtureModel")

    def _fit(self, dataset: DataFrame) -> GaussianMixtureModel:
        self._check_params()
        k = self.getK()
        seed = self.getSeed()
        # a negative seed (MLlib allows any long) as its 64-bit two's complement
        rng = np.random.default_rng(None if seed is None else seed % 2**64)
        sample_seed, *init_seeds = (int(s) for s in rng.integers(0, 2**31 - 1, 1 + self.getNInit()))
        progress = getattr(self, "progress", None)
        store, data = prepare(
            dataset,
            self.getFeaturesCol(),
            self.getWeightCol(),
            sample_size=max(self.getInitSampleSize(), k),
            seed=sample_seed,
            aggregation_depth=self.getAggregationDepth(),
            block_cache=self.getBlockCache(),
        )
        with store:
            if k > data.n_rows:
                raise InvalidInputError(
                    f"k={k} is larger than the number of valid rows ({data.n_rows}) in "
                    f"featuresCol {self.getFeaturesCol()!r}"
                )
            if progress is not None:
                progress(ValidationDone(
                    rows=data.n_rows, weight_sum=data.weight_sum, bad_rows=data.bad_rows,
                    seconds=data.seconds, store=data.store,
                ))
            starts = self._starts(store, data, init_seeds, progress)
            result = run_em(
                store, data, starts, max_iter=self.getMaxIter(), tol=self.getTol(),
                reg_covar=self.getRegCovar(), progress=progress,
            )
        return self._model(result, dataset)

    def _starts(
        self, store, data: PreparedData, init_seeds: list[int],
        progress: Callable[[Any], None] | None,
    ) -> list[GaussianParams]:
        """The starting parameters of each EM run: the initial model, or ``nInit`` fresh
        initialisations."""
        t0 = time.perf_counter()
        init = self.getInitialModel()
        if init is not None:
            starts = [self._check_initial_model(init, data.d)]
        else:
            starts = initialise(
                store, data, self.getK(), self.getCovarianceType(), self.getRegCovar(),
                self.getInitMode(), init_seeds,
            )
        if progress is not None:
            progress(InitialisationDone(
                runs=len(starts), seconds=time.perf_counter() - t0,
                mode="initialModel" if init is not None else self.getInitMode(),
            ))
        return starts

    def _model(self, result: FitResult, dataset: DataFrame) -> GaussianMixtureModel:
        """The fitted model, with this estimator's column Params and a summary whose cluster
        sizes are counted over ``dataset`` on first access."""
        summary = GaussianMixtureSummary(
            k=self.getK(),
            logLikelihoodHistory=result.log_likelihood_history,
            numIter=result.num_iter,
            converged=result.converged,
            weightSum=result.weight_sum,
            numRows=result.n_rows,
        )
        model = self._copyValues(GaussianMixtureModel(result.params, summary))
        summary._cluster_sizes_fn = lambda: model._cluster_sizes(dataset)
        return model

    def _check_initial_model(self, init: GaussianMixtureModel, d: int) -> GaussianParams:
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
        return EstimatorWriter(self)

    @classmethod
    def read(cls) -> MLReader:
        return EstimatorReader(cls, GaussianMixtureModel)
