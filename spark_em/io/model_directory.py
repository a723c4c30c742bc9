"""Checks of a saved model directory, done before any of its arrays is used.

:func:`load_checked` lists the directory, reads its files' bytes (through Spark: the
cluster's file system, on classic Spark and on Spark Connect alike; directly for the driver's
local files on classic Spark, :mod:`spark_em.io.local_files`) and parses them here with
``json`` and ``pyarrow``, so that every problem becomes one :class:`~spark_em.ModelFormatError`
naming the path and the problem, never a Java stack trace:

* metadata: exactly one file (``metadata/part-*``) of one JSON object; its class a
  spark-em model (``formatVersion`` known; models saved without one are version 1) or an
  MLlib ``GaussianMixtureModel`` (imported, see :mod:`spark_em.io.mllib_import`); other
  classes are named in the error;
* sizes, from the listing (:mod:`spark_em.io.directory_files`) before a byte is read: the
  metadata at most :data:`METADATA_MAX_BYTES`, the data files at most what ``k``, ``d``
  and ``covarianceType`` allow (:func:`data_size_bound`), so that a huge file in a
  damaged directory costs an error, not the driver;
* layout: one or more Parquet files under ``data/`` and nothing else (hidden files such as
  ``_SUCCESS`` and ``.crc`` are Spark's own);
* arrays: readable Parquet, shapes consistent with ``k``, ``d`` and ``covarianceType``;
* values (:func:`check_values`): finite, weights positive and summing to 1 (1e-9),
  covariances symmetric and positive definite (Cholesky succeeds).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from ..core.covariance import covariance
from ..core.mixture import COVARIANCE_TYPES, GaussianParams
from ..core.parameter_checks import value_problem
from ..core.sufficient_statistics import second_shape
from ..errors import ModelFormatError
from . import mllib_import, segment_files
from .directory_files import ListedFile, list_files, read_files, relative_names

__all__ = ["FORMAT_VERSION", "CheckedModel", "load_checked", "check_values"]

FORMAT_VERSION = 1
"""Written into a saved model's metadata; models saved without one are version 1."""
READABLE_VERSIONS = (1,)
SPARK_EM_CLASSES = (
    "spark_em.model.GaussianMixtureModel",
    "spark_em.estimator.GaussianMixtureModel",  # saved before the API was split into modules
)
OTHER_STAGES = {
    "spark_em.estimator.GaussianMixture": (
        "a saved spark-em GaussianMixture estimator, not a model: load it with "
        "spark_em.GaussianMixture.load"
    ),
    mllib_import.MLLIB_ESTIMATOR_CLASS: (
        "a saved MLlib GaussianMixture estimator, not a model: load it with "
        "pyspark.ml.clustering.GaussianMixture.load"
    ),
}
ARRAY_NAMES = ("weights", "means", "covariances")
METADATA_MAX_BYTES = 16 << 20
"""A model's metadata is one JSON line (its Params and summary: a few KiB, the
log-likelihood history 20 bytes an iteration)."""
MLLIB_DATA_MAX_BYTES = 256 << 20
"""MLlib's metadata does not give d: its data files are read up to this size (full
covariances of k=32, d=1000)."""


@dataclass(frozen=True)
class CheckedModel:
    """A model directory that passed every check: ``format`` is ``"spark-em"`` or
    ``"mllib"``, ``metadata`` the parsed JSON, ``params`` the validated parameters."""

    format: str
    metadata: dict
    params: GaussianParams
    segments: tuple = ()  # SegmentStats of a model fitted with segmentCol (segment_files)


def _fail(path: str, problem: str) -> ModelFormatError:
    return ModelFormatError(f"cannot load a GaussianMixtureModel from {path}: {problem}")


_JAVA_CLASS = re.compile(r"^(?:[a-z_]\w*\.)+[A-Z]\w*: ")


