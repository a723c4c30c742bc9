"""Saving and loading models and estimators: JSON metadata (pyspark.ml's
``DefaultParamsWriter`` format) and the numeric arrays as one Parquet file.

Layout of a saved model::

    path/metadata/   one JSON line: class, uid, paramMap, defaultParamMap, k, d,
                     covarianceType, summary (or null)
    path/data/       Parquet rows (name, shape, values) for weights, means, covariances

A saved estimator is its metadata (every Param but ``initialModel``) and, if it has one, the
initial model saved as above under ``path/initialModel``.

The readers do not check the metadata's ``class``: models saved before the API was split
into modules name ``spark_em.estimator.GaussianMixtureModel``, which still loads (and still
imports, for pyspark's generic loaders such as ``PipelineModel.load``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReader, MLWriter
from pyspark.sql import SparkSession

from .fs import atomic_write
from .gaussian import GaussianParams
from .summary import GaussianMixtureSummary

if TYPE_CHECKING:
    from .estimator import GaussianMixture
    from .model import GaussianMixtureModel

__all__ = [
    "ModelWriter", "ModelReader", "EstimatorWriter", "EstimatorReader",
    "write_arrays", "read_arrays",
]


class AtomicWriter(MLWriter):
    """Saves through Spark's writers into the cluster's file system (any URI Spark writes);
    on classic Spark into a temporary sibling that is then renamed (see :mod:`spark_em.fs`)."""

    def __init__(self, instance) -> None:
        super().__init__()
        self.instance = instance

    def save(self, path: str) -> None:
        if not isinstance(path, str):
            raise TypeError(f"path should be a string, got {type(path)}")
        atomic_write(self.sparkSession, path, self.shouldOverwrite, self.saveImpl)


class ModelWriter(AtomicWriter):
    def saveImpl(self, path: str) -> None:
        p = self.instance._gaussian
        summary = self.instance._summary
        extra = {
            "covarianceType": p.covariance_type,
            "k": p.k,
            "d": p.d,
            "summary": summary.to_json() if summary is not None else None,
        }
        write_arrays(self.sparkSession, f"{path}/data", {
            "weights": p.weights, "means": p.means, "covariances": p.covariances,
        })
        # Metadata last: where the save is not atomic (Spark Connect), a save that failed
        # half-way has no metadata and cannot be loaded.
        DefaultParamsWriter.saveMetadata(self.instance, path, self.sparkSession, extraMetadata=extra)


class ModelReader(MLReader):
    """Loads a model saved by :class:`ModelWriter` as an instance of ``cls``."""

    def __init__(self, cls: type[GaussianMixtureModel]) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> GaussianMixtureModel:
        spark = self.sparkSession
        meta = DefaultParamsReader.loadMetadata(path, spark)
        arrays = read_arrays(spark, f"{path}/data")
        k, d, ct = int(meta["k"]), int(meta["d"]), meta["covarianceType"]
        shapes = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}
        params = GaussianParams.from_covariances(
            arrays["weights"].reshape(k), arrays["means"].reshape(k, d),
            arrays["covariances"].reshape(shapes[ct]), ct,
        )
        summary = GaussianMixtureSummary(**meta["summary"]) if meta.get("summary") else None
        model = self.cls(params, summary)
        model._resetUid(meta["uid"])
        DefaultParamsReader.getAndSetParams(model, meta)
        return model


def write_arrays(spark: SparkSession, path: str, arrays: dict[str, np.ndarray]) -> None:
    """One Parquet file of rows ``(name, shape, values)``, values flattened in C order."""
    rows = [(name, list(a.shape), np.ravel(a).astype(float).tolist()) for name, a in arrays.items()]
    spark.createDataFrame(rows, "name string, shape array<int>, values array<double>") \
        .coalesce(1).write.parquet(path)


def read_arrays(spark: SparkSession, path: str) -> dict[str, np.ndarray]:
    """The arrays written by :func:`write_arrays`, float64 in their shapes."""
    return {
        r["name"]: np.asarray(r["values"], dtype=np.float64).reshape(r["shape"])
        for r in spark.read.parquet(path).collect()
    }


class EstimatorWriter(AtomicWriter):
    def saveImpl(self, path: str) -> None:
        inst = self.instance
        params = {p.name: v for p, v in inst._paramMap.items() if p.name != "initialModel"}
        init = inst.getInitialModel()
        extra = {"hasInitialModel": init is not None}
        if init is not None:
            ModelWriter(init).session(self.sparkSession).saveImpl(f"{path}/initialModel")
        DefaultParamsWriter.saveMetadata(  # last, as in ModelWriter
            inst, path, self.sparkSession, extraMetadata=extra, paramMap=params
        )


class EstimatorReader(MLReader):
    """Loads an estimator saved by :class:`EstimatorWriter` as an instance of ``cls``; its
    initial model, if any, as an instance of ``model_cls``."""

    def __init__(self, cls: type[GaussianMixture], model_cls: type[GaussianMixtureModel]) -> None:
        super().__init__()
        self.cls = cls
        self.model_cls = model_cls

    def load(self, path: str) -> GaussianMixture:
        spark = self.sparkSession
        meta = DefaultParamsReader.loadMetadata(path, spark)
        est = self.cls()
        est._resetUid(meta["uid"])
        meta["paramMap"].pop("initialModel", None)
        meta.get("defaultParamMap", {}).pop("initialModel", None)
        DefaultParamsReader.getAndSetParams(est, meta)
        if meta.get("hasInitialModel"):
            est.setInitialModel(ModelReader(self.model_cls).session(spark).load(f"{path}/initialModel"))
        return est
