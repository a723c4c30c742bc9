"""spark-em: Gaussian mixture models fitted by EM on Apache Spark.

>>> from spark_em import GaussianMixture, GaussianMixtureModel
"""

from .distributed import InvalidInputError
from .estimator import GaussianMixture, GaussianMixtureModel, GaussianMixtureSummary
from .gaussian import IllDefinedCovarianceError

__all__ = [
    "GaussianMixture",
    "GaussianMixtureModel",
    "GaussianMixtureSummary",
    "IllDefinedCovarianceError",
    "InvalidInputError",
]
__version__ = "0.1.0"
