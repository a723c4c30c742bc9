"""The pyspark.ml Estimator :class:`GaussianMixture`: its setters, the checks of its Params,
and ``fit``, which runs prepare → initialise → EM and wraps the result in a
:class:`~spark_em.model.GaussianMixtureModel`.

The model and its summary are re-exported here: models saved before the API was split into
modules name ``spark_em.estimator.GaussianMixtureModel`` in their metadata.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any, Callable, Sequence

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.util import MLReadable, MLReader, MLWritable, MLWriter
from pyspark.sql import DataFrame

from .engine.checkpoint import Checkpoint
from .engine.em import FitResult, InitSpec, Run, best_run, fit_runs, initial_params, result_of
from .errors import ConvergenceWarning, InvalidInputError
from .core.mixture import GaussianParams, check_covariance_type
from .core.initialisation import INIT_MODES
from .model import GaussianMixtureModel
from .params import DEFAULT_SEED, GaussianMixtureParams, check_handle_invalid
from .io.persistence import EstimatorReader, EstimatorWriter
from .data.prepare import PreparedData, prepare
from .progress import InitialisationDone, IterationInfo, ValidationDone
from .data.stores import check_block_cache
from .summary import GaussianMixtureSummary

__all__ = ["GaussianMixture", "GaussianMixtureModel", "GaussianMixtureSummary"]

log = logging.getLogger("spark_em")


class GaussianMixture(Estimator, GaussianMixtureParams, MLReadable, MLWritable):
    """Gaussian mixture model fitted by EM on a Spark DataFrame.

    >>> gm = GaussianMixture(k=3, covarianceType="diag", seed=1)
    >>> model = gm.fit(df)                                  # doctest: +SKIP
    >>> model.transform(df).select("prediction", "probability")  # doctest: +SKIP

    Parameters match pyspark.ml (camelCase); shapes and numerics match scikit-learn's
    ``GaussianMixture``; so does ``tol``: EM stops when the mean weighted log-likelihood per
    row changes by less than ``tol`` (MLlib compares the total).  ``seed`` defaults to
    :data:`~spark_em.params.DEFAULT_SEED` (42), so fits are reproducible; ``seed=None``
    draws a new initialisation each time.  A fit whose best run stops at ``maxIter``
    without converging warns with :class:`~spark_em.ConvergenceWarning`.  ``progress``
    (not a Param) is an optional callable receiving the events of :mod:`spark_em.progress`
    (validation done, initialisation done, each EM iteration).
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
        seed: int | None = DEFAULT_SEED,
        initialModel: GaussianMixtureModel | None = None,
        featuresCol: str | Sequence[str] = "features",
        weightCol: str | None = None,
        predictionCol: str = "prediction",
        probabilityCol: str = "probability",
        logLikelihoodCol: str | None = None,
        aggregationDepth: int = 2,
        initSampleSize: int = 10_000,
        blockCache: str = "auto",
        handleInvalid: str = "error",
    ) -> None:
        super().__init__()
        self.progress: Callable[[IterationInfo], None] | None = None
        self.checkpoint_dir: str | None = None
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
        check_handle_invalid(self.getHandleInvalid())
        seed = self.getSeed()
        if seed is not None and not -(2**63) <= seed < 2**63:
            raise ValueError(
                f"seed must be None or an integer from -2**63 to 2**63 - 1 (a Spark long, as "
                f"MLlib's), got {seed}")
        init = self.getInitialModel()
        if init is not None and not isinstance(init, GaussianMixtureModel):
            raise TypeError("initialModel must be a GaussianMixtureModel")

    def setCheckpointDir(self, path: str | None) -> "GaussianMixture":
        """Checkpoint every EM iteration into ``path``, a directory on the machine of the
        driver program (not a Param: it belongs to one run, like ``progress``).  A fit
        started again with the same data and settings resumes after the last finished
        iteration; one with other data or settings is refused
        (:class:`~spark_em.engine.checkpoint.CheckpointMismatchError`)."""
        self.checkpoint_dir = path
        return self

    def _seeds(self, runs: int) -> tuple[int, list[int]]:
        """The validation sample's seed and one seed per initialisation."""
        seed = self.getSeed()
        # a negative seed (MLlib allows any long) as its 64-bit two's complement
        rng = np.random.default_rng(None if seed is None else seed % 2**64)
        sample_seed, *seeds = (int(s) for s in rng.integers(0, 2**31 - 1, 1 + runs))
        return sample_seed, seeds

    def _prepare(self, dataset: DataFrame, k_max: int, sample_seed: int):
        """The opened block store and the prepared data (emits ValidationDone)."""
        store, data = prepare(
            dataset,
            self.getFeaturesCol(),
            self.getWeightCol(),
            sample_size=max(self.getInitSampleSize(), k_max),
            seed=sample_seed,
            aggregation_depth=self.getAggregationDepth(),
            block_cache=self.getBlockCache(),
            skip_invalid=self.getHandleInvalid() == "skip",
        )
        if data.rows_skipped:
            log.warning("handleInvalid='skip': %d invalid rows left out of the fit: %s",
                        data.rows_skipped, {k: v for k, v in data.bad_rows.items() if v})
        if k_max > data.n_rows:
            store.release()
            raise InvalidInputError(
                f"k={k_max} is larger than the number of valid rows ({data.n_rows}) in "
                f"featuresCol {self.getFeaturesCol()!r}"
            )
        progress = getattr(self, "progress", None)
        if progress is not None:
            progress(ValidationDone(
                rows=data.n_rows, weight_sum=data.weight_sum, bad_rows=data.bad_rows,
                seconds=data.seconds, store=data.store,
            ))
        return store, data

    def _checkpoint(self, **settings) -> Checkpoint | None:
        path = getattr(self, "checkpoint_dir", None)
        if not path:
            return None
        fixed = {name: self.getOrDefault(name) for name in (
            "tol", "regCovar", "initMode", "nInit", "seed", "initSampleSize", "featuresCol",
            "weightCol")}
        init = self.getInitialModel()
        fixed["initialModel"] = None if init is None else [
            np.asarray(a).ravel().tolist() for a in (init.weights, init.means, init.covariances)]
        return Checkpoint(path, dict(fixed, **settings))

    def _fit(self, dataset: DataFrame) -> GaussianMixtureModel:
        self._check_params()
        k, covariance_type = self.getK(), self.getCovarianceType()
        sample_seed, init_seeds = self._seeds(self.getNInit())
        store, data = self._prepare(dataset, k, sample_seed)
        specs = [InitSpec(k, covariance_type, self.getInitMode(), s) for s in init_seeds]
        with store:
            runs = self._em(store, data, specs, [f"run {i}" for i in range(len(specs))],
                            k=k, covarianceType=covariance_type)
        result = result_of(best_run(runs), data)
        if not result.converged and self.getMaxIter() > 0:
            warnings.warn(ConvergenceWarning(
                f"the best of {len(runs)} EM run(s) did not converge in maxIter="
                f"{self.getMaxIter()} iterations (last change of the mean log-likelihood "
                f"above tol={self.getTol()}): increase maxIter or tol, or check the data"
            ), stacklevel=3)
        return self._model(result, dataset, data.bad_rows)

    def _em(self, store, data: PreparedData, specs: list[InitSpec], labels: list[str],
            **checkpoint_settings) -> list[Run]:
        """Every EM run of a fit (``fit``, ``fitSelect``) in lock-step, from the initial model
        when one is set, else from one initialisation per ``InitSpec`` (all in one pass);
        ``labels`` name the runs; ``checkpoint_settings`` are what a checkpoint must match
        besides this estimator's Params."""
        progress = getattr(self, "progress", None)

        def start_runs():
            t0 = time.perf_counter()
            init = self.getInitialModel()
            if init is not None:
                starts, mode = [self._check_initial_model(init, data.d)], "initialModel"
            else:
                starts, mode = initial_params(store, data, specs, self.getRegCovar()), self.getInitMode()
            if progress is not None:
                progress(InitialisationDone(runs=len(starts), mode=mode,
                                            seconds=time.perf_counter() - t0))
            previous = self._previous_log_likelihood(data)
            return [Run(p, label, previous=previous) for p, label in zip(starts, labels)]

        return fit_runs(
            store, data, start_runs, max_iter=self.getMaxIter(), tol=self.getTol(),
            reg_covar=self.getRegCovar(), progress=progress,
            checkpoint=self._checkpoint(**checkpoint_settings),
        )

    def _previous_log_likelihood(self, data: PreparedData) -> float | None:
        """The mean log-likelihood a warm start comes with: the last one of the initial
        model's fit (sklearn's ``lower_bound_`` with ``warm_start``) when that fit saw data of
        the same row count and weight sum; else None (the first change is infinite).  So a
        refit from a converged model reports convergence after one iteration."""
        init = self.getInitialModel()
        s = init._summary if init is not None else None
        if s is None or not s.logLikelihoodHistory or s.weightSum is None:
            return None
        if s.numRows != data.n_rows or not np.isclose(s.weightSum, data.weight_sum, rtol=1e-12):
            return None
        return float(s.logLikelihoodHistory[-1])

    def fitSelect(self, dataset: DataFrame, ks, covarianceTypes=None, criterion: str = "bic"):
        """Fit every candidate ``k`` in ``ks`` x covariance type in ``covarianceTypes``
        (default: this estimator's) in ONE scan of the data per EM iteration, and return
        ``(best model by criterion, table)``; see :func:`spark_em.engine.selection.fit_select`."""
        from .engine.selection import fit_select

        return fit_select(self, dataset, ks, covarianceTypes, criterion)

    def _model(self, result: FitResult, dataset: DataFrame,
               bad_rows: dict | None = None) -> GaussianMixtureModel:
        """The fitted model, with this estimator's Params and a summary whose cluster sizes
        (on first access) and predictions (lazily) come from ``dataset``; ``bad_rows``: the
        invalid rows skipped by kind."""
        summary = GaussianMixtureSummary(
            k=self.getK(),
            logLikelihoodHistory=result.log_likelihood_history,
            numIter=result.num_iter,
            converged=result.converged,
            weightSum=result.weight_sum,
            numRows=result.n_rows,
            featuresCol=self.getFeaturesCol(),
            predictionCol=self.getPredictionCol(),
            probabilityCol=self.getProbabilityCol(),
            numRowsSkipped={k: int(v) for k, v in (bad_rows or {}).items() if v},
        )
        model = self._copyValues(GaussianMixtureModel(result.params, summary))
        at_fit = model.copy()  # the summary's predictions keep the fit's column names
        summary.bind(lambda: model._cluster_sizes(dataset), lambda: at_fit.transform(dataset))
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
        that.checkpoint_dir = getattr(self, "checkpoint_dir", None)
        return that

    def write(self) -> MLWriter:
        return EstimatorWriter(self)

    @classmethod
    def read(cls) -> MLReader:
        return EstimatorReader(cls, GaussianMixtureModel)
