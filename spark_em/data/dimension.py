"""The features' dimension ``d`` of a fit, the same however the rows are partitioned.

Where the schema says it -- a list of feature columns, or a vector column whose ML
attributes give its size (``VectorAssembler``'s output) -- that is ``d``.  Otherwise a first
guess (an initial model's dimension, the Parquet listing's, or -- for rows read through
Spark -- each task's own first vector length, :func:`~spark_em.data.arrow_blocks.
task_dimension`, with the first non-null row's length, found by a job, where the tasks
disagree or find none) runs the validation pass,
and when that pass finds rows of another length, one Spark job counts the rows of each
length over the whole input: ``d`` is the most frequent length (the smaller one on a tie),
and the rows of every other length are ``wrong_length`` -- named with their counts in the
error (``handleInvalid="error"``) or the warning (``"skip"``).  A well-formed input pays
nothing for this: the count runs only when some row has another length.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ..errors import describe_features, describe_lengths

__all__ = ["schema_dimension", "length_counts", "most_frequent", "describe_lengths", "warning"]


def schema_dimension(df: DataFrame, features) -> int | None:
    """d where the schema gives it: the number of listed columns, the ML attributes' size of
    a vector column (``ml_attr.num_attrs``); None otherwise."""
    if isinstance(features, (list, tuple)):
        return len(features)
    try:
        attrs = df.schema[features].metadata.get("ml_attr", {})
    except (KeyError, AttributeError):
        return None
    size = attrs.get("num_attrs") if isinstance(attrs, dict) else None
    return int(size) if isinstance(size, int) and size > 0 else None


def length_counts(df: DataFrame, arr: Column) -> dict[int, int]:
    """``{length: rows}`` of the non-null feature vectors of ``df``, in one Spark job."""
    rows = df.select(F.size(arr).alias("n")).where(F.col("n") >= 0).groupBy("n").count().collect()
    return {int(r["n"]): int(r["count"]) for r in rows}


def most_frequent(counts: dict[int, int]) -> int | None:
    """The most frequent length (the smaller one on a tie); None without any."""
    if not counts:
        return None
    return min(counts, key=lambda n: (-counts[n], n))


def warning(features, counts: dict[int, int], d: int) -> str:
    """The warning of a fit that skips the rows of other lengths."""
    other = sum(c for n, c in counts.items() if n != d)
    return (
        f"{describe_features(features)}: d={d}, the most frequent length; {other:,} rows of "
        f"other lengths left out as wrong_length ({describe_lengths(counts)})"
    )
