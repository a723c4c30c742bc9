"""Segments of the input (a day, a batch: the values of ``segmentCol``) and the one pass
that E-steps each segment separately from the input.

Local block files and Spark's cache keep the segments apart
(:mod:`spark_em.engine.update`); otherwise the stores hold features and weights only, and
the pass here reads the input itself (features, weight and the segment column), groups each
Arrow batch's rows by segment inside the task, and reduces ``{segment code: statistics}``
by key (segments are few: a small dict per task, merged in the tree reduce,
:mod:`spark_em.core.segment_statistics`).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from ..core.segment_statistics import merge_keyed, pack_keyed, unpack_keyed
from ..core.sufficient_statistics import SuffStats
from ..core.summarizers import Chunk
from ..core.tuning import TASKS_PER_CORE
from ..errors import InvalidInputError
from .arrow_blocks import batch_weights, list_to_matrix, weights_to_numpy
from .columns import feature_array, quoted, selected_input
from .env import SparkEnv
from .passes import PASS_SCHEMA
from .reduce import packed_batch, tree_collect

KEY_TYPES = {"string": T.StringType, "long": T.IntegralType, "date": T.DateType}


def key_type(df: DataFrame, segment_col: str) -> str:
    """``"string"``, ``"long"`` or ``"date"``: the kind of ``segment_col``'s values;
    :class:`InvalidInputError` for a missing column or another type."""
    if segment_col not in df.columns:
        raise InvalidInputError(f"segmentCol {segment_col!r} does not exist; columns: {df.columns}")
    dt = df.schema[segment_col].dataType
    for name, cls in KEY_TYPES.items():
        if isinstance(dt, cls):
            return name
    raise InvalidInputError(
        f"segmentCol {segment_col!r} has type {dt.simpleString()}; segment keys must be "
        "strings, integers or dates"
    )


def segment_keys(df: DataFrame, segment_col: str, skip_invalid: bool) -> tuple[DataFrame, list]:
    """``(df without rows of a null key when skipping, its distinct segment keys sorted)``
    -- one small Spark job.  A null key is an :class:`InvalidInputError` naming the column
    and the number of rows, unless ``skip_invalid``."""
    key_type(df, segment_col)
    col = quoted(segment_col)
    keys = [r[0] for r in df.select(col).distinct().collect()]
    if None in keys:
        if not skip_invalid:
            nulls = df.where(col.isNull()).count()
            raise InvalidInputError(
                f"segmentCol {segment_col!r} is null in {nulls} rows: every row must name "
                "its segment (or handleInvalid='skip' leaves them out)"
            )
        df = df.where(col.isNotNull())
        keys = [k for k in keys if k is not None]
    return df, sorted(keys)


def given_keys(df: DataFrame, segment_col: str, keys) -> tuple[DataFrame, list]:
    """``(the rows of df whose segment is one of keys, the keys sorted)`` -- no Spark job:
    for a caller that knows which segments to take (the update job, from the partition
    directories it read).  Rows of other keys, a null key's included, are left out.
    ValueError for a key of another kind than the column's."""
    kind = key_type(df, segment_col)
    if isinstance(keys, (str, bytes)):
        raise ValueError(f"keys must be a list of segment keys, not one {type(keys).__name__}")
    python_type = {"string": str, "long": int, "date": datetime.date}[kind]
    keys = [int(k) if kind == "long" and isinstance(k, np.integer) else k for k in keys]
    wrong = [
        k
        for k in keys
        if not isinstance(k, python_type) or isinstance(k, (bool, datetime.datetime))
    ]
    if wrong:
        raise ValueError(
            f"segment keys {wrong[:3]!r} are not {kind} values like segmentCol {segment_col!r}'s"
        )
    wanted = sorted(set(keys))
    return df.where(quoted(segment_col).isin(wanted)), wanted


def keyed_pass(
    df: DataFrame,
    features,
    weight_col: str | None,
    segment_col: str,
    keys: list,
    kernel,
    centre: np.ndarray,
    aggregation_depth: int = 2,
    missing: bool = False,
) -> dict:
    """``{key: SuffStats}``: the E-step statistics of ``kernel`` (an
    :class:`~spark_em.core.estep.EStepKernel` about ``centre``) over each segment of
    ``keys`` present in ``df``, in one Spark job.  Rows with invalid features or weights
    are left out (as the block stores leave them out), as are rows of other keys;
    ``missing`` (missingValues="marginalize"): NaN and nulls are missing values, as the
    stores read them."""
    env = SparkEnv.of(df.sparkSession)
    tasks = max(1, TASKS_PER_CORE * env.default_parallelism)
    frame = selected_input(
        df, feature_array(df, features), weight_col, quoted(segment_col).alias("s")
    ).coalesce(tasks)
    k, d, ct = kernel.k, kernel.d, kernel.covariance_type
    task = _keyed_task(kernel, centre, keys, d, missing)
    merges = (merge_keyed(k, d, ct), np.add)
    out = tree_collect(
        frame.mapInArrow(task, PASS_SCHEMA), tasks, merges, aggregation_depth, PASS_SCHEMA
    )
    if out is None:
        return {}
    return {
        keys[code]: SuffStats.unpack(v, k, d, ct, kernel.origin)
        for code, v in unpack_keyed(out[0], k, d, ct).items()
    }


def key_codes(keys) -> Callable[[pa.Array], np.ndarray]:
    """A function, for inside tasks, from an Arrow array of segment keys to their codes
    (indices in ``keys``; -1 for a null or another key)."""
    value_set = None

    def codes(column: pa.Array) -> np.ndarray:
        nonlocal value_set
        if value_set is None:
            value_set = pa.array(list(keys), type=column.type)
        found = pc.fill_null(pc.index_in(column, value_set=value_set), -1)
        return found.to_numpy(zero_copy_only=False)

    return codes


def segment_parts(batches, keys):
    """``(batch, None)`` for each Arrow batch; with ``keys``, ``(part, code)`` for each
    segment's rows of each batch (the column ``s`` coded by :func:`key_codes`).  A key
    outside ``keys`` is a ValueError (the input changed since the keys were read)."""
    if keys is None:
        for batch in batches:
            yield batch, None
        return
    coded = key_codes(keys)
    for batch in batches:
        codes = coded(batch.column("s"))
        present = np.unique(codes)
        if present.size and present[0] < 0:
            raise ValueError(
                "a row's segment key is not among the keys the update found in its input "
                "(did the input change during the update?)"
            )
        for code in present.tolist():
            yield (batch if present.size == 1 else batch.filter(pa.array(codes == code))), code


def _keyed_task(kernel, centre: np.ndarray, keys: list, d: int, missing: bool):
    def task(batches):
        stats: dict[int, SuffStats] = {}
        coded = key_codes(keys)
        for batch in batches:
            X, valid, _ = list_to_matrix(batch.column(0), d, missing)
            w, wvalid, _ = weights_to_numpy(batch_weights(batch), X.shape[0])
            codes = coded(batch.column("s"))
            keep = valid & wvalid & (codes >= 0)
            for code in np.unique(codes[keep]):
                rows = keep & (codes == code)
                if int(code) not in stats:
                    stats[int(code)] = kernel.new_stats(d)
                kernel.accumulate(stats[int(code)], Chunk(X[rows], w[rows], centre))
        yield packed_batch([pack_keyed(stats), np.zeros(4)], PASS_SCHEMA.fieldNames())

    return task
