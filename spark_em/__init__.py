"""spark-em: Gaussian mixture models fitted by EM on Apache Spark.

>>> from spark_em import GaussianMixture, GaussianMixtureModel
"""

from .estimator import GaussianMixture, GaussianMixtureModel, GaussianMixtureSummary
from .errors import IllDefinedCovarianceError, InvalidInputError, ModelFormatError

__all__ = [
    "GaussianMixture",
    "GaussianMixtureModel",
    "GaussianMixtureSummary",
    "IllDefinedCovarianceError",
    "InvalidInputError",
    "ModelFormatError",
]
__version__ = "0.1.0"
