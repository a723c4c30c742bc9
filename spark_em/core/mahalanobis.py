"""The exact Mahalanobis terms of the E-step, per covariance type: from the differences
``x - mu`` (scikit-learn's stable form), for the components the expanded form cannot give
accurately (:mod:`spark_em.core.densities`) and for :meth:`Full.mahalanobis` and its
twins in :mod:`spark_em.core.covariance`.  Numpy only.

Chunks are transposed: ``xa (d + 1, m)`` holds the centred rows as columns with a row of
ones under them.
"""

from __future__ import annotations

import numpy as np


class FullMahalanobis:
    """Rows ``j*d:(j+1)*d`` of ``u_aug`` are ``[U_j^T | -U_j^T mu_j]``: with the row of ones
    under the chunk, one GEMM gives ``U_j^T (x - mu_j)`` for every component (sklearn's
    stable form, no separate subtraction).  A float32 chunk is computed in float32."""

    def __init__(self, means: np.ndarray, pc: np.ndarray):
        k, d = means.shape
        u_t = pc.transpose(0, 2, 1).reshape(k * d, d)
        shift = np.einsum("kd,kde->ke", means, pc).reshape(k * d, 1)
        self.u_aug = np.ascontiguousarray(np.hstack([u_t, -shift]))
        with np.errstate(over="ignore"):  # out of range: the kernel runs in float64
            self._u_aug32 = self.u_aug.astype(np.float32)
        self.k, self.d = k, d

    def coefficients(self) -> np.ndarray:
        return self.u_aug

    def __call__(self, xa: np.ndarray) -> np.ndarray:
        y = (self._u_aug32 if xa.dtype == np.float32 else self.u_aug) @ xa
        np.square(y, out=y)
        return y.reshape(self.k, self.d, xa.shape[1]).sum(axis=1)

    def one(self, j: int, xa: np.ndarray) -> np.ndarray:
        y = self.u_aug[j * self.d : (j + 1) * self.d] @ xa
        return np.einsum("dm,dm->m", y, y)


class TiedMahalanobis:
    def __init__(self, means: np.ndarray, pc: np.ndarray):
        self.u_t = np.ascontiguousarray(pc.T)
        self.shift = (means @ pc)[:, :, None]  # (k, d, 1)
        with np.errstate(over="ignore"):  # out of range: the kernel runs in float64
            self._single = (self.u_t.astype(np.float32), self.shift.astype(np.float32))

    def coefficients(self) -> np.ndarray:
        return np.concatenate([self.u_t.ravel(), self.shift.ravel()])

    def __call__(self, xa: np.ndarray) -> np.ndarray:
        u_t, shift = self._single if xa.dtype == np.float32 else (self.u_t, self.shift)
        diff = (u_t @ xa[:-1])[None, :, :] - shift
        np.square(diff, out=diff)
        return diff.sum(axis=1)


class VarianceMahalanobis:
    """diag and spherical, from the differences ``x - mu``: the exact form behind the
    expanded one (:class:`~spark_em.core.densities.ExpandedDensity`); ``p2 (k, d)`` are the
    per-feature precisions."""

    def __init__(self, means: np.ndarray, p2: np.ndarray):
        self.means, self.p2 = means, p2

    def one(self, j: int, xa: np.ndarray) -> np.ndarray:
        y = xa[:-1] - self.means[j][:, None]
        return self.p2[j] @ (y * y)

    def __call__(self, xa: np.ndarray) -> np.ndarray:
        return np.stack([self.one(j, xa) for j in range(self.means.shape[0])])
