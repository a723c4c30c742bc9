"""Distributed scoring under fitted parameters: ``transform``'s columns, the log-likelihood
sums behind ``score``/``bic``/``aic``, and cluster sizes.

Each function takes the :class:`~spark_em.core.mixture.GaussianParams`, the column names and a
DataFrame, and runs one Arrow UDF (:func:`posterior_udf`) whose per-row math is the fit's own
E-step kernel, :meth:`spark_em.core.estep.EStepKernel.posteriors` (one log-density, one
normalisation for fit and scoring alike).

``missing`` (the model's ``missingValues="marginalize"``): NaN and null features are
missing values; an incomplete row gets its marginal posteriors and log-density log p(x_o)
(:class:`~spark_em.core.missing.MarginalEStep`), a row with every feature missing null
outputs, and it is left out of ``score``/``bic``/``aic`` and the cluster sizes, as the fit
leaves it out.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ..core.missing import e_step
from ..core.mixture import GaussianParams
from ..data.arrow_blocks import MAX_WEIGHT, UNINFORMATIVE_KINDS, list_to_matrix
from ..data.columns import feature_array, quoted
from ..data.validation import bad_row_problems
from ..errors import InvalidInputError, InvalidRowsError

__all__ = ["posterior_udf", "transform", "log_likelihood_sums", "cluster_sizes"]

_POSTERIOR_TYPE = "struct<prediction:int,probability:array<double>,logLikelihood:double>"
_POSTERIOR_ARROW_TYPE = pa.struct(
    [
        ("prediction", pa.int32()),
        ("probability", pa.list_(pa.float64())),
        ("logLikelihood", pa.float64()),
    ]
)


def _posterior_arrow(log_likelihood, prob, hard, valid: np.ndarray):
    """The UDF's output struct from ``log_likelihood (n,)``, responsibilities ``prob (n, k)``
    and the most probable component ``hard (n,)``; rows where ``valid`` is False (null
    features) are null in every field."""
    n, k = prob.shape
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    probs = pa.ListArray.from_arrays(offsets, pa.array(prob.ravel()), mask=pa.array(~valid))
    return pa.StructArray.from_arrays(
        [
            pa.array(hard.astype(np.int32), mask=~valid),
            probs,
            pa.array(log_likelihood, mask=~valid),
        ],
        fields=list(_POSTERIOR_ARROW_TYPE),
    )


def posterior_udf(
    params: GaussianParams,
    features_col: str | list[str],
    skip_invalid: bool = False,
    missing: bool = False,
):
    """An Arrow UDF from the feature array column to a struct of ``prediction`` (int),
    ``probability`` (array<double>, k) and ``logLikelihood`` (double, log p(x)).

    Rows of the wrong dimension or with null, non-finite or huge values raise (naming
    ``features_col``), or with ``skip_invalid`` get nulls as rows with null features do.
    """
    from pyspark.sql.functions import arrow_udf

    d = params.d
    centre = params.centre  # rows are scored about the mixture's mean (precision far from 0)
    kernel = e_step(params, centre, missing, moments=False)
    no_features = ("null_vector",) + UNINFORMATIVE_KINDS

    def posterior(arr: pa.Array) -> pa.Array:
        X, valid, counts = list_to_matrix(arr, d, missing)
        bad = {k: v for k, v in counts.items() if v and k not in no_features}
        if bad and not skip_invalid:
            problems = bad_row_problems(bad, features_col, None, d)
            raise InvalidRowsError(
                "rows that cannot be scored, in one batch of the input: "
                + "; ".join(problems)
                + " (handleInvalid='skip' gives them null outputs)",
                bad,
                d,
            )
        return _posterior_arrow(*kernel.posteriors(X - centre), valid)

    return arrow_udf(posterior, _POSTERIOR_TYPE)


def _posterior(
    params: GaussianParams,
    dataset: DataFrame,
    features_col: str | list[str],
    skip_invalid: bool = False,
    missing: bool = False,
) -> Column:
    udf = posterior_udf(params, features_col, skip_invalid, missing)
    return udf(feature_array(dataset, features_col))


def transform(
    params: GaussianParams,
    dataset: DataFrame,
    features_col: str | list[str],
    prediction_col: str,
    probability_col: str,
    log_likelihood_col: str | None = None,
    skip_invalid: bool = False,
    missing: bool = False,
) -> DataFrame:
    """``dataset`` with the probability (Vector), prediction (int) — MLlib's order — and, if
    named, the log-likelihood (double) columns appended; rows with null features (and, with
    ``skip_invalid``, invalid ones) get nulls."""
    from pyspark.ml.functions import array_to_vector

    tmp = "__spark_em_posterior"
    out = dataset.withColumn(tmp, _posterior(params, dataset, features_col, skip_invalid, missing))
    cols = [F.col("*")]
    prob = F.col(f"{tmp}.probability")
    # array_to_vector fails on null arrays: rows with null features stay null
    cols.append(
        F.when(prob.isNull(), F.lit(None)).otherwise(array_to_vector(prob)).alias(probability_col)
    )
    cols.append(F.col(f"{tmp}.prediction").alias(prediction_col))
    if log_likelihood_col:
        cols.append(F.col(f"{tmp}.logLikelihood").alias(log_likelihood_col))
    return out.select(*cols).drop(tmp)


def log_likelihood_sums(
    params: GaussianParams,
    dataset: DataFrame,
    features_col: str | list[str],
    weight_col: str | None = None,
    skip_invalid: bool = False,
    missing: bool = False,
) -> tuple[float, float]:
    """``(sum of w * log p(x), sum of w)`` over ``dataset`` in one pass; ``w`` is 1 when
    ``weight_col`` is None or not a column of ``dataset``.  Raises
    :class:`~spark_em.InvalidInputError` for rows with null features and for an empty
    DataFrame; with ``skip_invalid`` rows with null or invalid features or weights (null,
    negative, not finite, above 1e75) are left out instead."""
    w = (
        quoted(weight_col).cast("double")
        if weight_col and weight_col in dataset.columns
        else F.lit(1.0)
    )
    ll = _posterior(params, dataset, features_col, skip_invalid, missing).getField("logLikelihood")
    unscored = ll.isNull()
    if skip_invalid:
        good = ll.isNotNull() & w.isNotNull() & (w >= 0) & (w <= MAX_WEIGHT)  # NaN fails both
        w, ll = F.when(good, w), F.when(good, ll)
    elif missing:
        # rows with every feature missing are left out, as the fit leaves them out; null
        # features are refused below
        unscored = feature_array(dataset, features_col).isNull()
        w = F.when(ll.isNotNull(), w)
    row = dataset.select(
        F.sum(w * ll).alias("s"),
        F.sum(w).alias("n"),
        F.sum(F.when(unscored, 1).otherwise(0)).alias("nulls"),
    ).first()
    if row["nulls"] and not skip_invalid:
        # rows that cannot be scored would silently shrink the mean otherwise
        raise InvalidInputError(
            f"featuresCol {features_col!r}: {row['nulls']} rows have null "
            "features and cannot be scored"
        )
    if row is None or row["n"] is None or row["n"] == 0:
        raise InvalidInputError("cannot score an empty DataFrame")
    return float(row["s"]), float(row["n"])


def cluster_sizes(
    params: GaussianParams,
    dataset: DataFrame,
    features_col: str | list[str],
    skip_invalid: bool = False,
    missing: bool = False,
) -> list[int]:
    """Rows of ``dataset`` by most probable component, a list of k ints (one pass; rows
    with null features, and with ``skip_invalid`` invalid ones, are not counted)."""
    pred = _posterior(params, dataset, features_col, skip_invalid, missing).getField("prediction")
    rows = (
        dataset.select(pred.alias("p")).where(F.col("p").isNotNull()).groupBy("p").count().collect()
    )
    sizes = [0] * params.k
    for r in rows:
        sizes[int(r["p"])] = int(r["count"])
    return sizes
