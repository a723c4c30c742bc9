"""The training summary of a fitted :class:`~spark_em.GaussianMixtureModel`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["GaussianMixtureSummary"]


class GaussianMixtureSummary:
    """Training summary, with MLlib's members.

    * ``logLikelihood``: total weighted log-likelihood of the training data at the last
      iteration's E-step (MLlib's ``summary.logLikelihood``; sklearn's ``lower_bound_`` times
      the weight sum), ``-inf`` when no iteration ran, NaN when the weight sum is unknown (a
      model converted from scikit-learn).  The log-likelihood under the fitted parameters is
      ``model.score(df)`` times the weight sum.
    * ``logLikelihoodHistory``: the mean weighted log-likelihood per row at each iteration
      (before that iteration's M-step, as sklearn's lower bound).
    * ``clusterSizes``: training rows by most probable component under the fitted
      parameters.  As in MLlib, the fit does not compute them: the first access runs one
      pass over the training DataFrame, and the result is kept (and saved with the model).
    * ``predictions`` (the training DataFrame transformed by the model, with the column
      names the model had at fit time), ``probability`` and ``cluster`` (its probability and
      prediction columns): lazy DataFrames, as MLlib's; only on the model the fit returned
      (a saved model keeps the rest of its summary, not its training data).
    * ``featuresCol``, ``predictionCol``, ``probabilityCol``: the model's columns at fit time.
    * ``numRowsSkipped``: invalid rows left out of the fit with ``handleInvalid="skip"``, by
      kind (``null_vector``, ``wrong_length``, ``null_element``, ``non_finite``,
      ``huge_value``, ``null_weight``, ``negative_weight``, ``huge_weight``; kinds with none
      are absent), ``{}`` when nothing was skipped.
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
        }

    def __repr__(self) -> str:
        return (
            f"GaussianMixtureSummary(k={self.k}, numIter={self.numIter}, "
            f"converged={self.converged}, logLikelihood={self.logLikelihood:.6g})"
        )
