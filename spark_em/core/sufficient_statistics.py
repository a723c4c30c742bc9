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

Moments of a component may instead be about its own ``origin`` (``origin[k]`` in centred
coordinates, the same in every task: set by the summarizer, not shipped): the E-step does
so for a component whose mean lies very far from ``c0`` in its own standard deviations,
and the k-means initialisation for every component, so that no covariance loses digits
to cancellation (:class:`~spark_em.core.estep.FarComponents`).

They add (:meth:`SuffStats.__add__`) and pack into one flat float64 vector, which is what
crosses the wire between Spark tasks and the driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import IllDefinedCovarianceError
from .collapsed import as_sklearn
from .covariance import covariance
from .mixture import GaussianParams

# A covariance is taken as exact while the moments it is computed from are at most this many
# times its own diagonal: ``eps * 1e5 = 2e-11`` relative.  Larger terms cancelled (moments
# about a point far from the component, in its own standard deviations): see
# :meth:`SuffStats.imprecise`.
MOMENT_RATIO_LIMIT = 1e5


def second_shape(k: int, d: int, covariance_type: str) -> tuple[int, ...]:
    return covariance(covariance_type).second_shape(k, d)


def packed_size(k: int, d: int, covariance_type: str) -> int:
    """Length of :meth:`SuffStats.pack`'s vector, from the shapes alone."""
    return 3 + 2 * k + k * d + int(np.prod(second_shape(k, d, covariance_type)))


@dataclass
class SuffStats:
    """Mergeable sufficient statistics of one mixture (moments about the fit's centre, or
    about ``origin (k, d)`` in centred coordinates)."""

    covariance_type: str
    nk: np.ndarray
    sk: np.ndarray
    second: np.ndarray
    log_likelihood: float = 0.0
    weight_sum: float = 0.0
    n_rows: float = 0.0
    hard_counts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    origin: np.ndarray | None = None

    @property
    def k(self) -> int:
        return int(self.nk.shape[0])

    @property
    def d(self) -> int:
        return int(self.sk.shape[1])

    @classmethod
    def zeros(
        cls, k: int, d: int, covariance_type: str, origin: np.ndarray | None = None
    ) -> SuffStats:
        return cls(
            covariance_type,
            np.zeros(k),
            np.zeros((k, d)),
            np.zeros(second_shape(k, d, covariance_type)),
            0.0,
            0.0,
            0.0,
            np.zeros(k),
            origin,
        )

    def __add__(self, other: SuffStats) -> SuffStats:
        if (self.covariance_type, self.k, self.d) != (other.covariance_type, other.k, other.d):
            raise ValueError("cannot add statistics of different mixtures")
        if (self.origin is None) != (other.origin is None) or (
            self.origin is not None
            and other.origin is not None
            and not np.array_equal(self.origin, other.origin)
        ):
            raise ValueError("cannot add moments about different origins")
        return SuffStats(
            self.covariance_type,
            self.nk + other.nk,
            self.sk + other.sk,
            self.second + other.second,
            self.log_likelihood + other.log_likelihood,
            self.weight_sum + other.weight_sum,
            self.n_rows + other.n_rows,
            self.hard_counts + other.hard_counts,
            self.origin,
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
    def unpack(
        cls,
        flat: np.ndarray,
        k: int,
        d: int,
        covariance_type: str,
        origin: np.ndarray | None = None,
    ) -> SuffStats:
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
        return cls(
            covariance_type, nk, sk, second, float(ll), float(wsum), float(nrows), hard, origin
        )

    # ------------------------------------------------------------------ M-step
    def m_step(self, centre: np.ndarray, reg_covar: float) -> GaussianParams:
        """New parameters (in data coordinates) from the statistics, as sklearn's M-step.

        Like sklearn, ``10 * eps`` is added to N_k so that an empty component gives a
        finite mean instead of NaN; ``reg_covar`` is added to the covariance diagonal.
        Raises :class:`~spark_em.errors.IllDefinedCovarianceError` for a covariance that
        stays singular -- where scikit-learn raises: a variance that is 0 in exact
        arithmetic gets scikit-learn's value where scikit-learn accepts it
        (:mod:`spark_em.core.collapsed`).
        """
        table = covariance(self.covariance_type)
        nk, shift, cov = self._update(reg_covar)
        weights = nk / nk.sum()
        try:
            pc = table.precisions_cholesky(cov, reg_covar)
        except IllDefinedCovarianceError:
            accepted = as_sklearn(self.covariance_type, cov, self.nk, self._mean_of_rows(centre))
            if accepted is None:
                raise
            cov = accepted
            pc = table.precisions_cholesky(cov, reg_covar)
        means = shift + centre if self.origin is None else (shift + self.origin) + centre
        return GaussianParams(weights, means, cov, pc, self.covariance_type)

    def _mean_of_rows(self, centre: np.ndarray) -> np.ndarray:
        """Each component's weighted mean of its rows ``(k, d)`` in data coordinates
        (without the 10 eps; NaN or inf for an empty component)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = self.sk / self.nk[:, None]
        return (mean if self.origin is None else mean + self.origin) + centre

    def _shift(self):
        """``(N_k + 10 eps, the new means about the moments' origin)``."""
        nk = self.nk + 10.0 * np.finfo(np.float64).eps
        return nk, self.sk / nk[:, None]

    def _update(self, reg_covar: float):
        """``(N_k + 10 eps, means about the moments' origin, covariances)``."""
        nk, shift = self._shift()
        cov = covariance(self.covariance_type).m_step(
            self.second, self.sk, self.nk, nk, shift, reg_covar
        )
        return nk, shift, cov

    def means_c(self) -> np.ndarray:
        """The M-step's means ``(k, d)`` in centred coordinates (about the fit's centre)."""
        shift = self._shift()[1]
        return shift if self.origin is None else shift + self.origin

    def imprecise(self, reg_covar: float) -> np.ndarray:
        """Components whose new covariance lost digits to cancellation: its diagonal is
        more than :data:`MOMENT_RATIO_LIMIT` times smaller than the second moments it was
        computed from (a component that shrank far from the point its moments were taken
        about -- onto one row, or onto one of two clusters 1e6 apart).  Their statistics
        should be taken again about the new means (:meth:`means_c`).  All components for
        ``tied``, whose moments are shared."""
        nk, _, cov = self._update(reg_covar)
        return covariance(self.covariance_type).imprecise(self.second, cov, nk, MOMENT_RATIO_LIMIT)
