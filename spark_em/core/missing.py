"""The E-step of rows with missing features (``missingValues="marginalize"``): the missing
coordinates are latent, like the component label, and are integrated out.  Numpy only.

For a row with observed coordinates ``o`` and missing ones ``m`` (NaN in the block), per
component ``j`` (Ghahramani & Jordan 1994; Little & Rubin, *Statistical Analysis with
Missing Data*, ch. 11):

* E-step: the log-density is the marginal ``log N(x_o | mu_o, Sigma_oo)``; the
  responsibilities follow by Bayes' rule in the log domain, and the row's log-likelihood
  is the observed-data one, ``log sum_j pi_j N(x_o | mu_jo, Sigma_j,oo)``;
* M-step statistics: the missing coordinates are filled with the conditional mean
  ``x_hat_m = mu_m + Sigma_mo Sigma_oo^-1 (x_o - mu_o)``, and the conditional covariance
  ``Sigma_mm - Sigma_mo Sigma_oo^-1 Sigma_om`` is added to the second moment, both weighted
  by the row's responsibility.  Diagonal and spherical: ``Sigma_mo = 0``, so the filling is
  ``mu_m`` and the conditional variance ``sigma^2_m``; tied: as full with the one Sigma.

The statistics are the same :class:`~spark_em.core.sufficient_statistics.SuffStats` as the
complete rows', with the same shapes, origin and meaning, so they add (across tasks,
segments, rows of both kinds) and the M-step is unchanged.

Inside a chunk, complete rows go through :class:`~spark_em.core.estep.EStepKernel`
unchanged.  Rows with at most ``MAX_MISSING`` missing coordinates go, grouped by their
number, through each component's precision matrix
(:mod:`spark_em.core.missing_precision`: one GEMM per component for all of them, whatever
their patterns).  The others, and the rows whose rounding bound in that route is above
1e-9 of their quadratic form (ill-conditioned covariances), are grouped by their pattern
of missing coordinates; each pattern's factors (the Cholesky factor of every component's
``Sigma_oo``, the gains ``Sigma_mo L^-T`` and the conditional covariances) are computed
once per task.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from .estep import EStepKernel, _normalise_t
from .init_summarizers import NearestCentreSummarizer, RandomResponsibilitySummarizer
from .missing_precision import MAX_MISSING, PrecisionRoute, add_moments
from .mixture import LOG_2PI, GaussianParams
from .sufficient_statistics import SuffStats
from .summarizers import Chunk, MixtureSummarizer, slices
from .tuning import chunk_rows

MISSING_VALUES = ("invalid", "marginalize")

# The initialisation runs on the sample's complete rows when it has at least this many
# per component; below, on its rows with the missing values filled with the feature means.
COMPLETE_ROWS_PER_COMPONENT = 10


def incomplete_rows(X: np.ndarray) -> np.ndarray:
    """``(n,)`` True for the rows of ``X`` with a missing (NaN) value: a NaN propagates
    through the product with a vector of ones, one BLAS call (0.5 ms per 61,680 x 16
    chunk, against 2 ms for ``X.sum(axis=1)``: on complete data this check is what
    ``marginalize`` adds to every chunk).  A row whose partial sums overflow to both
    infinities would be flagged too, and then meets no missing coordinate: correct,
    through the pattern loop."""
    return np.isnan(X @ np.ones(X.shape[1], dtype=X.dtype))


@dataclass(frozen=True)
class PatternFactors:
    """One missing pattern's factors for every component: ``observed (p,)`` and
    ``missing (q,)`` coordinates; ``const (k,)`` = log pi_j - p/2 log 2pi - log|L_j|;
    ``linv (k, p, p)`` = L_j^-1 with ``L_j L_j^T = Sigma_j,oo``; ``gain (k, q, p)`` =
    ``Sigma_j,mo L_j^-T`` (so that ``x_hat_m = mu_m + gain z`` with ``z = L^-1 (x_o - mu_o)``);
    ``cond (k, q, q)`` = ``Sigma_j,mm - gain gain^T``, the conditional covariance."""

    observed: np.ndarray
    missing: np.ndarray
    const: np.ndarray
    linv: np.ndarray
    gain: np.ndarray
    cond: np.ndarray


def pattern_factors(
    log_weights: np.ndarray, covariances: np.ndarray, missing_mask: np.ndarray
) -> PatternFactors:
    """The factors of the pattern ``missing_mask (d,)`` under ``covariances (k, d, d)``."""
    obs = np.flatnonzero(~missing_mask)
    mis = np.flatnonzero(missing_mask)
    s_oo = covariances[:, obs][:, :, obs]
    chol = np.linalg.cholesky(s_oo)
    linv = np.linalg.inv(chol)
    log_det = np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    gain = covariances[:, mis][:, :, obs] @ linv.transpose(0, 2, 1)
    cond = covariances[:, mis][:, :, mis] - gain @ gain.transpose(0, 2, 1)
    const = log_weights - 0.5 * obs.shape[0] * LOG_2PI - log_det
    return PatternFactors(obs, mis, const, linv, gain, cond)


def patterns(missing: np.ndarray):
    """``(rows, pattern)`` per distinct row of the boolean ``missing (n, d)``: the index
    array of its rows and the pattern itself ``(d,)``."""
    n, d = missing.shape
    if d <= 62:
        codes = missing.astype(np.int64) @ (np.int64(1) << np.arange(d, dtype=np.int64))
        _, inverse = np.unique(codes, return_inverse=True)
    else:
        _, inverse = np.unique(missing, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse))])
    for g in range(bounds.shape[0] - 1):
        rows = order[bounds[g] : bounds[g + 1]]
        yield rows, missing[rows[0]]


def _add_full(second, y, rw, f: PatternFactors, rw_sum) -> None:
    second += (y * rw[:, :, None]).transpose(0, 2, 1) @ y
    m = f.missing
    second[:, m[:, None], m[None, :]] += rw_sum[:, None, None] * f.cond


def _add_tied(second, y, rw, f: PatternFactors, rw_sum) -> None:
    second += ((y * rw[:, :, None]).transpose(0, 2, 1) @ y).sum(axis=0)
    m = f.missing
    second[m[:, None], m[None, :]] += np.einsum("k,kij->ij", rw_sum, f.cond)


def _add_variances(second, y, rw, f: PatternFactors, rw_sum) -> None:
    second += np.einsum("kn,knd->kd", rw, y * y)
    second[:, f.missing] += rw_sum[:, None] * np.diagonal(f.cond, axis1=1, axis2=2)


# the second moments of filled rows, by covariance type (the shapes of SuffStats.second)
_ADD_SECOND = {
    "full": _add_full,
    "tied": _add_tied,
    "diag": _add_variances,
    "spherical": _add_variances,
}


class MarginalEStep(MixtureSummarizer):
    """The E-step of one mixture for rows that may have missing values: complete rows
    through ``complete`` (:class:`~spark_em.core.estep.EStepKernel`, unchanged), rows
    with at most ``MAX_MISSING`` missing coordinates through :attr:`route`, the others
    (and the rows the route's rounding bound sends back) by pattern.  Same arguments as
    the complete kernel; what a pass, the EM loop and scoring ask of a kernel
    (``accumulate``, ``posteriors``, ``about``, the statistics' shapes and origin) it
    answers the same way."""

    def __init__(self, params: GaussianParams, centre: np.ndarray, moments: bool = True, **kw):
        self.complete = EStepKernel(params, centre, moments, **kw)
        p = params.shifted(centre)
        self.k, self.d, self.covariance_type = p.k, p.d, p.covariance_type
        self.moments = moments
        self.means = p.means  # centred coordinates
        self.covariances = p.full_covariances()
        with np.errstate(divide="ignore"):
            self.log_weights = np.log(p.weights)
        self._factors: dict[bytes, PatternFactors] = {}
        self._shifted = p
        self._route: PrecisionRoute | None = None  # made in the task, on first use

    @property
    def route(self) -> PrecisionRoute:
        """The precision route of rows with few missing coordinates
        (:mod:`spark_em.core.missing_precision`)."""
        if self._route is None:
            self._route = PrecisionRoute(self._shifted)
        return self._route

    @property
    def origin(self):  # type: ignore[override]
        return self.complete.origin

    def about(self, means_c: np.ndarray, components) -> MarginalEStep:
        """The same E-step with the moments of ``components`` about ``means_c`` (see
        :meth:`EStepKernel.about`)."""
        twin = copy.copy(self)
        twin.complete = self.complete.about(means_c, components)
        return twin

    def factors(self, missing_mask: np.ndarray) -> PatternFactors:
        key = missing_mask.tobytes()
        f = self._factors.get(key)
        if f is None:
            f = self._factors[key] = pattern_factors(
                self.log_weights, self.covariances, missing_mask
            )
        return f

    def _pattern(self, Xc: np.ndarray, rows: np.ndarray, f: PatternFactors):
        """``(log joint densities (k, g), z (k, g, p))`` of the pattern's rows."""
        xo = Xc[np.ix_(rows, f.observed)]
        diff = xo[None, :, :] - self.means[:, None, f.observed]
        z = diff @ f.linv.transpose(0, 2, 1)
        lp = f.const[:, None] - 0.5 * np.einsum("kgp,kgp->kg", z, z)
        return lp, z, xo

    def _filled(self, xo: np.ndarray, z: np.ndarray, f: PatternFactors) -> np.ndarray:
        """``(k, g, d)``: each row with its missing coordinates filled by each component's
        conditional mean, about the moments' origin."""
        k, g = z.shape[:2]
        y = np.empty((k, g, self.d))
        y[:, :, f.observed] = xo[None, :, :]
        y[:, :, f.missing] = self.means[:, None, f.missing] + z @ f.gain.transpose(0, 2, 1)
        if self.origin is not None:
            y -= self.origin[:, None, :]
        return y

    def _add_rows(self, stats: SuffStats, lp: np.ndarray, wg: np.ndarray):
        """Add rows' log-likelihood, weights, counts and ``N_k`` from their log joint
        densities ``lp (k, g)`` (made responsibilities in place); returns the weighted
        responsibilities ``(k, g)`` when the moments are wanted, else None."""
        ll, hard = _normalise_t(lp, None)
        stats.log_likelihood += float(ll @ wg)
        stats.weight_sum += float(wg.sum())
        stats.n_rows += wg.shape[0]
        stats.hard_counts += np.bincount(hard, minlength=self.k)
        rw = lp * wg
        stats.nk += rw.sum(axis=1)
        return rw if self.moments else None

    def _few_missing(self, missing: np.ndarray):
        """Index arrays of the rows of ``missing (n, d)`` with 1..``MAX_MISSING`` missing
        coordinates, grouped by their number and cut in slices (``chunk_rows`` of twice the
        complete kernel's width: at least 512 rows)."""
        count = missing.sum(axis=1)
        # several (k, rows, d) arrays live at once: slices of half the complete kernel's
        step = chunk_rows(2 * self.k * self.d)
        for q in range(1, MAX_MISSING + 1):
            rows = np.flatnonzero(count == q)
            for sl in slices(rows.shape[0], step):
                yield rows[sl]

    def _by_precision(self, stats: SuffStats, Xc: np.ndarray, missing: np.ndarray, w):
        """Add the rows with few missing coordinates through the precision route; returns
        the index array of the rows left to the pattern route (more missing coordinates,
        or a quadratic form the route cannot give to 1e-9)."""
        routed = np.zeros(Xc.shape[0], dtype=bool)
        for group in self._few_missing(missing):
            res = self.route.evaluate(Xc[group], missing[group], self.moments)
            ok = res.ok
            if not ok.any():
                continue
            rows, lp, mis = group[ok], res.lp[:, ok], res.missing[ok]
            routed[rows] = True
            rw = self._add_rows(stats, np.ascontiguousarray(lp), w[rows])
            if rw is None:
                continue
            assert res.filled is not None and res.cond is not None
            y, cond = res.filled, res.cond
            if not ok.all():
                y, cond = y[:, ok], cond[:, :, :, ok]
            if self.origin is not None:
                y -= self.origin[:, None, :]
            add_moments(stats, self.covariance_type, y, rw, mis, cond)
        return np.flatnonzero(~routed)

    def accumulate(self, stats: SuffStats, chunk: Chunk) -> None:
        X = chunk.X
        incomplete = incomplete_rows(X)
        if not incomplete.any():
            self.complete.accumulate(stats, chunk)
            return
        done = ~incomplete
        if done.any():
            self.complete.accumulate(stats, Chunk(X[done], chunk.w[done], chunk.centre, None))
        Xi = X[incomplete]
        Xc = Xi if chunk.centre is None else Xi - chunk.centre
        w = chunk.w[incomplete]
        missing = np.isnan(Xc)
        rest = self._by_precision(stats, Xc, missing, w)
        if rest.shape[0] == 0:
            return
        Xc, w, missing = Xc[rest], w[rest], missing[rest]
        add_second = _ADD_SECOND[self.covariance_type]
        for rows, pattern in patterns(missing):
            f = self.factors(pattern)
            lp, z, xo = self._pattern(Xc, rows, f)
            rw = self._add_rows(stats, lp, w[rows])
            if rw is None:
                continue
            y = self._filled(xo, z, f)
            stats.sk += np.einsum("kg,kgd->kd", rw, y)
            add_second(stats.second, y, rw, f, rw.sum(axis=1))

    def posteriors(self, Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row of the centred ``Xc (n, d)`` (NaN: missing): ``(log p(x_o) (n,),
        responsibilities (n, k), most probable component (n,))``, the marginal ones for
        incomplete rows."""
        incomplete = incomplete_rows(Xc)
        if not incomplete.any():
            return self.complete.posteriors(Xc)
        n = Xc.shape[0]
        ll, resp, hard = np.empty(n), np.empty((n, self.k)), np.empty(n, dtype=np.int64)
        done = np.flatnonzero(~incomplete)
        if done.shape[0]:
            ll[done], resp[done], hard[done] = self.complete.posteriors(Xc[done])
        where = np.flatnonzero(incomplete)
        Xi = Xc[where]
        missing = np.isnan(Xi)
        routed = np.zeros(where.shape[0], dtype=bool)
        for rows in self._few_missing(missing):
            res = self.route.evaluate(Xi[rows], missing[rows], moments=False)
            rows, lp = rows[res.ok], np.ascontiguousarray(res.lp[:, res.ok])
            routed[rows] = True
            at = where[rows]
            ll[at], hard[at] = _normalise_t(lp, None)
            resp[at] = lp.T
        rest = np.flatnonzero(~routed)
        for rows, pattern in patterns(missing[rest]):
            lp, _, _ = self._pattern(Xi[rest], rows, self.factors(pattern))
            at = where[rest[rows]]
            ll[at], hard[at] = _normalise_t(lp, None)
            resp[at] = lp.T
        return ll, resp, hard


def e_step(params: GaussianParams, centre: np.ndarray, marginalize: bool = False, **kw):
    """The E-step kernel of ``params`` about ``centre``: :class:`MarginalEStep` when
    missing values are marginalised, else :class:`~spark_em.core.estep.EStepKernel`."""
    return (MarginalEStep if marginalize else EStepKernel)(params, centre, **kw)


def log_responsibilities(
    params: GaussianParams, X: np.ndarray, marginalize: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``(log p(x_i) (n,), log r_ik (n, k))`` of the rows ``X (n, d)`` under ``params``
    (NaN: missing values with ``marginalize``, marginal densities and posteriors), about
    the mixture's mean as the fit's E-step."""
    c = params.centre
    kernel = e_step(params, c, marginalize, moments=False)
    ll, resp, _ = kernel.posteriors(np.asarray(X, dtype=np.float64) - c)
    with np.errstate(divide="ignore"):
        return ll, np.log(resp)


# ------------------------------------------------------------------ initialisation
def init_sample(sample: np.ndarray, k: int, centre: np.ndarray) -> tuple[np.ndarray, bool]:
    """``(rows for the initial centres, complete)``: the sample's complete rows when there
    are at least ``COMPLETE_ROWS_PER_COMPONENT * k`` of them (``complete`` True), else
    every sample row with its missing values filled with the feature means ``centre``."""
    complete = sample[~incomplete_rows(sample)]
    if complete.shape[0] >= COMPLETE_ROWS_PER_COMPONENT * k:
        return complete, True
    return np.where(np.isnan(sample), centre, sample), False


class InitRows(MixtureSummarizer):
    """An initialisation summarizer (hard labels to centres, random responsibilities) over
    the complete rows only (``complete``), or over every row with its missing values
    filled with the fit's centre (the feature means)."""

    def __init__(
        self, inner: NearestCentreSummarizer | RandomResponsibilitySummarizer, complete: bool
    ):
        self.inner, self.complete = inner, complete
        self.k, self.covariance_type = inner.k, inner.covariance_type

    @property
    def origin(self):  # type: ignore[override]
        return self.inner.origin

    def accumulate(self, stats: SuffStats, chunk: Chunk) -> None:
        X = chunk.X
        incomplete = incomplete_rows(X)
        if not incomplete.any():
            self.inner.accumulate(stats, chunk)
        elif self.complete:
            keep = ~incomplete
            self.inner.accumulate(stats, Chunk(X[keep], chunk.w[keep], chunk.centre, None))
        else:
            centre = 0.0 if chunk.centre is None else chunk.centre
            filled = np.where(np.isnan(X), centre, X)
            self.inner.accumulate(stats, Chunk(filled, chunk.w, chunk.centre, None))
