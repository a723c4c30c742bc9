"""The fitted model, :class:`GaussianMixtureModel`: its parameters, local prediction, the
pyspark.ml ``transform``/``score``/``bic``/``aic`` (run by :mod:`spark_em.engine.scoring`),
``sample`` (:mod:`spark_em.engine.sampling`) and conversions from and to MLlib and scikit-learn."""

from __future__ import annotations

import numpy as np
from pyspark.ml import Model
from pyspark.ml.linalg import DenseMatrix, DenseVector, Vector
from pyspark.ml.stat import MultivariateGaussian
from pyspark.ml.util import MLReadable, MLReader, MLWritable, MLWriter
from pyspark.sql import DataFrame, SparkSession

from .core.alignment import alignment, permuted
from .core.missing import log_responsibilities
from .core.mixture import GaussianParams, n_parameters
from .core.mixture import aic as aic_of
from .core.mixture import bic as bic_of
from .core.parameter_checks import given_values_problem
from .core.quantiles import threshold
from .core.segment_statistics import Segment, permuted_segment
from .engine import sampling, scoring
from .io import mllib_import
from .io.model_directory import check_values
from .io.persistence import ModelReader, ModelWriter
from .io.sklearn_interop import from_sklearn, to_sklearn
from .params import DEFAULT_SEED, FitParams, spec
from .summary import GaussianMixtureSummary

__all__ = ["GaussianMixtureModel"]


