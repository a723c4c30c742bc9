"""Input columns: features and weights as one ``array<double>`` column and one ``double``
column, with the checks that need only the schema (no Spark job).

Features may be a ``pyspark.ml`` vector column (dense or sparse), an ``array`` of numbers, a
single numeric column, or a list of numeric column names.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..errors import InvalidInputError, describe_features


def quoted(name: str) -> Column:
    """The column called ``name`` exactly: dots and backticks in it are part of the name."""
    return F.col("`" + name.replace("`", "``") + "`")


def feature_array(df: DataFrame, features) -> Column:
    """An ``array<double>`` column from a vector column, a numeric array column, a single
    numeric column, or a list of numeric column names.  Raises :class:`InvalidInputError`."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.ml.linalg import VectorUDT

    schema = df.schema
    names = schema.fieldNames()
    if isinstance(features, (list, tuple)):
        if not features:
            raise InvalidInputError("featuresCol is an empty list of columns")
        cols = []
        for name in features:
            if name not in names:
                raise InvalidInputError(f"feature column {name!r} does not exist; columns: {names}")
            dt = schema[name].dataType
            if not isinstance(dt, T.NumericType):
                raise InvalidInputError(
                    f"feature column {name!r} has type {dt.simpleString()}; "
                    "feature columns must be numeric"
                )
            cols.append(quoted(name).cast("double"))
        return F.array(*cols)
    if features not in names:
        raise InvalidInputError(f"{describe_features(features)} does not exist; columns: {names}")
    dt = schema[features].dataType
    col = quoted(features)
    if isinstance(dt, VectorUDT):
        return vector_to_array(col, "float64")
    if isinstance(dt, T.ArrayType) and isinstance(dt.elementType, T.NumericType):
        return col.cast("array<double>")
    if isinstance(dt, T.NumericType):
        return F.array(col.cast("double"))
    raise InvalidInputError(
        f"{describe_features(features)} has type {dt.simpleString()}; expected a Vector column, "
        "an array of numbers, or a list of numeric column names"
    )


def weight_column(df: DataFrame, weight_col: str | None) -> Column:
    """The row weights as ``double`` (1.0 without a weight column)."""
    if not weight_col:
        return F.lit(1.0)
    if weight_col not in df.columns:
        raise InvalidInputError(f"weightCol {weight_col!r} does not exist; columns: {df.columns}")
    wdt = df.schema[weight_col].dataType
    if not isinstance(wdt, T.NumericType):
        raise InvalidInputError(
            f"weightCol {weight_col!r} has type {wdt.simpleString()}; it must be numeric"
        )
    return quoted(weight_col).cast("double")


def selected_input(df: DataFrame, features: Column, weight_col: str | None, *more) -> DataFrame:
    """``df`` as the columns a pass reads: ``x`` (``features``, the
    :func:`feature_array` column), ``w`` (:func:`weight_column`) only with a weightCol --
    without one every weight is 1 and no column of ones is sent from Spark (15-20 % of the
    JVM's time moving 1M x 16 cached rows into Python) -- then ``more`` columns."""
    weights = [weight_column(df, weight_col).alias("w")] if weight_col else []
    return df.select(features.alias("x"), *weights, *more)


def feature_dimension(df: DataFrame, features, arr: Column) -> int | None:
    """d from the column list, or from the first non-null row (None if there is none)."""
    if isinstance(features, (list, tuple)):
        return len(features)
    row = df.select(F.size(arr).alias("d")).where(F.col("d") >= 0).limit(1).collect()
    return int(row[0]["d"]) if row else None
