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

# Rows per chunk in the kernels are chosen so that the (k*d, rows) temporaries stay around
# this many float64 elements, and at least 512 rows (a few MB: they stay in cache, no block
# blows up memory, and the GEMMs stay long enough to run near their peak).
_CHUNK_ELEMENTS = 1 << 18

# A responsibility below exp(-200) ~ 1e-87 of its row's largest one is flushed to exactly 0.
# It changes no sum in float64 (each row's largest responsibility is 1 before normalising),
# but such tiny values, multiplied by small products x_i x_j inside the GEMMs, give
# subnormal numbers, which make the GEMMs up to 10x slower.
_FLUSH_BELOW = -200.0

# Up to this dimension the full-covariance scatter is one GEMM against the row-wise
# products x_i x_j (i <= j); above it, one symmetric rank-m update (syrk) per component.
_PRODUCTS_MAX_D = 48


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
#
# Inside a block the kernels work on row chunks in transposed layout: ``xt (d, m)`` and
# responsibilities ``(k, m)``, so that every step is a GEMM or a contiguous elementwise
# operation over one chunk, with no per-component temporaries of the size of the data.
# ---------------------------------------------------------------------------------------
def _chunk_rows(width: int) -> int:
    return int(min(8192, max(512, _CHUNK_ELEMENTS // max(width, 1))))


def _chunks(n: int, width: int):
    step = _chunk_rows(width)
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


class _Products:
    """Row-wise products ``x_i x_j`` (i <= j) of a chunk, ``(d(d+1)/2, m)``, and their
    mapping back to symmetric ``(d, d)`` matrices."""

    def __init__(self, d: int):
        self.d = d
        self.iu, self.ju = np.triu_indices(d)
        self.size = self.iu.shape[0]

    def of(self, xt: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        d, m = xt.shape
        q = np.empty((self.size, m)) if out is None else out[:, :m]
        off = 0
        for i in range(d):
            np.multiply(xt[i], xt[i:], out=q[off : off + d - i])
            off += d - i
        return q

    def add_symmetric(self, target: np.ndarray, upper: np.ndarray) -> None:
        """target (k, d, d) += symmetric matrices from their upper triangles (k, size)."""
        full = np.zeros_like(target)
        full[:, self.iu, self.ju] = upper
        full[:, self.ju, self.iu] = upper
        target += full


def _scatter_full(second: np.ndarray, xt: np.ndarray, rwt: np.ndarray, products, buf) -> None:
    """second (k, d, d) += sum_i rw_ki x_i x_i^T for a chunk ``xt (d, m)``, ``rwt (k, m)``."""
    if products is not None:
        q = products.of(xt, buf)
        products.add_symmetric(second, rwt @ q.T)
        return
    sq = np.sqrt(rwt)
    for j in range(rwt.shape[0]):
        z = xt * sq[j]  # (d, m)
        second[j] += z @ z.T  # numpy computes A @ A.T as one symmetric rank-m update (syrk)


def _accumulate_t(stats: SuffStats, xt: np.ndarray, w: np.ndarray, rwt: np.ndarray,
                  hard: np.ndarray, products=None, buf=None) -> None:
    """Add a chunk's moments; ``rwt (k, m)`` are weighted responsibilities, ``hard (m,)``
    the index of each row's most probable component."""
    stats.nk += rwt.sum(axis=1)
    stats.sk += rwt @ xt.T
    ct = stats.covariance_type
    if ct == "full":
        _scatter_full(stats.second, xt, rwt, products, buf)
    elif ct == "tied":
        xw = xt * w
        stats.second += xw @ xt.T
    else:
        stats.second += rwt @ (xt * xt).T
    stats.weight_sum += float(w.sum())
    stats.n_rows += xt.shape[1]
    stats.hard_counts += np.bincount(hard, minlength=stats.k)


def _products_for(covariance_type: str, d: int):
    return _Products(d) if covariance_type == "full" and d <= _PRODUCTS_MAX_D else None


def accumulate_resp(
    stats: SuffStats, Xc: np.ndarray, w: np.ndarray, resp: np.ndarray
) -> None:
    """Add one block's moments for responsibilities ``resp (n, k)`` into ``stats``."""
    products = _products_for(stats.covariance_type, stats.d)
    for sl in _chunks(Xc.shape[0], max(stats.k * stats.d, products.size if products else 0)):
        xt = np.ascontiguousarray(Xc[sl].T)
        r = resp[sl]
        _accumulate_t(stats, xt, w[sl], np.ascontiguousarray(r.T) * w[sl],
                      np.argmax(r, axis=1), products)


def _responsibilities_t(lp: np.ndarray):
    """In place: log-probabilities ``lp (k, m)`` -> responsibilities; returns
    ``(log p(x) (m,), most probable component (m,))``."""
    hard = np.argmax(lp, axis=0)
    top = lp.max(axis=0)
    finite = np.isfinite(top)
    if not finite.all():
        top = np.where(finite, top, 0.0)
    lp -= top
    lp[lp < _FLUSH_BELOW] = -np.inf
    np.exp(lp, out=lp)
    total = lp.sum(axis=0)
    lp /= total
    return np.log(total) + top, hard


class EStepKernel:
    """E-step for one mixture, prepared once on the driver and shipped to the tasks.

    ``params`` are in data coordinates; ``centre`` is the fit's centre ``c0``; the kernel
    works on centred blocks.  Full covariances: the Mahalanobis terms of every component
    come from one GEMM ``[U_1 ... U_k]^T x`` (stable: ``||U_k^T (x - mu_k)||^2`` as sklearn),
    the scatter from one GEMM against the row-wise products ``x_i x_j``.
    """

    def __init__(self, params: GaussianParams, centre: np.ndarray, moments: bool = True):
        p = params.shifted(centre)
        # moments=False: only the log-likelihood, N_k and the hard counts (a scoring pass;
        # ``sk`` and ``second`` stay zero), which skips the scatter.
        self.moments = moments
        self.covariance_type = p.covariance_type
        self.k, self.d = p.k, p.d
        k, d = self.k, self.d
        pc = p.precisions_cholesky
        self.log_weights = np.log(p.weights)
        self.const = log_det_cholesky(pc, p.covariance_type, d) - 0.5 * d * LOG_2PI
        self.offset = (self.const + self.log_weights)[:, None]  # (k, 1)
        self.means = p.means
        ct = p.covariance_type
        if ct == "full":
            # rows j*d:(j+1)*d are [U_j^T | -U_j^T mu_j]: with a row of ones under the chunk,
            # one GEMM gives U_j^T (x - mu_j) for every component (no separate subtraction)
            u_t = pc.transpose(0, 2, 1).reshape(k * d, d)
            shift = np.einsum("kd,kde->ke", p.means, pc).reshape(k * d, 1)
            self.u_aug = np.ascontiguousarray(np.hstack([u_t, -shift]))
        elif ct == "tied":
            self.u_t = np.ascontiguousarray(pc.T)
            self.shift = (p.means @ pc)[:, :, None]  # (k, d, 1)
        elif ct == "diag":
            self.p2 = pc**2
            self.lin = p.means * self.p2  # (k, d)
            self.quad = np.einsum("kd,kd->k", p.means**2, self.p2)[:, None]
        else:
            self.p2 = (pc**2)[:, None]
            self.quad = np.einsum("kd,kd->k", p.means, p.means)[:, None]

    def _log_prob_t(self, xa: np.ndarray) -> np.ndarray:
        """log pi_k + log N(x | mu_k, Sigma_k) for a centred chunk ``xa (d + 1, m)`` whose
        last row is ones (the rows above it are ``xt``): (k, m)."""
        m = xa.shape[1]
        k, d = self.k, self.d
        xt = xa[:d]
        ct = self.covariance_type
        if ct == "full":
            y = self.u_aug @ xa
            np.square(y, out=y)
            maha = y.reshape(k, d, m).sum(axis=1)
        elif ct == "tied":
            diff = (self.u_t @ xt)[None, :, :] - self.shift
            np.square(diff, out=diff)
            maha = diff.sum(axis=1)
        elif ct == "diag":
            maha = self.p2 @ (xt * xt)
            maha -= 2.0 * (self.lin @ xt)
            maha += self.quad
            np.maximum(maha, 0.0, out=maha)
        else:
            sq = np.einsum("dm,dm->m", xt, xt)[None, :] - 2.0 * (self.means @ xt) + self.quad
            np.maximum(sq, 0.0, out=sq)
            maha = sq * self.p2
        maha *= -0.5
        maha += self.offset
        return maha

    def new_stats(self, d: int) -> SuffStats:
        return SuffStats.zeros(self.k, d, self.covariance_type)

    def accumulate(self, stats: SuffStats, Xc: np.ndarray, w: np.ndarray, block_key=None) -> None:
        """Add the E-step statistics (and the log-likelihood) of one centred block."""
        products = _products_for(self.covariance_type, self.d) if self.moments else None
        width = max(self.k * self.d, products.size if products else 0)
        step = _chunk_rows(width)
        buf = np.empty((products.size, step)) if products else None
        for start in range(0, Xc.shape[0], step):
            sl = slice(start, start + step)
            xa = np.empty((self.d + 1, min(step, Xc.shape[0] - start)))
            xa[:-1] = Xc[sl].T
            xa[-1] = 1.0
            xt = xa[:-1]  # C-contiguous (d, m)
            ww = w[sl]
            lp = self._log_prob_t(xa)
            ll, hard = _responsibilities_t(lp)
            stats.log_likelihood += float(ll @ ww)
            lp *= ww
            if self.moments:
                _accumulate_t(stats, xt, ww, lp, hard, products, buf)
            else:
                stats.nk += lp.sum(axis=1)
                stats.weight_sum += float(ww.sum())
                stats.n_rows += xt.shape[1]
                stats.hard_counts += np.bincount(hard, minlength=self.k)


class NearestCentreTask:
    """Statistics of hard assignments to the nearest of ``centres`` (k-means style init)."""

    def __init__(self, centres: np.ndarray, centre: np.ndarray, covariance_type: str):
        self.centres = np.asarray(centres, dtype=np.float64) - centre
        self.covariance_type = covariance_type
        self.k = self.centres.shape[0]

    def new_stats(self, d: int) -> SuffStats:
        return SuffStats.zeros(self.k, d, self.covariance_type)

    def accumulate(self, stats: SuffStats, Xc: np.ndarray, w: np.ndarray, block_key=None) -> None:
        n, d = Xc.shape
        k = self.k
        # argmin ||x - c||^2 = argmin (||c||^2 - 2 c.x): the ||x||^2 term is common
        sq_centres = np.einsum("kd,kd->k", self.centres, self.centres)
        if self.covariance_type != "full":
            rows = np.arange(_chunk_rows(k * d))
            for sl in _chunks(n, k * d):
                xt = np.ascontiguousarray(Xc[sl].T)
                labels = np.argmin(sq_centres[:, None] - 2.0 * (self.centres @ xt), axis=0)
                rwt = np.zeros((k, xt.shape[1]))
                rwt[labels, rows[: xt.shape[1]]] = w[sl]
                _accumulate_t(stats, xt, w[sl], rwt, labels)
            return
        labels = np.empty(n, dtype=np.intp)
        for sl in _chunks(n, k * d):
            labels[sl] = np.argmin(sq_centres - 2.0 * (Xc[sl] @ self.centres.T), axis=1)
        # Full covariances from hard labels: each row adds to its own component only.  Rows
        # sorted by label once, then one syrk per component over its contiguous rows: n d^2
        # in all, not k n d^2.
        counts = np.bincount(labels, minlength=k)
        order = np.argsort(labels, kind="stable")
        Xs, ws = Xc[order], w[order]
        bounds = np.concatenate([[0], np.cumsum(counts)])
        for j in np.flatnonzero(counts):
            sl = slice(bounds[j], bounds[j + 1])
            Xj, wj = Xs[sl], ws[sl]
            stats.nk[j] += wj.sum()
            stats.sk[j] += wj @ Xj
            z = Xj * np.sqrt(wj)[:, None]
            stats.second[j] += z.T @ z  # one symmetric rank update (syrk)
        stats.weight_sum += float(w.sum())
        stats.n_rows += n
        stats.hard_counts += counts


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
