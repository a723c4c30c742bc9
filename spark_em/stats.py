"""Sufficient statistics of a Gaussian mixture: computed per block, added, turned into an M-step.

Pure numpy; no Spark import.  A block is ``Xc: (n, d) float64`` already centred on the fit's
centre ``c0`` plus row weights ``w: (n,)``.  Statistics are moments about ``c0``:

* ``nk (k,)``        N_k = sum_i w_i r_ik
* ``sk (k, d)``      sum_i w_i r_ik (x_i - c0)
* ``second``         full ``(k, d, d)``: sum_i w_i r_ik (x_i-c0)(x_i-c0)^T;
                     tied ``(d, d)``: sum_i w_i (x_i-c0)(x_i-c0)^T (the responsibilities sum to 1);
                     diag / spherical ``(k, d)``: sum_i w_i r_ik (x_i-c0)^2
* ``log_likelihood`` sum_i w_i log p(x_i) under the parameters of the E-step
* ``weight_sum``, ``n_rows``, ``hard_counts (k,)`` (rows whose most probable component is k)

They add (:meth:`SuffStats.__add__`) and pack into one flat float64 vector, which is what
crosses the wire between Spark tasks and the driver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gaussian import (
    GaussianParams,
    LOG_2PI,
    compute_precisions_cholesky,
    log_det_cholesky,
    logsumexp_rows,
)

# Rows per chunk in the kernels are chosen so that the (rows, k*d) temporaries stay around
# this many float64 elements (a few MB: they stay in cache and no block blows up memory).
_CHUNK_ELEMENTS = 1 << 19


def second_shape(k: int, d: int, covariance_type: str) -> tuple[int, ...]:
    if covariance_type == "full":
        return (k, d, d)
    if covariance_type == "tied":
        return (d, d)
    return (k, d)


def packed_size(k: int, d: int, covariance_type: str) -> int:
    return 3 + 2 * k + k * d + int(np.prod(second_shape(k, d, covariance_type)))


@dataclass
class SuffStats:
    """Mergeable sufficient statistics of one mixture (moments about the fit's centre)."""

    covariance_type: str
    nk: np.ndarray
    sk: np.ndarray
    second: np.ndarray
    log_likelihood: float = 0.0
    weight_sum: float = 0.0
    n_rows: float = 0.0
    hard_counts: np.ndarray | None = None

    @property
    def k(self) -> int:
        return int(self.nk.shape[0])

    @property
    def d(self) -> int:
        return int(self.sk.shape[1])

    @classmethod
    def zeros(cls, k: int, d: int, covariance_type: str) -> "SuffStats":
        return cls(
            covariance_type,
            np.zeros(k),
            np.zeros((k, d)),
            np.zeros(second_shape(k, d, covariance_type)),
            0.0,
            0.0,
            0.0,
            np.zeros(k),
        )

    def __add__(self, other: "SuffStats") -> "SuffStats":
        if (self.covariance_type, self.k, self.d) != (other.covariance_type, other.k, other.d):
            raise ValueError("cannot add statistics of different mixtures")
        return SuffStats(
            self.covariance_type,
            self.nk + other.nk,
            self.sk + other.sk,
            self.second + other.second,
            self.log_likelihood + other.log_likelihood,
            self.weight_sum + other.weight_sum,
            self.n_rows + other.n_rows,
            self.hard_counts + other.hard_counts,
        )

    def pack(self) -> np.ndarray:
        """Flat float64 vector of length :func:`packed_size`."""
        return np.concatenate(
            [
                [self.log_likelihood, self.weight_sum, self.n_rows],
                self.nk,
                self.hard_counts,
                self.sk.ravel(),
                self.second.ravel(),
            ]
        )

    @classmethod
    def unpack(cls, flat: np.ndarray, k: int, d: int, covariance_type: str) -> "SuffStats":
        flat = np.asarray(flat, dtype=np.float64)
        if flat.shape != (packed_size(k, d, covariance_type),):
            raise ValueError("packed statistics have the wrong length")
        ll, wsum, nrows = flat[:3]
        o = 3
        nk = flat[o : o + k]
        o += k
        hard = flat[o : o + k]
        o += k
        sk = flat[o : o + k * d].reshape(k, d)
        o += k * d
        second = flat[o:].reshape(second_shape(k, d, covariance_type))
        return cls(covariance_type, nk, sk, second, float(ll), float(wsum), float(nrows), hard)

    # ------------------------------------------------------------------ M-step
    def m_step(self, centre: np.ndarray, reg_covar: float) -> GaussianParams:
        """New parameters (in data coordinates) from the statistics, as sklearn's M-step.

        Like sklearn, ``10 * eps`` is added to N_k so that an empty component gives a
        finite mean instead of NaN; ``reg_covar`` is added to the covariance diagonal.
        Raises :class:`~spark_em.gaussian.IllDefinedCovarianceError` for a covariance that
        stays singular.
        """
        ct = self.covariance_type
        k, d = self.k, self.d
        nk = self.nk + 10.0 * np.finfo(np.float64).eps
        means_c = self.sk / nk[:, None]  # means about the centre
        if ct == "full":
            # sum r (x-mu)(x-mu)^T = M - mu S^T - S mu^T + (sum r) mu mu^T
            ms = np.einsum("ki,kj->kij", means_c, self.sk)
            cov = self.second - ms - ms.transpose(0, 2, 1)
            cov += self.nk[:, None, None] * np.einsum("ki,kj->kij", means_c, means_c)
            cov /= nk[:, None, None]
            cov = 0.5 * (cov + cov.transpose(0, 2, 1))
            cov[:, np.arange(d), np.arange(d)] += reg_covar
        elif ct == "tied":
            cov = self.second - (nk[:, None] * means_c).T @ means_c
            cov /= nk.sum()
            cov = 0.5 * (cov + cov.T)
            cov.flat[:: d + 1] += reg_covar
        else:
            var = self.second / nk[:, None] - means_c**2 + reg_covar
            cov = var if ct == "diag" else var.mean(axis=1)
        weights = nk / nk.sum()
        pc = compute_precisions_cholesky(cov, ct, reg_covar)
        return GaussianParams(weights, means_c + centre, cov, pc, ct)


# ---------------------------------------------------------------------------------------
# Accumulation kernels (run inside Spark tasks on whole blocks)
# ---------------------------------------------------------------------------------------
def _chunks(n: int, width: int):
    step = max(256, _CHUNK_ELEMENTS // max(width, 1))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def accumulate_resp(
    stats: SuffStats, Xc: np.ndarray, w: np.ndarray, resp: np.ndarray
) -> None:
    """Add one block's moments for responsibilities ``resp (n, k)`` into ``stats``."""
    rw = resp * w[:, None]
    stats.nk += rw.sum(axis=0)
    stats.sk += rw.T @ Xc
    ct = stats.covariance_type
    if ct == "full":
        for j in range(stats.k):
            stats.second[j] += (Xc * rw[:, j : j + 1]).T @ Xc
    elif ct == "tied":
        stats.second += (Xc * w[:, None]).T @ Xc
    else:
        stats.second += rw.T @ (Xc * Xc)
    stats.weight_sum += float(w.sum())
    stats.n_rows += Xc.shape[0]
    stats.hard_counts += np.bincount(np.argmax(resp, axis=1), minlength=stats.k)


class EStepKernel:
    """E-step for one mixture, prepared once on the driver and shipped to the tasks.

    ``params`` are in data coordinates; ``centre`` is the fit's centre ``c0``; the kernel
    works on centred blocks.
    """

    def __init__(self, params: GaussianParams, centre: np.ndarray):
        p = params.shifted(centre)
        self.covariance_type = p.covariance_type
        self.k, self.d = p.k, p.d
        k, d = self.k, self.d
        pc = p.precisions_cholesky
        self.log_weights = np.log(p.weights)
        self.const = log_det_cholesky(pc, p.covariance_type, d) - 0.5 * d * LOG_2PI
        self.means = p.means
        ct = p.covariance_type
        if ct == "full":
            self.u_all = np.ascontiguousarray(pc.transpose(1, 0, 2).reshape(d, k * d))
            self.shift = np.einsum("kd,kde->ke", p.means, pc).reshape(k * d)
        elif ct == "tied":
            self.u = pc
            self.shift = p.means @ pc
        elif ct == "diag":
            self.p2 = pc**2
            self.lin = p.means * self.p2  # (k, d)
            self.quad = np.einsum("kd,kd->k", p.means**2, self.p2)
        else:
            self.p2 = pc**2
            self.quad = np.einsum("kd,kd->k", p.means, p.means)

    def log_prob(self, Xc: np.ndarray) -> np.ndarray:
        """log pi_k + log N(x | mu_k, Sigma_k) for a centred block: (n, k)."""
        n = Xc.shape[0]
        k, d = self.k, self.d
        ct = self.covariance_type
        if ct == "full":
            y = Xc @ self.u_all
            y -= self.shift
            np.square(y, out=y)
            maha = y.reshape(n, k, d).sum(axis=2)
        elif ct == "tied":
            y = Xc @ self.u
            diff = y[:, None, :] - self.shift[None, :, :]
            maha = np.einsum("nkd,nkd->nk", diff, diff)
        elif ct == "diag":
            maha = (Xc * Xc) @ self.p2.T - 2.0 * (Xc @ self.lin.T) + self.quad
            np.maximum(maha, 0.0, out=maha)
        else:
            sq = np.einsum("nd,nd->n", Xc, Xc)[:, None] - 2.0 * (Xc @ self.means.T) + self.quad
            np.maximum(sq, 0.0, out=sq)
            maha = sq * self.p2
        out = -0.5 * maha
        out += self.const
        out += self.log_weights
        return out

    def new_stats(self, d: int) -> SuffStats:
        return SuffStats.zeros(self.k, d, self.covariance_type)

    def accumulate(self, stats: SuffStats, Xc: np.ndarray, w: np.ndarray, block_key=None) -> None:
        """Add the E-step statistics (and the log-likelihood) of one centred block."""
        for sl in _chunks(Xc.shape[0], self.k * self.d):
            x, ww = Xc[sl], w[sl]
            lp = self.log_prob(x)
            lse = logsumexp_rows(lp)
            resp = np.exp(lp - lse[:, None])
            stats.log_likelihood += float(ww @ lse)
            accumulate_resp(stats, x, ww, resp)


def nearest_centre_resp(Xc: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """One-hot responsibilities of the nearest centre (centres in the same coordinates)."""
    d2 = (
        np.einsum("nd,nd->n", Xc, Xc)[:, None]
        - 2.0 * (Xc @ centres.T)
        + np.einsum("kd,kd->k", centres, centres)[None, :]
    )
    labels = np.argmin(d2, axis=1)
    resp = np.zeros((Xc.shape[0], centres.shape[0]))
    resp[np.arange(Xc.shape[0]), labels] = 1.0
    return resp


class NearestCentreTask:
    """Statistics of hard assignments to the nearest of ``centres`` (k-means style init)."""

    def __init__(self, centres: np.ndarray, centre: np.ndarray, covariance_type: str):
        self.centres = np.asarray(centres, dtype=np.float64) - centre
        self.covariance_type = covariance_type
        self.k = self.centres.shape[0]

    def new_stats(self, d: int) -> SuffStats:
        return SuffStats.zeros(self.k, d, self.covariance_type)

    def accumulate(self, stats: SuffStats, Xc: np.ndarray, w: np.ndarray, block_key=None) -> None:
        for sl in _chunks(Xc.shape[0], self.k):
            accumulate_resp(stats, Xc[sl], w[sl], nearest_centre_resp(Xc[sl], self.centres))


class RandomRespTask:
    """Statistics of uniformly random responsibilities, normalised per row (sklearn's
    ``init_params="random"``).  The random stream of a block depends only on the seed and
    the block's key (partition, block number), so a fit is reproducible."""

    def __init__(self, k: int, seed: int, covariance_type: str):
        self.k, self.seed, self.covariance_type = k, int(seed), covariance_type

    def new_stats(self, d: int) -> SuffStats:
        return SuffStats.zeros(self.k, d, self.covariance_type)

    def accumulate(self, stats: SuffStats, Xc: np.ndarray, w: np.ndarray, block_key=(0, 0)) -> None:
        rng = np.random.default_rng([self.seed, *block_key])
        resp = rng.uniform(size=(Xc.shape[0], self.k))
        resp /= resp.sum(axis=1, keepdims=True)
        accumulate_resp(stats, Xc, w, resp)
