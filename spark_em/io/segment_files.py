"""A model's segment statistics (:mod:`spark_em.core.segment_statistics`) in its directory:
``path/segments/`` holds Parquet rows, one per segment::

    key (string | long | date), iteration long, rows long, weightSum double,
    logLikelihood double, centre, nk, sk, second, hardCounts array<double>

and the metadata says ``segments: {"count": n, "keyType": ...}``.  :func:`read_segments`
checks them before use (columns, one row per key, shapes from ``k``, ``d`` and the
covariance type, finite values, non-negative N_k adding up to the weight sum) and
:func:`check_parameters` that the model's parameters are the M-step of their sum.  A
problem raises one :class:`~spark_em.ModelFormatError` (through the caller's ``fail``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from ..core.mixture import GaussianParams
from ..core.segment_statistics import SegmentStats, m_step_of
from ..core.sufficient_statistics import SuffStats, second_shape
from .directory_files import write_table

KEY_SPARK_TYPES = {"string": T.StringType(), "long": T.LongType(), "date": T.DateType()}
_KEY_ARROW_TYPES = {"string": pa.string(), "long": pa.int64(), "date": pa.date32()}
ARRAY_COLUMNS = ("centre", "nk", "sk", "second", "hardCounts")
COLUMNS = ("key", "iteration", "rows", "weightSum", "logLikelihood", *ARRAY_COLUMNS)
# the saved parameters and the M-step of the saved segments' sum agree to this (relative)
PARAMETER_TOLERANCE = 1e-7


def key_type_of(segments: Sequence[SegmentStats]) -> str:
    import datetime

    key = segments[0].key
    if isinstance(key, str):
        return "string"
    if isinstance(key, datetime.date):
        return "date"
    return "long"


def write_segments(spark: SparkSession, path: str, segments: Sequence[SegmentStats]) -> dict:
    """Write ``segments`` under ``path`` (one Parquet file); returns the metadata entry."""
    key_type = key_type_of(segments)
    schema = T.StructType(
        [
            T.StructField("key", KEY_SPARK_TYPES[key_type], False),
            T.StructField("iteration", T.LongType(), False),
            T.StructField("rows", T.LongType(), False),
            T.StructField("weightSum", T.DoubleType(), False),
            T.StructField("logLikelihood", T.DoubleType(), False),
            *(T.StructField(c, T.ArrayType(T.DoubleType(), False), False) for c in ARRAY_COLUMNS),
        ]
    )
    # one Arrow table, each array column one float64 buffer (not Python lists of floats)
    columns = {
        "key": pa.array([s.key for s in segments], _KEY_ARROW_TYPES[key_type]),
        "iteration": pa.array([int(s.iteration) for s in segments], pa.int64()),
        "rows": pa.array([int(s.rows) for s in segments], pa.int64()),
        "weightSum": pa.array([float(s.weight_sum) for s in segments], pa.float64()),
        "logLikelihood": pa.array([float(s.stats.log_likelihood) for s in segments], pa.float64()),
    }
    arrays = {
        "centre": lambda s: s.centre,
        "nk": lambda s: s.stats.nk,
        "sk": lambda s: s.stats.sk,
        "second": lambda s: s.stats.second,
        "hardCounts": lambda s: s.stats.hard_counts,
    }
    for name in ARRAY_COLUMNS:
        columns[name] = pa.array(
            [np.ravel(np.asarray(arrays[name](s), dtype=np.float64)) for s in segments],
            pa.list_(pa.float64()),
        )
    write_table(spark, path, pa.table(columns), schema)
    return {"count": len(segments), "keyType": key_type}


def read_segments(
    table: pa.Table, entry: dict, k: int, d: int, ct: str, fail: Callable[[str], Exception]
) -> tuple[SegmentStats, ...]:
    """The segments of ``table`` (the rows of ``segments/``), checked against the
    metadata's ``entry`` and the model's shape."""
    if set(table.column_names) != set(COLUMNS):
        raise fail(f"segments have columns {table.column_names}, expected {list(COLUMNS)}")
    rows = table.to_pylist()
    if len(rows) != entry.get("count"):
        raise fail(f"segments/ holds {len(rows)} segments, the metadata says {entry.get('count')}")
    keys = [r["key"] for r in rows]
    if None in keys or len(set(keys)) != len(keys):
        raise fail("segment keys must be present and unique")
    shapes = {
        "centre": (d,),
        "nk": (k,),
        "sk": (k, d),
        "second": second_shape(k, d, ct),
        "hardCounts": (k,),
    }
    segments = []
    for r in rows:
        where = f"segment {r['key']!r}"
        arrays = {}
        for name, shape in shapes.items():
            values = r[name]
            if values is None or len(values) != int(np.prod(shape)) or None in values:
                raise fail(f"{where}: {name} does not have {int(np.prod(shape))} values")
            arrays[name] = np.asarray(values, dtype=np.float64).reshape(shape)
        scalars = [r[c] for c in ("iteration", "rows", "weightSum", "logLikelihood")]
        if None in scalars or not all(np.all(np.isfinite(a)) for a in arrays.values()):
            raise fail(f"{where}: statistics contain null, NaN or infinite values")
        nk = arrays["nk"]
        if np.any(nk < 0) or r["rows"] < 1 or r["weightSum"] <= 0:
            raise fail(f"{where}: negative responsibilities, no rows or no weight")
        if not np.isclose(nk.sum(), r["weightSum"], rtol=1e-9):
            raise fail(f"{where}: its N_k sum to {nk.sum()!r}, not its weight sum")
        stats = SuffStats(
            ct,
            nk,
            arrays["sk"],
            arrays["second"],
            float(r["logLikelihood"]),
            float(r["weightSum"]),
            float(r["rows"]),
            arrays["hardCounts"],
            None,
        )
        segments.append(SegmentStats(r["key"], int(r["iteration"]), arrays["centre"], stats))
    return tuple(sorted(segments, key=lambda s: s.key))


def check_parameters(
    segments: Sequence[SegmentStats],
    params: GaussianParams,
    reg_covar: float,
    fail: Callable[[str], Exception],
) -> None:
    """The model's parameters must be the M-step of its segments' summed statistics."""
    try:
        expected = m_step_of(segments, reg_covar)
    except Exception as exc:  # a singular covariance from tampered statistics
        raise fail(f"the segments' statistics give no parameters ({exc})") from None
    for name in ("weights", "means", "covariances"):
        a, b = getattr(params, name), getattr(expected, name)
        scale = max(float(np.max(np.abs(b))), 1.0)
        if not np.allclose(a, b, rtol=PARAMETER_TOLERANCE, atol=PARAMETER_TOLERANCE * scale):
            raise fail(
                f"its {name} are not the M-step of its segments' statistics (a segment file "
                "from another model, or edited)"
            )
