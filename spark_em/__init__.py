"""spark-em: Gaussian mixture models fitted by EM on Apache Spark.

>>> from spark_em import GaussianMixture, GaussianMixtureModel
"""

from .errors import (
    ConvergenceWarning,
    IllDefinedCovarianceError,
    InvalidInputError,
    ModelFormatError,
)
from .estimator import GaussianMixture
from .model import GaussianMixtureModel
from .summary import GaussianMixtureSummary

__all__ = [
    "ConvergenceWarning",
    "GaussianMixture",
    "GaussianMixtureModel",
    "GaussianMixtureSummary",
    "IllDefinedCovarianceError",
    "InvalidInputError",
    "ModelFormatError",
]
__version__ = "0.1.0"
