"""The pyspark.ml Estimator :class:`GaussianMixture`: its Params (declared once in
:mod:`spark_em.params`), and ``fit``/``fitSelect``, which hand them to the fit template
(:mod:`spark_em.engine.fit_session`) and wrap the result in a
:class:`~spark_em.model.GaussianMixtureModel`.

The model and its summary are re-exported here: models saved before the API was split into
modules name ``spark_em.estimator.GaussianMixtureModel`` in their metadata.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.util import MLReadable, MLReader, MLWritable, MLWriter
from pyspark.sql import DataFrame

from .engine import fit_session, scoring, selection, update
from .engine.em import FitResult
from .engine.fit_session import FitSettings
from .engine.warm_start import WarmStart
from .errors import ConvergenceWarning
from .io.persistence import EstimatorReader, EstimatorWriter
from .model import GaussianMixtureModel
from .params import PARAMS, GaussianMixtureParams, check_params
from .progress import IterationInfo
from .summary import GaussianMixtureSummary

__all__ = ["GaussianMixture", "GaussianMixtureModel", "GaussianMixtureSummary"]


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
    (validation done, initialisation done, each EM iteration).  Every Param, its default
    and its allowed values: :data:`spark_em.params.PARAMS`.
    """

    @keyword_only
    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.progress: Callable[[IterationInfo], None] | None = None
        self.checkpoint_dir: str | None = None
        self.checkpoint_discard = False
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, **kwargs: Any) -> GaussianMixture:
        return self._set(**kwargs)

    def setCheckpointDir(self, path: str | None, discard: bool = False) -> GaussianMixture:
        """Checkpoint every EM iteration into ``path``, a directory on the machine of the
        driver program (not a Param: it belongs to one run, like ``progress``).  A fit
        started again with the same data and settings resumes after the last finished
        iteration; one with other data or settings is refused
        (:class:`~spark_em.engine.checkpoint.CheckpointMismatchError`, saying what
        differs) unless ``discard`` (start afresh, replacing what the directory holds).  A
        fit that finishes removes its checkpoint."""
        self.checkpoint_dir = path
        self.checkpoint_discard = bool(discard)
        return self

    # ------------------------------------------------------------------ fitting
    def _settings(self) -> FitSettings:
        """This estimator's Params, checked, as the fit template takes them."""
        check_params(self)
        init = self.getInitialModel()
        if init is not None and not isinstance(init, GaussianMixtureModel):
            raise TypeError("initialModel must be a GaussianMixtureModel")
        warm = None
        if init is not None:
            s = init.summary if init.hasSummary else None
            history = s.logLikelihoodHistory if s is not None else None
            warm = WarmStart(
                init.mixture,
                s.numRows if s is not None else None,
                s.weightSum if s is not None else None,
                history[-1] if history else None,
            )
        fingerprint = {
            p.name: self.getOrDefault(p.name)
            for p in PARAMS
            if p.fingerprint and p.name not in ("k", "covarianceType", "initialModel")
        }
        fingerprint["initialModel"] = (
            None
            if init is None
            else [
                np.asarray(a).ravel().tolist() for a in (init.weights, init.means, init.covariances)
            ]
        )
        return FitSettings(
            features=self.getFeaturesCol(),
            weight_col=self.getWeightCol(),
            k=self.getK(),
            covariance_type=self.getCovarianceType(),
            max_iter=self.getMaxIter(),
            tol=self.getTol(),
            reg_covar=self.getRegCovar(),
            init_mode=self.getInitMode(),
            n_init=self.getNInit(),
            seed=self.getSeed(),
            init_sample_size=self.getInitSampleSize(),
            init_trials=self.getInitTrials(),
            init_max_iter=self.getInitMaxIter(),
            aggregation_depth=self.getAggregationDepth(),
            block_cache=self.getBlockCache(),
            skip_invalid=self.getHandleInvalid() == "skip",
            dtype=self.getDtype(),
            marginalize=self.getMissingValues() == "marginalize",
            warm_start=warm,
            checkpoint_dir=getattr(self, "checkpoint_dir", None),
            discard_checkpoint=getattr(self, "checkpoint_discard", False),
            fingerprint=tuple(fingerprint.items()),
        )

    def _fit(self, dataset: DataFrame) -> GaussianMixtureModel:
        progress = getattr(self, "progress", None)
        segmented = None
        if self.getSegmentCol():
            segmented = update.fit_segmented(
                dataset, self._settings(), self.getSegmentCol(), progress
            )
            result, runs = segmented.result, segmented.runs
        else:
            result, runs = fit_session.fit(dataset, self._settings(), progress)
        if not result.converged and self.getMaxIter() > 0:
            warnings.warn(
                ConvergenceWarning(
                    f"the best of {runs} EM run(s) did not converge in maxIter="
                    f"{self.getMaxIter()} iterations (last change of the mean log-likelihood "
                    f"above tol={self.getTol()}): increase maxIter or tol, or check the data"
                ),
                stacklevel=3,
            )
        return self._model(result, dataset, segmented)

    def _updated(
        self, model: GaussianMixtureModel, dataset: DataFrame, window: int | None, keys=None
    ) -> GaussianMixtureModel:
        """``model`` updated by incremental EM on the segments of ``dataset``
        (:meth:`GaussianMixtureModel.update`; this estimator carries the model's Params)."""
        settings = replace(self._settings(), warm_start=WarmStart(model.mixture))
        stored = model._segments or ()
        done = update.update(
            dataset,
            settings,
            self.getSegmentCol(),
            stored,
            window,
            getattr(self, "progress", None),
            keys,
        )
        if done is not None:
            return self._model(done.result, dataset, done)
        segments, dropped, params = update.unchanged(stored, window, self.getRegCovar())
        that = model.copy()
        that._mixture, that._segments = params, tuple(segments)
        s = model.summary.to_json() if model.hasSummary else None
        report = update.nothing_read(segments, dropped)
        that._summary = GaussianMixtureSummary(**{**s, "update": report}) if s else None
        return that

    def fitSelect(self, dataset: DataFrame, ks, covarianceTypes=None, criterion: str = "bic"):
        """Fit every candidate ``k`` in ``ks`` x covariance type in ``covarianceTypes``
        (default: this estimator's) in ONE scan of the data per EM iteration, and return
        ``(best model by criterion, table)``.

        Every other setting is this estimator's.  The table (a DataFrame) has one row per
        candidate: k, covarianceType, logLikelihood (the total, as MLlib's summary),
        meanLogLikelihood (per row, as sklearn's score), bic, aic, iterations, converged,
        seconds (its share of the passes' time); see :mod:`spark_em.engine.selection`.
        """
        selection.check_criterion(criterion)
        if self.getInitialModel() is not None:
            raise ValueError("fitSelect starts every candidate afresh: unset initialModel")
        if self.getSegmentCol():
            raise ValueError("fitSelect keeps no segments: unset segmentCol (fit the chosen k)")
        settings = self._settings()
        candidates = selection.candidates_of(ks, covarianceTypes or [self.getCovarianceType()])
        chosen = selection.fit_select(
            dataset, settings, candidates, criterion, getattr(self, "progress", None)
        )
        best = self.copy({self.k: chosen.best.k, self.covarianceType: chosen.best.covariance_type})
        model = best._model(chosen.result, dataset)
        frame = dataset.sparkSession.createDataFrame(
            [c.as_row() for c in chosen.candidates], selection.TABLE_SCHEMA
        )
        return model, frame

    def _model(self, result: FitResult, dataset: DataFrame, segmented=None) -> GaussianMixtureModel:
        """The fitted model, with this estimator's Params and a summary whose cluster sizes
        (on first access) and predictions (lazily) come from ``dataset``; with
        ``segmented`` (an :class:`~spark_em.engine.update.SegmentedResult`), its segments
        and what the fit or update did."""
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
            numRowsSkipped={k: int(v) for k, v in result.bad_rows.items() if v},
            numMissingPerFeature=list(result.missing_per_feature),
            logLikelihoodQuantiles=result.log_likelihood_quantiles,
            update=segmented.report if segmented is not None else None,
            initialisation=result.start,
        )
        segments = segmented.segments if segmented is not None else None
        model = self._copyValues(GaussianMixtureModel(result.params, summary, segments))
        at_fit = model.copy()  # the summary's predictions keep the fit's column names
        features, skip = self.getFeaturesCol(), self.getHandleInvalid() == "skip"
        missing = self.getMissingValues() == "marginalize"
        summary.bind(
            lambda: scoring.cluster_sizes(result.params, dataset, features, skip, missing),
            lambda: at_fit.transform(dataset),
        )
        return model

    def copy(self, extra=None) -> GaussianMixture:
        that = super().copy(extra)
        that.progress = getattr(self, "progress", None)
        that.checkpoint_dir = getattr(self, "checkpoint_dir", None)
        that.checkpoint_discard = getattr(self, "checkpoint_discard", False)
        return that

    def write(self) -> MLWriter:
        return EstimatorWriter(self)

    @classmethod
    def read(cls) -> MLReader:
        return EstimatorReader(cls, GaussianMixtureModel)


# The constructor's keywords, with the table's defaults (help() and IDEs show them).
GaussianMixture.__init__.__signature__ = inspect.Signature(
    [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    + [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default) for p in PARAMS]
)
