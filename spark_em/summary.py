"""The training summary of a fitted :class:`~spark_em.GaussianMixtureModel`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["GaussianMixtureSummary"]


class GaussianMixtureSummary:
    """Training summary, with MLlib's members.

    Two units of log-likelihood, as the two libraries it follows use them:

    * ``logLikelihood``: the *total* weighted log-likelihood of the training data at the
      last iteration's E-step -- MLlib's ``summary.logLikelihood``, kept with its meaning
      (sklearn's ``lower_bound_`` times the weight sum); ``-inf`` when no iteration ran, NaN
      when the weight sum is unknown (a model converted from scikit-learn).
    * ``meanLogLikelihood``: the same as a *mean per row* (weighted), the unit of sklearn's
      ``score`` and ``lower_bound_``, of ``logLikelihoodHistory``, of ``model.score(df)``,
      of the jobs' progress lines, reports and tables.  The log-likelihood under the fitted
      parameters is ``model.score(df)`` (one pass).
    * ``logLikelihoodHistory``: the mean weighted log-likelihood per row at each iteration
      (before that iteration's M-step, as sklearn's lower bound).
    * ``logLikelihoodQuantiles``: ``{"levels", "values", "rows"}``, quantiles of the
      training rows' log-likelihood under the fitted parameters, from the fit's
      ``initSampleSize``-row sample (no extra pass; see :mod:`spark_em.core.quantiles`),
      ``{}`` for a model that was not fitted by spark-em;
      ``model.logLikelihoodThreshold(q)`` reads them.
    * ``clusterSizes``: training rows by most probable component under the fitted
      parameters.  As in MLlib, the fit does not compute them: the first access runs one
      pass over the training DataFrame, and the result is kept (and saved with the model).
    * ``predictions`` (the training DataFrame transformed by the model, with the column
      names the model had at fit time), ``probability`` and ``cluster`` (its probability and
      prediction columns): lazy DataFrames, as MLlib's; only on the model the fit returned
      (a saved model keeps the rest of its summary, not its training data).
    * ``featuresCol``, ``predictionCol``, ``probabilityCol``: the model's columns at fit time.
    * ``initialisation``: how the start of the kept run was found: ``{"mode": ...}`` with
      ``initMode``'s value (``"initialModel"`` for a warm start); for ``"sample-em"`` also
      ``trials``, ``best`` (the winning start's index) and ``bestKind`` (``kmeans`` or
      ``random``), ``sampleRows``, ``sampleLogLikelihood`` (the winner's mean
      log-likelihood per sample row, after the polish), ``sampleIterations`` (EM
      iterations of the race on the sample), ``polishIterations`` (those of the polish of
      the winner after the race; absent in models saved before the polish existed),
      ``degenerate`` (every start had an empty or collapsed
      component) and ``perTrial``; ``{}`` for models saved before it existed.
    * ``numRowsSkipped``: invalid rows left out of the fit with ``handleInvalid="skip"``, by
      kind (``null_vector``, ``wrong_length``, ``null_element``, ``non_finite``,
      ``huge_value``, ``null_weight``, ``negative_weight``, ``huge_weight``; kinds with none
      are absent), ``{}`` when nothing was skipped.
    * ``update``: for a model with segments (``segmentCol``), what its fit or update did:
      ``rowsRead``, ``segmentsUpdated``, ``segmentsFrozen``, ``segmentsDropped`` (keys as
      strings), ``iterations``, ``converged``; None otherwise.  For an update,
      ``logLikelihoodHistory``, ``numRows`` and ``weightSum`` are those of the rows it read,
      and, where its block store keeps each segment's rows apart (local files, Spark's cache),
      ``newSegments``: ``keys`` (the segments new to the model), their ``weightSum`` and
      ``logLikelihood`` under the model's parameters (the nightly job's drift signal).
    """

    def __init__(
        self,
        k: int,
        logLikelihoodHistory: list[float],
        numIter: int,
        converged: bool,
        weightSum: float | None = 0.0,
        numRows: int = 0,
        clusterSizes: list[int] | None = None,
        featuresCol: str | list[str] | None = None,
        predictionCol: str | None = None,
        probabilityCol: str | None = None,
        numRowsSkipped: dict[str, int] | None = None,
        logLikelihoodQuantiles: dict | None = None,
        update: dict | None = None,
        numMissingPerFeature: list[int] | None = None,
        initialisation: dict | None = None,
        # fields of older saved summaries (a logLikelihood under the final parameters)
        **_ignored: Any,
    ) -> None:
        self.k = k
        self.logLikelihoodHistory = list(logLikelihoodHistory)
        self.numIter = numIter
        self.converged = converged
        self.weightSum = weightSum
        self.numRows = numRows
        self.featuresCol = featuresCol
        self.predictionCol = predictionCol
        self.probabilityCol = probabilityCol
        self.numRowsSkipped = dict(numRowsSkipped or {})
        self.logLikelihoodQuantiles = dict(logLikelihoodQuantiles or {})
        self.update = None if update is None else dict(update)
        # missingValues="marginalize": rows of the fit with feature j missing, per feature
        self.numMissingPerFeature = [int(c) for c in numMissingPerFeature or []]
        self.initialisation = dict(initialisation or {})
        self._cluster_sizes = None if clusterSizes is None else [int(c) for c in clusterSizes]
        self._cluster_sizes_fn: Callable[[], list[int]] | None = None
        self._predictions_fn: Callable[[], DataFrame] | None = None
        self._predictions: DataFrame | None = None

    def bind(
        self, cluster_sizes: Callable[[], list[int]], predictions: Callable[[], DataFrame]
    ) -> None:
        """The training DataFrame's cluster sizes and predictions, computed on first access
        (the summary of the model ``fit`` returns; the model exists only after its
        summary, hence not in the constructor)."""
        self._cluster_sizes_fn, self._predictions_fn = cluster_sizes, predictions

    def reordered(self, order) -> GaussianMixtureSummary:
        """This summary for the same model with component ``order[j]`` as component ``j``
        (:meth:`GaussianMixtureModel.alignTo`): cluster sizes and the predictions'
        prediction and probability columns follow the new order."""
        order = [int(i) for i in order]
        that = GaussianMixtureSummary(**self.to_json())
        if self._cluster_sizes is not None:
            that._cluster_sizes = [self._cluster_sizes[i] for i in order]
        elif self._cluster_sizes_fn is not None:
            sizes = self._cluster_sizes_fn
            that._cluster_sizes_fn = lambda: [sizes()[i] for i in order]
        if self._predictions_fn is not None or self._predictions is not None:
            that._predictions_fn = lambda: _reordered_predictions(
                self.predictions, order, self.predictionCol, self.probabilityCol
            )
        return that

    @property
    def meanLogLikelihood(self) -> float:
        """The mean weighted log-likelihood per row at the last iteration's E-step (the
        last entry of ``logLikelihoodHistory``; ``-inf`` when no iteration ran)."""
        return self.logLikelihoodHistory[-1] if self.logLikelihoodHistory else float("-inf")

    @property
    def logLikelihood(self) -> float:
        if not self.logLikelihoodHistory:
            return float("-inf")
        if self.weightSum is None:
            return float("nan")
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

    @property
    def predictions(self) -> DataFrame:
        """The training DataFrame with the model's prediction and probability columns."""
        if self._predictions is None:
            if self._predictions_fn is None:
                raise RuntimeError(
                    "summary.predictions is only available on the model returned by fit (a "
                    "saved or converted model has no training DataFrame); use "
                    "model.transform(df) instead"
                )
            self._predictions = self._predictions_fn()
        return self._predictions

    @property
    def probability(self) -> DataFrame:
        """``predictions``' probability column (a DataFrame of one column)."""
        return self.predictions.select(self.probabilityCol)

    @property
    def cluster(self) -> DataFrame:
        """``predictions``' prediction column (a DataFrame of one column)."""
        return self.predictions.select(self.predictionCol)

    def to_json(self) -> dict:
        """What is saved with the model: cluster sizes only if they were computed."""
        return {
            "k": self.k,
            "logLikelihoodHistory": self.logLikelihoodHistory,
            "numIter": self.numIter,
            "converged": self.converged,
            "weightSum": self.weightSum,
            "numRows": self.numRows,
            "clusterSizes": self._cluster_sizes,
            "featuresCol": self.featuresCol,
            "predictionCol": self.predictionCol,
            "probabilityCol": self.probabilityCol,
            "numRowsSkipped": self.numRowsSkipped,
            "logLikelihoodQuantiles": self.logLikelihoodQuantiles,
            "update": self.update,
            "numMissingPerFeature": self.numMissingPerFeature,
            "initialisation": self.initialisation,
        }

    def __repr__(self) -> str:
        return (
            f"GaussianMixtureSummary(k={self.k}, numIter={self.numIter}, "
            f"converged={self.converged}, meanLogLikelihood={self.meanLogLikelihood:.6f})"
        )


def _reordered_predictions(df: DataFrame, order: list[int], prediction: str, probability: str):
    """``df`` with its prediction column mapped to the new component indices and its
    probability vector's entries in the new order."""
    from pyspark.ml.functions import array_to_vector, vector_to_array
    from pyspark.sql import functions as F

    new_index = [0] * len(order)
    for j, i in enumerate(order):
        new_index[i] = j
    cols = []
    for name in df.columns:
        c = F.col("`" + name.replace("`", "``") + "`")
        if name == prediction:
            c = F.element_at(F.array(*[F.lit(j) for j in new_index]), c + 1)
        elif name == probability:
            arr = vector_to_array(c, "float64")
            c = F.when(c.isNull(), F.lit(None)).otherwise(
                array_to_vector(F.array(*[arr[i] for i in order]))
            )
        cols.append(c.alias(name))
    return df.select(*cols)
