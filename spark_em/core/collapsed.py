"""A variance that is zero in exact arithmetic with ``regCovar=0`` (a component on one row,
or on rows equal in a feature): scikit-learn's value where scikit-learn accepts it, else the
error.  Numpy only, no Spark.

scikit-learn's M-step for ``diag`` and ``spherical`` takes ``E[x^2] - mean^2`` with
``N_k + 10 eps`` in both denominators.  For rows of total weight ``n`` whose weighted mean
is ``m`` (data coordinates) and whose scatter about it is ``S``, that is, exactly,
``S / (n + 10 eps) + 10 eps n m^2 / (n + 10 eps)^2``: where ``S = 0`` a positive variance
of about ``10 eps m^2 / n``, which it accepts -- plus its own rounding, a few ``eps m^2``
(``E[x^2]`` and ``mean^2`` are both about ``m^2``).  spark-em takes the moments about the
fit's centre or the component's own mean, has no such term and finds such a variance 0.

Where scikit-learn's term exceeds its rounding for certain (``10 n / (n + 10 eps)^2 >=``
:data:`ROUNDING`, that is a component of at most 4 rows of unit weight; measured: its
variance is then positive in every trial and within a factor 0.3-1.6 of the term), spark-em
takes that term as the variance.  Elsewhere the error stands, as scikit-learn raises: a
mean of 0 in that feature (its variance is exactly 0), an empty component, heavier
components (its variance is then its rounding, of either sign), and ``full`` and ``tied``,
whose forms have no such term (the scatter of one row in ``d >= 2`` is rank one: its
Cholesky fails in exact arithmetic; in scikit-learn's floating point it passes by rounding
for 18 % of random points in 2-D, 3 % in 3-D).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ROUNDING", "as_sklearn"]

_EPS = float(np.finfo(np.float64).eps)

# scikit-learn's rounding of E[x^2] - mean^2, in eps * mean^2: its 10 eps term is at least
# this large for a component of at most 4 rows of unit weight
ROUNDING = 2.5


def as_sklearn(
    covariance_type: str, cov: np.ndarray, nk: np.ndarray, means: np.ndarray
) -> np.ndarray | None:
    """``cov`` (``diag (k, d)`` or ``spherical (k,)``, regularised) with scikit-learn's value
    in place of each variance that is not positive, where scikit-learn accepts it for
    certain; None where it does not (the caller raises).  ``nk (k,)``: each component's
    weight without the 10 eps; ``means (k, d)``: its weighted mean in data coordinates
    (anything where ``nk`` is 0)."""
    if covariance_type not in ("diag", "spherical"):
        return None
    e = 10.0 * _EPS
    factor = np.where(nk > 0, e * nk / (nk + e) ** 2, 0.0)
    term = factor[:, None] * np.where(nk[:, None] > 0, means, 0.0) ** 2
    if covariance_type == "spherical":
        term = term.mean(axis=1)
    else:
        factor = factor[:, None]
    bad = ~(cov > 0)
    accepted = (factor >= ROUNDING * _EPS) & (term > 0) & ~np.isnan(cov)
    if np.any(bad & ~accepted):
        return None
    return np.where(bad, np.maximum(cov, 0.0) + term, cov)