def _short(exc: Exception) -> str:
    """The first informative line of an exception's message and its root cause, without
    Java frames or class names."""
    lines = [ln.strip().lstrip(": ").strip() for ln in str(exc).splitlines()]
    lines = [
        ln
        for ln in lines
        if ln
        and not ln.startswith(("at ", "... ", "Suppressed: ", "An error occurred while calling"))
    ]
    if not lines:
        return type(exc).__name__
    text = _JAVA_CLASS.sub("", lines[0])
    causes = [
        _JAVA_CLASS.sub("", ln[len("Caused by: ") :])
        for ln in lines
        if ln.startswith("Caused by: ")
    ]
    if causes:
        text = f"{text[:250]} (caused by: {causes[-1][:150]})"
    return text[:400]


def _listing(spark: SparkSession, path: str) -> dict[str, ListedFile]:
    try:
        return relative_names(path, list_files(spark, path))
    except Exception as exc:  # PATH_NOT_FOUND, unknown file system, no permission
        raise _fail(path, _short(exc)) from None


def _metadata_name(path: str, names: dict[str, ListedFile]) -> str:
    if not names:
        raise _fail(path, "the directory has no files (not a saved model)")
    metadata = sorted(n for n in names if n.startswith("metadata/") and n.count("/") == 1)
    if not metadata:
        raise _fail(
            path,
            "no metadata file (metadata/part-*): not a saved model, or its save did not finish",
        )
    if len(metadata) > 1:
        raise _fail(path, f"{len(metadata)} metadata files, expected one: {metadata}")
    return metadata[0]


def _parquet_names(names: dict[str, ListedFile], folder: str) -> list[str]:
    return sorted(
        n
        for n in names
        if n.startswith(folder + "/") and n.count("/") == 1 and n.endswith(".parquet")
    )


def _data_names(
    path: str, names: dict[str, ListedFile], metadata_name: str, meta: dict
) -> list[str]:
    data = _parquet_names(names, "data")
    segments = _parquet_names(names, "segments") if meta.get("segments") else []
    stray = sorted(set(names) - set(data) - set(segments) - {metadata_name})
    if not data:
        raise _fail(path, "no data file (data/*.parquet): the model's arrays are missing")
    if stray:
        shown = ", ".join(stray[:5]) + (f" and {len(stray) - 5} more" if len(stray) > 5 else "")
        raise _fail(path, f"unexpected files in the model directory: {shown}")
    return sorted(data)


def _read_bytes(spark: SparkSession, path: str, names: dict[str, ListedFile]) -> dict[str, bytes]:
    try:
        contents = read_files(spark, names)
    except Exception as exc:  # a checksum error, a file removed meanwhile
        raise _fail(path, f"cannot read its files: {_short(exc)}") from None
    missing = sorted(set(names) - set(contents))
    if missing:
        raise _fail(path, f"files disappeared while loading: {missing}")
    return contents


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def _check_size(path: str, what: str, names: dict[str, ListedFile], bound: int, why: str):
    """Refuse, before reading a byte, files whose total size exceeds what they can be."""
    size = sum(f.size for f in names.values())
    if size > bound:
        shown = ", ".join(sorted(names)[:3]) + (" ..." if len(names) > 3 else "")
        raise _fail(
            path,
            f"{what} ({shown}) {'is' if len(names) == 1 else 'are'} {_mib(size)} ({size} bytes), "
            f"more than {why} can be (at most {_mib(bound)}, {bound} bytes): not a saved "
            "model, or a damaged one; nothing was read",
        )


def data_size_bound(k: int, d: int, covariance_type: str, files: int) -> int:
    """The most bytes the data files of a spark-em model of ``k`` components of dimension
    ``d`` can hold: each value 8 bytes, twice over (Parquet's levels, a dictionary page,
    compression that did not pay), and 1 MiB of footers and headers per file."""
    values = k + k * d + int(np.prod(covariance(covariance_type).cov_shape(k, d)))
    return 16 * values + (1 << 20) * (1 + files)


