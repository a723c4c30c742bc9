"""MLlib's ``pyspark.ml.clustering.GaussianMixtureModel`` as spark-em parameters: from the
directory MLlib saves (read by :mod:`spark_em.io.model_directory`) or from a live model.

MLlib's model is always ``covarianceType="full"``.  Its data file is one Parquet row
``(weights array<double>, mus array<vector>, sigmas array<matrix>)``; the vectors and
matrices are Spark's UDT structs, decoded here without Spark.  Of MLlib's Params the model
keeps those that mean the same in spark-em (:data:`SHARED_PARAMS`); not ``tol``, whose rule
differs (MLlib: change of the total log-likelihood, spark-em: of the mean per row).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

__all__ = [
    "MLLIB_MODEL_CLASSES",
    "MLLIB_ESTIMATOR_CLASS",
    "SHARED_PARAMS",
    "arrays_from_table",
    "params_from_metadata",
    "from_live",
]

MLLIB_MODEL_CLASSES = ("org.apache.spark.ml.clustering.GaussianMixtureModel",)
MLLIB_ESTIMATOR_CLASS = "org.apache.spark.ml.clustering.GaussianMixture"
SHARED_PARAMS = (
    "k",
    "maxIter",
    "seed",
    "aggregationDepth",
    "featuresCol",
    "weightCol",
    "predictionCol",
    "probabilityCol",
)


def _vector(v: dict) -> np.ndarray:
    """A ``VectorUDT`` struct (type 0 sparse: size/indices/values, 1 dense: values)."""
    values = np.asarray(v["values"] or [], dtype=np.float64)
    if v["type"] == 1:
        return values
    out = np.zeros(int(v["size"]))
    out[np.asarray(v["indices"] or [], dtype=np.int64)] = values
    return out


def _matrix(m: dict) -> np.ndarray:
    """A ``MatrixUDT`` struct (type 1 dense, column-major unless transposed; type 0 sparse
    CSC, CSR when transposed)."""
    rows, cols = int(m["numRows"]), int(m["numCols"])
    values = np.asarray(m["values"] or [], dtype=np.float64)
    if m["type"] == 1:
        if m["isTransposed"]:
            return values.reshape(rows, cols)
        return values.reshape(cols, rows).T
    major, minor = (rows, cols) if m["isTransposed"] else (cols, rows)
    out = np.zeros((major, minor))
    ptrs, idx = m["colPtrs"], m["rowIndices"]
    for j in range(major):
        out[j, idx[ptrs[j] : ptrs[j + 1]]] = values[ptrs[j] : ptrs[j + 1]]
    return out if m["isTransposed"] else out.T


def arrays_from_table(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(weights (k,), means (k, d), covariances (k, d, d))`` from MLlib's data table;
    ``ValueError`` saying what is wrong with it otherwise."""
    if not {"weights", "mus", "sigmas"} <= set(table.column_names):
        raise ValueError(f"has columns {table.column_names}, expected weights, mus, sigmas")
    rows = table.to_pylist()
    if len(rows) != 1:
        raise ValueError(f"has {len(rows)} rows, expected one")
    row = rows[0]
    if not row["weights"] or row["mus"] is None or row["sigmas"] is None:
        raise ValueError("has null or empty weights, mus or sigmas")
    try:
        weights = np.asarray(row["weights"], dtype=np.float64)
        means = np.stack([_vector(v) for v in row["mus"]])
        covs = np.stack([_matrix(m) for m in row["sigmas"]])
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise ValueError(f"has malformed vectors or matrices ({exc})") from None
    k, d = means.shape
    if weights.shape != (k,) or covs.shape != (k, d, d):
        raise ValueError(
            f"has inconsistent shapes: weights {weights.shape}, mus {means.shape}, "
            f"sigmas {covs.shape}"
        )
    return weights, means, covs


def params_from_metadata(meta: dict) -> dict[str, Any]:
    """MLlib's Param values (set ones over defaults) that spark-em's model shares."""
    values = {**(meta.get("defaultParamMap") or {}), **(meta.get("paramMap") or {})}
    return {name: values[name] for name in SHARED_PARAMS if name in values}


def from_live(model) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """``(weights, means, covariances, shared Params)`` of a fitted
    ``pyspark.ml.clustering.GaussianMixtureModel`` (classic or Spark Connect)."""
    if not (
        hasattr(model, "gaussians") and hasattr(model, "weights") and hasattr(model, "getOrDefault")
    ):
        raise TypeError(
            f"fromMLlib expects a fitted pyspark.ml.clustering.GaussianMixtureModel, got "
            f"{type(model).__name__}"
        )
    gaussians = model.gaussians
    weights = np.asarray(model.weights, dtype=np.float64)
    means = np.stack([np.asarray(g.mean.toArray(), dtype=np.float64) for g in gaussians])
    covs = np.stack([np.asarray(g.cov.toArray(), dtype=np.float64) for g in gaussians])
    params = {
        name: model.getOrDefault(name)
        for name in SHARED_PARAMS
        if model.hasParam(name) and model.isDefined(name)
    }
    return weights, means, covs, params
