"""Quantiles of the training rows' log-likelihood, kept with a model so that a row scored
later can be called unusual: below the ``q`` quantile of what the model saw.  Numpy only.

They are computed from the fit's validation sample (``initSampleSize`` rows drawn with
probability proportional to weight, keyed by row content, already on the driver) scored
under the final parameters: no pass over the data, and the same parameters the model
scores with (the last E-step pass of the fit ran under the parameters *before* the last
M-step).  The price is sampling error: with ``m`` sample rows the estimate of the ``q``
quantile is an order statistic around rank ``q m``, so the fraction of training rows below
it varies by about ``1 / sqrt(q m)`` of ``q`` (binomial): ±32 % at q = 0.001 and the
default m = 10,000 (a threshold that flags 0.04-0.16 % of rows, 95 % of the time), ±10 %
at m = 100,000.  A larger ``initSampleSize`` buys precision at the cost of driver memory.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LEVELS", "log_likelihood_quantiles", "threshold"]

LEVELS = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5)
"""The levels kept; a level between two of them is interpolated (in log level)."""


def log_likelihood_quantiles(log_likelihoods: np.ndarray) -> dict:
    """``{"levels", "values", "rows"}``: the :data:`LEVELS` quantiles of the sample rows'
    log-likelihoods (numpy's default, linear interpolation between order statistics) and
    the number of rows they rest on.  Non-finite values (rows the model cannot score) are
    left out."""
    ll = np.asarray(log_likelihoods, dtype=np.float64)
    ll = ll[np.isfinite(ll)]
    if ll.shape[0] == 0:
        return {"levels": [], "values": [], "rows": 0}
    return {
        "levels": list(LEVELS),
        "values": [float(v) for v in np.quantile(ll, LEVELS)],
        "rows": int(ll.shape[0]),
    }


def threshold(quantiles: dict, q: float) -> float:
    """The log-likelihood below which a row is in the lowest ``q`` of the training rows.
    ValueError when ``q`` is outside the kept levels or rests on less than one sample row."""
    levels = np.asarray(quantiles.get("levels") or [], dtype=np.float64)
    values = np.asarray(quantiles.get("values") or [], dtype=np.float64)
    rows = int(quantiles.get("rows") or 0)
    if levels.shape[0] == 0:
        raise ValueError("the model keeps no log-likelihood quantiles")
    if not levels[0] <= q <= levels[-1]:
        raise ValueError(
            f"quantile {q:g} is outside the levels the model keeps ({levels[0]:g} to "
            f"{levels[-1]:g})"
        )
    if q * rows < 1:
        raise ValueError(
            f"quantile {q:g} rests on less than one of the {rows:,} sample rows the quantiles "
            f"were computed from; choose q >= {1 / rows:.2g} or refit with a larger "
            "initSampleSize"
        )
    return float(np.interp(np.log(q), np.log(levels), values))
