"""Stable component labels: reorder one mixture's components to match another's.  Numpy and
scipy only.

EM returns its components in an order that depends on the start: a model refitted tonight
can call yesterday's cluster 3 "cluster 0".  :func:`alignment` finds the order of the new
components that minimises the total Bhattacharyya distance
(:mod:`spark_em.core.component_distance`) to the reference's components of the same index
-- a linear assignment problem, solved exactly by the Hungarian method
(``scipy.optimize.linear_sum_assignment``; Kuhn 1955, Munkres 1957).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from .component_distance import bhattacharyya
from .mixture import GaussianParams

__all__ = ["alignment", "permuted"]


def alignment(params: GaussianParams, reference: GaussianParams) -> np.ndarray:
    """The order of ``params``' components that matches ``reference``: ``order[j]`` is the
    component of ``params`` that becomes component ``j``.

    Components matched to one of the reference's take its index; with more components than
    the reference, the unmatched ones follow in their own order; with fewer, the matched
    ones keep the order of the reference's indices they matched."""
    cost = bhattacharyya(params, reference)
    rows, cols = linear_sum_assignment(cost)  # rows: params' components, cols: reference's
    matched = rows[np.argsort(cols)]
    rest = np.setdiff1d(np.arange(params.k), matched)  # sorted: their own order
    return np.concatenate([matched, rest]).astype(np.int64)


def permuted(params: GaussianParams, order: np.ndarray) -> GaussianParams:
    """``params`` with component ``order[j]`` as component ``j`` (a tied covariance is
    shared: unchanged)."""
    order = np.asarray(order, dtype=np.int64)
    if sorted(order.tolist()) != list(range(params.k)):
        raise ValueError(f"order must be a permutation of 0..{params.k - 1}, got {order.tolist()}")
    tied = params.covariance_type == "tied"
    return GaussianParams(
        params.weights[order],
        params.means[order],
        params.covariances if tied else params.covariances[order],
        params.precisions_cholesky if tied else params.precisions_cholesky[order],
        params.covariance_type,
    )
