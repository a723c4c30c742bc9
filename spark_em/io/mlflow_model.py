"""A fitted model in MLflow's model format: a ``python_function`` (pyfunc) flavour that scores
a pandas DataFrame without Spark, so that the model can be registered, served and loaded
with ``mlflow.pyfunc.load_model``.

:func:`write_pyfunc_data` writes the flavour's data directory (the mixture's arrays as
``.npz``, read back with ``allow_pickle=False``, and the features column as JSON); MLflow
calls :func:`_load_pyfunc` on it (``loader_module="spark_em.io.mlflow_model"``), which
returns a :class:`PyfuncGaussianMixture`.  Its ``predict`` takes the model's feature
columns (a list of numeric columns, or one column of arrays) and returns ``prediction``,
``probability`` and ``log_likelihood`` per row -- the same numbers as ``transform``, by
the fit's own E-step (:func:`spark_em.core.estep.log_responsibilities`).  Rows with a
missing or non-finite feature get null outputs (``handleInvalid="skip"``).
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..core.estep import log_responsibilities
from ..core.mixture import GaussianParams

__all__ = ["PyfuncGaussianMixture", "write_pyfunc_data", "LOADER_MODULE"]

LOADER_MODULE = "spark_em.io.mlflow_model"
_ARRAYS, _META = "mixture.npz", "model.json"


def write_pyfunc_data(params: GaussianParams, features, path: str) -> None:
    """The flavour's data directory at ``path`` (created)."""
    os.makedirs(path, exist_ok=True)
    np.savez(
        os.path.join(path, _ARRAYS),
        weights=params.weights,
        means=params.means,
        covariances=params.covariances,
    )
    with open(os.path.join(path, _META), "w") as fh:
        json.dump({"covarianceType": params.covariance_type, "featuresCol": features}, fh)


class PyfuncGaussianMixture:
    """The pyfunc model: ``predict(pandas DataFrame) -> pandas DataFrame``."""

    def __init__(self, params: GaussianParams, features):
        self.params, self.features = params, features

    def _matrix(self, frame) -> np.ndarray:
        import pandas as pd

        if isinstance(self.features, list):
            missing = [c for c in self.features if c not in frame.columns]
            if missing:
                raise ValueError(f"the input has no feature column {missing[0]!r}")
            return frame[self.features].apply(pd.to_numeric).to_numpy(dtype=np.float64)
        if self.features not in frame.columns:
            raise ValueError(f"the input has no features column {self.features!r}")
        d = self.params.d
        rows = [
            np.full(d, np.nan)
            if v is None or np.size(v) != d
            else np.asarray(v, dtype=np.float64).ravel()
            for v in frame[self.features]
        ]
        return np.vstack(rows) if rows else np.zeros((0, d))

    def predict(self, frame, params=None):
        import pandas as pd

        X = self._matrix(frame)
        ok = np.isfinite(X).all(axis=1)
        k = self.params.k
        ll = np.full(X.shape[0], np.nan)
        prob = np.full((X.shape[0], k), np.nan)
        if ok.any():
            ll[ok], log_resp = log_responsibilities(self.params, X[ok])
            prob[ok] = np.exp(log_resp)
        prediction = pd.array(
            [int(np.argmax(p)) if good else None for p, good in zip(prob, ok)], dtype="Int64"
        )
        return pd.DataFrame(
            {
                "prediction": prediction,
                "probability": [p.tolist() if good else None for p, good in zip(prob, ok)],
                "log_likelihood": np.where(ok, ll, np.nan),
            },
            index=frame.index,
        )


def _load_pyfunc(path: str) -> PyfuncGaussianMixture:
    """MLflow's entry point for the flavour's data directory."""
    with open(os.path.join(path, _META)) as fh:
        meta = json.load(fh)
    with np.load(os.path.join(path, _ARRAYS), allow_pickle=False) as z:
        params = GaussianParams.from_covariances(
            z["weights"], z["means"], z["covariances"], meta["covarianceType"]
        )
    return PyfuncGaussianMixture(params, meta["featuresCol"])
