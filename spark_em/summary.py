"""The training summary of a fitted :class:`~spark_em.GaussianMixtureModel`."""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["GaussianMixtureSummary"]


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
