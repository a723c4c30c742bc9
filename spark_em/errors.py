"""The exceptions and warnings spark-em raises; every message names the column, Param or
path and the problem."""

from __future__ import annotations


def describe_lengths(counts: dict[int, int]) -> str:
    """``rows by length: 2: 39, 5: 1`` (most frequent first), for messages."""
    order = sorted(counts, key=lambda n: (-counts[n], n))
    return "rows by length: " + ", ".join(f"{n}: {counts[n]:,}" for n in order)


def describe_features(features) -> str:
    """How messages name the features: ``featuresCol 'x'`` or ``featuresCol ['a', 'b']``."""
    return f"featuresCol {features!r}"


class InvalidInputError(ValueError):
    """The input DataFrame cannot be fitted or scored; the message names the column and the
    problem (and the number of offending rows)."""


class InvalidRowsError(InvalidInputError):
    """Rows of the input are invalid (null, NaN, infinite or huge features, wrong vector
    lengths, bad weights) and ``handleInvalid`` is ``"error"``.  ``bad_rows``: their number
    by kind; ``d``: the features' dimension; ``lengths``: rows by vector length, when some
    have another length than ``d``."""

    def __init__(
        self,
        message: str,
        bad_rows: dict | None = None,
        d: int | None = None,
        lengths: dict | None = None,
    ):
        super().__init__(message)
        self.bad_rows = dict(bad_rows or {})
        self.d = d
        self.lengths = dict(lengths or {})


class IllDefinedCovarianceError(ValueError):
    """A covariance matrix is singular or not positive definite even after ``regCovar``."""


class ModelFormatError(ValueError):
    """A saved model directory cannot be read; the message names the path and the problem."""


class ConvergenceWarning(UserWarning):
    """The best EM run stopped at ``maxIter`` without meeting ``tol`` (as scikit-learn's
    ``sklearn.exceptions.ConvergenceWarning``): raise ``maxIter`` or ``tol``, or check the
    data's scale.  Silence it with ``warnings.simplefilter("ignore", ConvergenceWarning)``."""
