"""Sufficient statistics kept per segment (a day, a batch): incremental EM (Neal & Hinton,
1998).  Numpy only, no Spark.

A mixture's statistics add (:class:`~spark_em.core.sufficient_statistics.SuffStats`), so a
model that keeps each segment's statistics of its last E-step can E-step only some segments
and M-step the sum::

    theta <- M( sum of the frozen segments' statistics + sum_s fresh_s(theta) )

Each step never lowers the objective (the free energy); refreshing every segment is EM.

A segment's statistics are moments about a stated centre ``centre (d,)`` in data
coordinates (no per-component origin): :func:`reoriginated` moves moments exactly between
centres and origins, so segments computed at different times -- about different fit
centres -- add.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .mixture import GaussianParams
from .sufficient_statistics import SuffStats, packed_size


@dataclass(frozen=True)
class SegmentStats:
    """One segment's statistics: its ``key`` (a string, an integer or a date), the chain
    ``iteration`` of the parameters its E-step ran under, and the statistics ``stats``
    (origin None) about ``centre (d,)`` in data coordinates."""

    key: Any
    iteration: int
    centre: np.ndarray
    stats: SuffStats

    @property
    def rows(self) -> int:
        return int(round(self.stats.n_rows))

    @property
    def weight_sum(self) -> float:
        return float(self.stats.weight_sum)

    def about(self, centre: np.ndarray, origin: np.ndarray | None = None) -> SuffStats:
        """The statistics with moments about ``centre`` (+ ``origin (k, d)`` per component,
        centred coordinates, as the E-step kernel's far components)."""
        return reoriginated(self.stats, self.centre, centre, origin)


def reoriginated(
    st: SuffStats,
    centre: np.ndarray,
    new_centre: np.ndarray,
    new_origin: np.ndarray | None = None,
) -> SuffStats:
    """``st`` (moments about ``centre`` + ``st.origin``) as moments about ``new_centre`` +
    ``new_origin`` -- exact algebra: with ``delta_k`` the old origin minus the new one,
    ``S_k' = S_k + N_k delta_k`` and ``M_k' = M_k + S_k delta_k^T + delta_k S_k^T +
    N_k delta_k delta_k^T`` (squares only for diag/spherical, summed over k for tied)."""
    k, d = st.k, st.d
    old = np.zeros((k, d)) if st.origin is None else st.origin
    new = np.zeros((k, d)) if new_origin is None else new_origin
    delta = (np.asarray(centre, np.float64) + old) - (np.asarray(new_centre, np.float64) + new)
    nk, sk = st.nk, st.sk
    t = st.covariance_type
    if t == "full":
        cross = np.einsum("ki,kj->kij", sk, delta)
        second = st.second + cross + cross.transpose(0, 2, 1)
        second = second + nk[:, None, None] * np.einsum("ki,kj->kij", delta, delta)
    elif t == "tied":
        cross = sk.T @ delta
        second = st.second + cross + cross.T + (nk[:, None] * delta).T @ delta
    else:  # diag, spherical: per-feature squares (k, d)
        second = st.second + 2.0 * delta * sk + nk[:, None] * delta**2
    return SuffStats(
        t,
        nk.copy(),
        sk + nk[:, None] * delta,
        second,
        st.log_likelihood,
        st.weight_sum,
        st.n_rows,
        st.hard_counts.copy(),
        None if new_origin is None else np.array(new_origin, dtype=np.float64),
    )


def pooled_centre(segments: Sequence[SegmentStats]) -> np.ndarray:
    """The weighted mean of every segment's rows (data coordinates): the centre about which
    their sum loses the fewest digits."""
    w = sum(s.weight_sum for s in segments)
    total = sum(s.weight_sum * s.centre + s.stats.sk.sum(axis=0) for s in segments)
    return np.asarray(total, dtype=np.float64) / w


def summed(
    segments: Sequence[SegmentStats], centre: np.ndarray, origin: np.ndarray | None = None
) -> SuffStats | None:
    """The sum of the segments' statistics about ``centre`` (+ ``origin``); None for none."""
    total = None
    for s in segments:
        st = s.about(centre, origin)
        total = st if total is None else total + st
    return total


def m_step_of(segments: Sequence[SegmentStats], reg_covar: float) -> GaussianParams:
    """The parameters the segments' statistics give: the M-step of their sum."""
    centre = pooled_centre(segments)
    total = summed(segments, centre)
    if total is None:
        raise ValueError("no segments: nothing to take an M-step of")
    return total.m_step(centre, reg_covar)


def window(keys: Sequence, size: int | None) -> tuple[list, list]:
    """``(kept, dropped)``: the ``size`` newest of ``keys`` in their natural order (all
    for None), and the rest, each sorted."""
    ordered = sorted(set(keys))
    if size is None or size >= len(ordered):
        return ordered, []
    cut = len(ordered) - size
    return ordered[cut:], ordered[:cut]


# ---------------------------------------------------------------------------------------
# Keyed statistics: what one task of a segment pass packs and the reduce merges
# ---------------------------------------------------------------------------------------
def pack_keyed(stats: dict[int, SuffStats]) -> np.ndarray:
    """``{segment code: statistics}`` as one flat float64 vector ``[code, packed...]*``."""
    parts = [np.concatenate([[float(code)], st.pack()]) for code, st in sorted(stats.items())]
    return np.concatenate(parts) if parts else np.zeros(0)


def unpack_keyed(flat: np.ndarray, k: int, d: int, covariance_type: str) -> dict[int, np.ndarray]:
    """The packed vectors of :func:`pack_keyed`, by code (not yet unpacked)."""
    size = 1 + packed_size(k, d, covariance_type)
    if flat.shape[0] % size:
        raise ValueError("keyed statistics have the wrong length")
    rows = flat.reshape(-1, size)
    return {int(r[0]): r[1:] for r in rows}


def merge_keyed(k: int, d: int, covariance_type: str):
    """The reduce's merge of two packed keyed vectors (the statistics of a code present in
    both add; associative and commutative)."""

    def merge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        left = unpack_keyed(a, k, d, covariance_type)
        for code, v in unpack_keyed(b, k, d, covariance_type).items():
            left[code] = left[code] + v if code in left else v
        parts = [np.concatenate([[float(c)], v]) for c, v in sorted(left.items())]
        return np.concatenate(parts) if parts else np.zeros(0)

    return merge


def total_of(by_code: dict) -> SuffStats:
    """The sum of per-segment statistics (the same kernel's: moments about one origin)."""
    values = list(by_code.values())
    total = values[0]
    for st in values[1:]:
        total = total + st
    return total


class KeyedStats(dict):
    """``{segment code: statistics}`` of one task; packs as :func:`pack_keyed`."""

    def pack(self) -> np.ndarray:
        return pack_keyed(self)


class KeyedSummarizer:
    """A pass's summarizer that keeps ``inner``'s statistics per segment: each chunk's rows
    belong to one segment (``Chunk.code``, from a store that keeps the segments' rows
    apart), added to that segment's statistics.  ``only``: the codes to keep (None: all);
    the chunks of the others are skipped.  Unpacks to ``{code: SuffStats}``."""

    def __init__(self, inner, only=None):
        self.inner = inner
        self.only = None if only is None else frozenset(int(c) for c in only)

    def new_stats(self, d: int) -> KeyedStats:
        return KeyedStats()

    def accumulate(self, stats: KeyedStats, chunk) -> None:
        if chunk.code is None:
            raise ValueError("a keyed pass needs a store that keeps each segment's rows apart")
        code = int(chunk.code)
        if chunk.X.shape[0] == 0 or (self.only is not None and code not in self.only):
            return  # a segment without valid rows in the chunk has no statistics from it
        if code not in stats:
            stats[code] = self.inner.new_stats(chunk.X.shape[1])
        self.inner.accumulate(stats[code], chunk)

    def merge_packed(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        inner = self.inner
        return merge_keyed(inner.k, inner.d, inner.covariance_type)(a, b)

    def unpack(self, flat: np.ndarray, d: int) -> dict[int, SuffStats]:
        inner = self.inner
        return {
            code: inner.unpack(v, d)
            for code, v in unpack_keyed(flat, inner.k, d, inner.covariance_type).items()
        }


class Segment(NamedTuple):
    """What ``model.segments`` lists of one segment."""

    key: Any
    rows: int
    weightSum: float
    iteration: int


def permuted_segment(segment: SegmentStats, order: Sequence[int]) -> SegmentStats:
    """``segment`` for the mixture with component ``order[j]`` as component ``j``."""
    st, idx = segment.stats, np.asarray(order, dtype=np.intp)
    second = st.second if st.covariance_type == "tied" else st.second[idx]
    stats = SuffStats(
        st.covariance_type,
        st.nk[idx],
        st.sk[idx],
        second,
        st.log_likelihood,
        st.weight_sum,
        st.n_rows,
        st.hard_counts[idx],
        None,
    )
    return SegmentStats(segment.key, segment.iteration, segment.centre, stats)