class GaussianMixtureModel(Model, FitParams, MLReadable, MLWritable):
    """A fitted Gaussian mixture.

    Arrays use scikit-learn's shapes: ``weights (k,)``, ``means (k, d)``, ``covariances`` —
    full ``(k, d, d)``, tied ``(d, d)``, diag ``(k, d)``, spherical ``(k,)`` — and
    ``precisionsCholesky`` and ``precisions`` likewise; ``gaussians`` is MLlib's list of
    ``MultivariateGaussian``.  The model carries the Params of the fit that made it (getters
    such as ``getMaxIter()``, ``getTol()``, ``getSeed()``; setters only for the columns);
    ``covarianceType`` is the plain value (also ``getCovarianceType()``).
    """

    def __init__(
        self,
        params: GaussianParams | None = None,
        summary: GaussianMixtureSummary | None = None,
        segments=None,
    ) -> None:
        super().__init__()
        self._mixture = params
        self._summary = summary
        # SegmentStats per segment (spark_em.core.segment_statistics), sorted by key
        self._segments = None if segments is None else tuple(segments)
        if params is not None:
            self._set(k=params.k)

    # ------------------------------------------------------------------ parameters
    @property
    def mixture(self) -> GaussianParams:
        """The fitted parameters as one value (:class:`~spark_em.core.mixture.GaussianParams`)."""
        return self._mixture

    @property
    def weights(self) -> np.ndarray:
        return self._mixture.weights

    @property
    def means(self) -> np.ndarray:
        return self._mixture.means

    @property
    def covariances(self) -> np.ndarray:
        return self._mixture.covariances

    @property
    def precisionsCholesky(self) -> np.ndarray:
        return self._mixture.precisions_cholesky

    @property
    def covarianceType(self) -> str:
        return self._mixture.covariance_type

    def getCovarianceType(self) -> str:
        return self._mixture.covariance_type

    def getK(self) -> int:
        return self._mixture.k

    @property
    def precisions(self) -> np.ndarray:
        """Precision matrices (inverse covariances), sklearn's ``precisions_`` shapes."""
        return self._mixture.precisions()

    @property
    def gaussians(self) -> list[MultivariateGaussian]:
        """The components as MLlib's ``MultivariateGaussian`` (mean ``DenseVector``, cov
        ``DenseMatrix`` d x d, whatever the covariance type)."""
        d = self.numFeatures
        return [
            MultivariateGaussian(DenseVector(m), DenseMatrix(d, d, c.ravel(order="F").tolist()))
            for m, c in zip(self.means, self.full_covariances())
        ]

    @property
    def numFeatures(self) -> int:
        return self._mixture.d

    @property
    def segments(self) -> list[Segment]:
        """The segments whose statistics the model keeps (a fit with ``segmentCol``), in
        the key's order: ``Segment(key, rows, weightSum, iteration)``, ``iteration`` the
        EM iteration of the parameters their statistics were computed under (0: the
        initial parameters of the first fit).  Empty for a model without segments."""
        return [Segment(s.key, s.rows, s.weight_sum, s.iteration) for s in (self._segments or ())]

    def update(
        self,
        dataset: DataFrame,
        window: int | None = None,
        maxIter: int | None = None,
        tol: float | None = None,
        keys=None,
    ) -> GaussianMixtureModel:
        """A new model, by incremental EM (Neal & Hinton, 1998) from this one: the segments
        present in ``dataset`` (by ``segmentCol``) are E-stepped every iteration and replace
        any stored statistics of the same keys; every other stored segment stays frozen.
        ``window=N`` keeps the N newest segment keys (the key's order) and drops the rest
        first.  Iterates ``theta <- M(frozen + fresh(theta))`` from this model's parameters
        until the fresh rows' mean log-likelihood changes by less than ``tol`` or
        ``maxIter`` (defaults: the model's).  The new model carries its segments, this
        model's Params and a summary of the update (``summary.update``).  With no row of a
        window segment in ``dataset``: nothing is E-stepped; the parameters are those of
        the window's segments.  ValueError for a model without segments.

        ``keys``: the segments of ``dataset`` to take, when the caller knows them (the
        update job: from the partition directories it reads).  Rows of other keys (a null
        key's too) are left out, and when every listed key of the window has a valid row no
        query looks for the segments present; otherwise that query decides (the update
        goes on, or starts again, as it finds them), so the result is the same either way.
        Default: every segment ``dataset`` holds."""
        if not self._segments or not self.getSegmentCol():
            raise ValueError(
                "update needs a model fitted with segmentCol: this one keeps no segment statistics"
            )
        from .estimator import GaussianMixture

        est = self._copyValues(GaussianMixture())
        est._set(covarianceType=self.covarianceType, k=self.getK())
        if maxIter is not None:
            est._set(maxIter=maxIter)
        if tol is not None:
            est._set(tol=tol)
        return est._updated(self, dataset, window, keys)

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
        return self._mixture.full_covariances()

    @property
    def gaussiansDF(self) -> DataFrame:
        """DataFrame of the components: ``mean`` (DenseVector), ``cov`` (DenseMatrix d x d)."""
        from pyspark.ml.linalg import MatrixUDT, VectorUDT
        from pyspark.sql.types import StructField, StructType

        spark = SparkSession.active()
        rows = [(g.mean, g.cov) for g in self.gaussians]
        schema = StructType([StructField("mean", VectorUDT()), StructField("cov", MatrixUDT())])
        return spark.createDataFrame(rows, schema)

    @classmethod
    def fromParameters(
        cls,
        weights,
        means,
        covariances,
        covarianceType: str = "full",
        regCovar: float | None = None,
    ) -> GaussianMixtureModel:
        """A model from explicit parameters (sklearn shapes); e.g. to warm-start a fit.
        ValueError unless they pass a loaded model's checks (finite, positive weights
        summing to 1 (1e-9), symmetric positive definite covariances)."""
        problem = given_values_problem(weights, means, covariances, covarianceType)
        if problem:
            raise ValueError(f"fromParameters: {problem}")
        return cls(
            GaussianParams.from_covariances(weights, means, covariances, covarianceType, regCovar)
        )

    def toSklearn(self):
        """An equivalent fitted ``sklearn.mixture.GaussianMixture`` (needs scikit-learn),
        with ``converged_``, ``n_iter_``, ``lower_bound_`` and ``lower_bounds_`` from the
        summary."""
        return to_sklearn(self._mixture, self._summary)

    @classmethod
    def fromSklearn(cls, est) -> GaussianMixtureModel:
        """A model from a fitted ``sklearn.mixture.GaussianMixture``; its ``converged_``,
        ``n_iter_`` and ``lower_bounds_`` become the summary (``numIter``, ``converged``,
        ``logLikelihoodHistory``)."""
        return cls(*from_sklearn(est))

    @classmethod
    def fromMLlib(cls, model) -> GaussianMixtureModel:
        """A model (``covarianceType="full"``) from a fitted
        ``pyspark.ml.clustering.GaussianMixtureModel``, with its weights, means,
        covariances and the Params both share (not ``tol``: its rule differs).  A saved
        MLlib model directory loads with :meth:`load` directly."""
        weights, means, covs, values = mllib_import.from_live(model)
        check_values(f"cannot convert MLlib model {model.uid}", weights, means, covs, "full")
        that = cls(GaussianParams.from_covariances(weights, means, covs, "full"))
        that._set(**values)
        return that

    def alignTo(self, other: GaussianMixtureModel) -> GaussianMixtureModel:
        """This model with its components reordered to match ``other``'s, so that a
        component keeps its index across refits (yesterday's cluster 3 stays cluster 3).

        The order minimises the total Bhattacharyya distance between each component and
        ``other``'s component of the same index (Hungarian assignment,
        :mod:`spark_em.core.alignment`).  With more components than ``other``, the
        unmatched ones come last in their own order; with fewer, the matched ones keep the
        order of ``other``'s indices.  The mixture is the same (same densities, scores and
        log-likelihoods); the summary's cluster sizes and predictions follow the new
        order."""
        if not isinstance(other, GaussianMixtureModel):
            raise TypeError(f"alignTo needs a GaussianMixtureModel, got {type(other).__name__}")
        if other.numFeatures != self.numFeatures:
            raise ValueError(
                f"cannot align a model of dimension {self.numFeatures} to one of dimension "
                f"{other.numFeatures}"
            )
        order = alignment(self._mixture, other.mixture)
        that = self.copy()
        that._mixture = permuted(self._mixture, order)
        if self._segments is not None:
            that._segments = tuple(permuted_segment(s, order) for s in self._segments)
        if self._summary is not None:
            that._summary = self._summary.reordered(order)
        return that

    def logLikelihoodThreshold(self, q: float) -> float:
        """The log-likelihood below which a row is among the lowest ``q`` (e.g. 0.001) of
        the training rows: from the quantiles the fit kept
        (``summary.logLikelihoodQuantiles``, computed on the fit's sample; a level between
        two kept ones is interpolated).  ValueError when the model keeps none (a model built
        from parameters, converted, or saved before they existed) or ``q`` is outside
        them."""
        quantiles = self._summary.logLikelihoodQuantiles if self._summary is not None else {}
        if not quantiles.get("levels"):
            raise ValueError(
                "this model keeps no quantiles of its training rows' log-likelihood (it was "
                "not fitted by this version of spark-em): refit it"
            )
        return threshold(quantiles, q)

    def sample(self, n: int, seed: int | None = DEFAULT_SEED) -> DataFrame:
        """A DataFrame of ``n`` rows drawn from the mixture, generated on the executors:
        ``featuresCol`` (Vector; ``"features"`` when featuresCol is a list of columns) and
        ``label`` (int, the component drawn).  The same ``(n, seed)`` gives the same rows;
        ``seed=None`` draws a new sample each time."""
        features = self.getFeaturesCol()
        return sampling.sample(
            self._mixture, n, seed, features if isinstance(features, str) else "features"
        )

    # ------------------------------------------------------------------ local prediction
    def _as_matrix(self, X) -> np.ndarray:
        if isinstance(X, Vector):
            X = X.toArray()
        X = np.asarray(X, dtype=np.float64)
        return X.reshape(1, -1) if X.ndim == 1 else X

    def predict(self, value) -> int:
        """Most probable component of one vector (MLlib's ``predict``); with
        ``missingValues="marginalize"`` its NaN are missing values (marginal posterior)."""
        _, log_resp = log_responsibilities(
            self._mixture, self._as_matrix(value), self._marginalize()
        )
        return int(np.argmax(log_resp[0]))

    def predictProbability(self, value) -> DenseVector:
        """Posterior probabilities of one vector (MLlib's ``predictProbability``); with
        ``missingValues="marginalize"`` its NaN are missing values."""
        _, log_resp = log_responsibilities(
            self._mixture, self._as_matrix(value), self._marginalize()
        )
        return DenseVector(np.exp(log_resp[0]))

    # ------------------------------------------------------------------ distributed scoring
    def _skip_invalid(self) -> bool:
        problem = spec("handleInvalid").problem(self.getHandleInvalid())
        if problem:
            raise ValueError(f"handleInvalid {problem}")
        return self.getHandleInvalid() == "skip"

    def _marginalize(self) -> bool:
        problem = spec("missingValues").problem(self.getMissingValues())
        if problem:
            raise ValueError(f"missingValues {problem}")
        return self.getMissingValues() == "marginalize"

    def _transform(self, dataset: DataFrame) -> DataFrame:
        return scoring.transform(
            self._mixture,
            dataset,
            self.getFeaturesCol(),
            self.getPredictionCol(),
            self.getProbabilityCol(),
            self.getLogLikelihoodCol(),
            self._skip_invalid(),
            self._marginalize(),
        )

    def _log_likelihood_sums(self, dataset: DataFrame) -> tuple[float, float]:
        return scoring.log_likelihood_sums(
            self._mixture,
            dataset,
            self.getFeaturesCol(),
            self.getWeightCol(),
            self._skip_invalid(),
            self._marginalize(),
        )

    def score(self, dataset: DataFrame) -> float:
        """Mean (weighted) log-likelihood per row, as sklearn's ``score``."""
        s, n = self._log_likelihood_sums(dataset)
        return s / n

    def _n_parameters(self) -> int:
        return n_parameters(self._mixture.k, self._mixture.d, self._mixture.covariance_type)

    def bic(self, dataset: DataFrame) -> float:
        """Bayesian information criterion, sklearn's formula: -2 log L + p log n
        (n = the sum of weights, the row count when there is no weight column)."""
        s, n = self._log_likelihood_sums(dataset)
        return bic_of(s, n, self._n_parameters())

    def aic(self, dataset: DataFrame) -> float:
        """Akaike information criterion, sklearn's formula: -2 log L + 2 p."""
        s, _ = self._log_likelihood_sums(dataset)
        return aic_of(s, self._n_parameters())

    # ------------------------------------------------------------------ persistence
    def copy(self, extra=None) -> GaussianMixtureModel:
        that = super().copy(extra)
        that._mixture = self._mixture
        that._summary = self._summary
        that._segments = getattr(self, "_segments", None)
        return that

    def write(self) -> MLWriter:
        return ModelWriter(self)

    @classmethod
    def read(cls) -> MLReader:
        return ModelReader(cls)

    def __repr__(self) -> str:
        p = self._mixture
        if p is None:
            return "GaussianMixtureModel(<empty>)"
        return f"GaussianMixtureModel(k={p.k}, d={p.d}, covarianceType={p.covariance_type!r})"