def _parse_metadata(path: str, name: str, content: bytes) -> dict:
    try:
        lines = [ln for ln in content.decode("utf-8").splitlines() if ln.strip()]
    except UnicodeDecodeError:
        raise _fail(path, f"{name} is not text") from None
    if len(lines) != 1:
        raise _fail(path, f"{name} has {len(lines)} lines, expected one JSON line")
    try:
        meta = json.loads(lines[0])
    except json.JSONDecodeError as exc:
        raise _fail(path, f"{name} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("class"), str):
        raise _fail(path, f"{name} has no 'class' field")
    return meta


def _format_of(path: str, meta: dict) -> str:
    cls = meta["class"]
    if cls in mllib_import.MLLIB_MODEL_CLASSES:
        return "mllib"
    if cls in OTHER_STAGES:
        raise _fail(path, f"found {OTHER_STAGES[cls]}")
    if cls not in SPARK_EM_CLASSES:
        raise _fail(
            path,
            f"found a saved {cls}, not a Gaussian mixture model (readable: "
            f"spark-em's and MLlib's GaussianMixtureModel)",
        )
    version = meta.get("formatVersion", 1)
    if version not in READABLE_VERSIONS:
        raise _fail(
            path,
            f"formatVersion {version!r} (written by another spark-em version); "
            f"this version reads formatVersion {READABLE_VERSIONS}",
        )
    return "spark-em"


def _dimensions(path: str, meta: dict) -> tuple[int, int, str]:
    k, d, ct = meta.get("k"), meta.get("d"), meta.get("covarianceType")
    for name, value in (("k", k), ("d", d)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _fail(path, f"metadata field {name!r} must be a positive integer, got {value!r}")
    if ct not in COVARIANCE_TYPES:
        raise _fail(
            path, f"metadata field 'covarianceType' must be one of {COVARIANCE_TYPES}, got {ct!r}"
        )
    saved_k = (meta.get("paramMap") or {}).get("k", k)
    if saved_k != k:
        raise _fail(path, f"metadata says k={k} but its paramMap says k={saved_k!r}")
    return k, d, ct


def _read_table(path: str, contents: dict[str, bytes], names: list[str]) -> pa.Table:
    tables = []
    for name in names:
        try:
            tables.append(pq.read_table(pa.BufferReader(contents[name])))
        except Exception as exc:  # truncated or corrupt: pyarrow says what it found
            raise _fail(path, f"{name} is not a readable Parquet file ({_short(exc)})") from None
    try:
        return pa.concat_tables(tables)
    except pa.ArrowInvalid as exc:
        raise _fail(path, f"the data files have different columns ({_short(exc)})") from None


def _spark_em_arrays(path: str, table: pa.Table, k: int, d: int, ct: str) -> list[np.ndarray]:
    if set(table.column_names) != {"name", "shape", "values"}:
        raise _fail(path, f"data has columns {table.column_names}, expected name, shape, values")
    names = table.column("name").to_pylist()
    if sorted(map(str, names)) != sorted(ARRAY_NAMES):
        raise _fail(path, f"data holds the arrays {names}, expected {list(ARRAY_NAMES)} once each")
    expected = {"weights": (k,), "means": (k, d), "covariances": covariance(ct).cov_shape(k, d)}
    shapes = table.column("shape").to_pylist()
    column = table.column("values")
    values_type = column.type
    if not (pa.types.is_list(values_type) or pa.types.is_large_list(values_type)):
        raise _fail(path, f"data's values are {values_type}, expected a list of doubles")
    arrays = {}
    for i, name in enumerate(names):
        shape = tuple(shapes[i] or ())
        if shape != expected[name]:
            raise _fail(
                path,
                f"{name} has shape {shape}, expected {expected[name]} for k={k}, "
                f"d={d}, covarianceType={ct!r}",
            )
        # the row's values as one Arrow array (no Python float per value)
        values = column[i].values
        n = int(np.prod(shape))
        if values is None or len(values) != n or values.null_count:
            raise _fail(
                path,
                f"{name} has {0 if values is None else len(values)} values "
                f"(nulls included), expected {n}",
            )
        try:
            arrays[name] = (
                values.cast(pa.float64()).to_numpy(zero_copy_only=False).reshape(shape).copy()
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise _fail(path, f"{name} has values that are not numbers ({_short(exc)})") from None
    return [arrays[n] for n in ARRAY_NAMES]


def check_values(
    where: str,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    covariance_type: str,
) -> None:
    """Raise :class:`ModelFormatError` (message starting with ``where``) unless every value
    passes :func:`~spark_em.core.parameter_checks.value_problem`."""
    problem = value_problem(weights, means, covariances, covariance_type)
    if problem:
        raise ModelFormatError(f"{where}: {problem}")


def segment_size_bound(count: int, k: int, d: int, covariance_type: str, files: int) -> int:
    """The most bytes the ``segments/`` files of ``count`` segments can hold: as
    :func:`data_size_bound`, and 4 KiB a segment for its key and scalars."""
    per_segment = d + 3 * k + k * d + int(np.prod(second_shape(k, d, covariance_type)))
    return count * (16 * per_segment + 4096) + (1 << 20) * (1 + files)


def load_checked(spark: SparkSession, path: str) -> CheckedModel:
    """Everything :class:`~spark_em.io.persistence.ModelReader` needs from the directory at
    ``path``, checked; raises :class:`ModelFormatError` on the first problem.  No file is
    read whose listed size exceeds what a model's can be (:data:`METADATA_MAX_BYTES`,
    :func:`data_size_bound`, :data:`MLLIB_DATA_MAX_BYTES`)."""
    names = _listing(spark, path) if path else {}
    metadata_name = _metadata_name(path, names)
    metadata_file = {metadata_name: names[metadata_name]}
    _check_size(path, metadata_name, metadata_file, METADATA_MAX_BYTES, "a model's metadata")
    content = _read_bytes(spark, path, metadata_file)[metadata_name]
    meta = _parse_metadata(path, metadata_name, content)
    fmt = _format_of(path, meta)  # before the layout: another stage's files are not stray
    data_names = _data_names(path, names, metadata_name, meta)
    data_files = {n: names[n] for n in data_names}
    if fmt == "mllib":
        bound, why = MLLIB_DATA_MAX_BYTES, "spark-em reads of an MLlib model's data"
    else:
        k, d, ct = _dimensions(path, meta)
        bound = data_size_bound(k, d, ct, len(data_names))
        why = f"the data of k={k}, d={d}, covarianceType={ct!r}"
    _check_size(
        path, "the data files" if len(data_names) > 1 else data_names[0], data_files, bound, why
    )
    contents = _read_bytes(spark, path, data_files)
    table = _read_table(path, contents, data_names)
    if fmt == "mllib":
        try:
            weights, means, covariances = mllib_import.arrays_from_table(table)
        except ValueError as exc:
            raise _fail(path, f"an MLlib GaussianMixtureModel whose data {exc}") from None
        ct = "full"
    else:
        weights, means, covariances = _spark_em_arrays(path, table, k, d, ct)
    check_values(f"cannot load a GaussianMixtureModel from {path}", weights, means, covariances, ct)
    params = GaussianParams.from_covariances(weights, means, covariances, ct)
    entry = meta.get("segments") if fmt != "mllib" else None
    if not entry:
        return CheckedModel(fmt, meta, params)
    seg_names = _parquet_names(names, "segments")
    if not seg_names:
        raise _fail(path, "the metadata lists segments but segments/*.parquet is missing")
    seg_files = {n: names[n] for n in seg_names}
    count = entry.get("count") if isinstance(entry, dict) else None
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise _fail(path, f"metadata field 'segments' has no positive count: {entry!r}")
    bound = segment_size_bound(count, params.k, params.d, ct, len(seg_names))
    why = f"the statistics of {count} segments of k={params.k}, d={params.d}"
    _check_size(path, "the segment files", seg_files, bound, why)
    seg_table = _read_table(path, _read_bytes(spark, path, seg_files), seg_names)
    fail = lambda problem: _fail(path, problem)  # noqa: E731
    segments = segment_files.read_segments(seg_table, entry, params.k, params.d, ct, fail)
    saved = {**(meta.get("defaultParamMap") or {}), **(meta.get("paramMap") or {})}
    segment_files.check_parameters(segments, params, float(saved.get("regCovar", 1e-6)), fail)
    return CheckedModel(fmt, meta, params, segments)
