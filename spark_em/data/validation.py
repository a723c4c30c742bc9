"""What the first pass over the data learns: counts, invalid rows by kind, the weighted mean
(the fit's centre ``c0``) and a weighted sample for initialisation.  Numpy only.

:class:`ValidationStats` adds like
:class:`~spark_em.core.sufficient_statistics.SuffStats`: counts and sums add, samples merge
by keeping the rows with the largest keys.  A row's key is ``log(u) / w`` (Efraimidis-
Spirakis weighted sampling: the ``m`` largest keys are a sample drawn with probability
proportional to weight, without replacement) with ``u`` drawn from the row's content and
the seed (:mod:`spark_em.core.rowkeys`), not from its partition: the same rows give the
same sample however they are partitioned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.rowkeys import row_hash, uniform
from ..errors import InvalidInputError, InvalidRowsError, describe_features
from .arrow_blocks import BAD_KINDS, MAX_ABS_VALUE, MAX_WEIGHT

_HEAD = 5  # d, sample_size, m, n_rows, weight_sum


@dataclass
class ValidationStats:
    """Mergeable summary of the valid rows (and counts of the invalid ones)."""

    d: int
    sample_size: int
    n_rows: float
    weight_sum: float
    weighted_sum: np.ndarray  # (d,) sum_i w_i x_i
    bad: np.ndarray  # (len(BAD_KINDS),) invalid rows by kind
    keys: np.ndarray  # (m,) sample keys, larger is better
    sample_rows: np.ndarray  # (m, d)

    @classmethod
    def empty(cls, d: int, sample_size: int) -> ValidationStats:
        return cls(
            d,
            sample_size,
            0.0,
            0.0,
            np.zeros(d),
            np.zeros(len(BAD_KINDS)),
            np.zeros(0),
            np.zeros((0, d)),
        )

    # ------------------------------------------------------------------ values
    @property
    def centre(self) -> np.ndarray:
        return self.weighted_sum / self.weight_sum

    @property
    def bad_rows(self) -> dict[str, int]:
        return {kind: int(c) for kind, c in zip(BAD_KINDS, self.bad)}

    @property
    def sample(self) -> np.ndarray:
        """The sampled rows ``(m, d)`` in a canonical order (largest key first, ties by
        content), so that what is drawn from them next does not depend on merge order."""
        order = np.lexsort(tuple(self.sample_rows.T[::-1]) + (-self.keys,))
        return self.sample_rows[order]

    # ------------------------------------------------------------------ adding
    def _keep_top(self) -> None:
        m = self.sample_size
        if self.keys.shape[0] > m:
            top = np.argpartition(-self.keys, m)[:m]
            self.keys, self.sample_rows = self.keys[top], self.sample_rows[top]

    def __add__(self, other: ValidationStats) -> ValidationStats:
        out = ValidationStats(
            self.d,
            self.sample_size,
            self.n_rows + other.n_rows,
            self.weight_sum + other.weight_sum,
            self.weighted_sum + other.weighted_sum,
            self.bad + other.bad,
            np.concatenate([self.keys, other.keys]),
            np.concatenate([self.sample_rows, other.sample_rows]),
        )
        out._keep_top()
        return out

    def add_rows(self, X: np.ndarray, w: np.ndarray, bad, seed: int) -> None:
        """Add valid rows ``X (n, d)`` with weights ``w`` (and ``bad`` dropped rows)."""
        if bad is not None:
            self.bad += bad
        if X.shape[0] == 0:
            return
        self.n_rows += X.shape[0]
        self.weight_sum += float(w.sum())
        self.weighted_sum += w @ X
        positive = w > 0  # a row of weight 0 is never drawn
        if not positive.all():
            X, w = X[positive], w[positive]
        key = np.log(uniform(row_hash(X, seed))) / w
        m = self.sample_size
        if self.keys.shape[0] >= m:  # only rows that beat the current m-th key can enter
            floor = np.partition(self.keys, -m)[-m]
            better = key > floor
            key, X = key[better], X[better]
        if key.shape[0] == 0:
            return
        self.keys = np.concatenate([self.keys, key])
        self.sample_rows = np.concatenate([self.sample_rows, X])
        self._keep_top()

    # ------------------------------------------------------------------ wire format
    def pack(self) -> np.ndarray:
        m = self.keys.shape[0]
        head = [self.d, self.sample_size, m, self.n_rows, self.weight_sum]
        return np.concatenate(
            [head, self.weighted_sum, self.bad, self.keys, self.sample_rows.ravel()]
        )

    @classmethod
    def unpack(cls, flat: np.ndarray) -> ValidationStats:
        d, size, m = (int(v) for v in flat[:3])
        o = _HEAD
        parts = []
        for n in (d, len(BAD_KINDS), m, m * d):
            parts.append(np.array(flat[o : o + n]))
            o += n
        return cls(
            d,
            size,
            float(flat[3]),
            float(flat[4]),
            parts[0],
            parts[1],
            parts[2],
            parts[3].reshape(m, d),
        )


class ValidationSummarizer:
    """The summarizer of the first pass (rows are not centred yet: ``centre=None``)."""

    def __init__(self, sample_size: int, seed: int):
        self.sample_size, self.seed = max(int(sample_size), 1), int(seed)

    def new_stats(self, d: int) -> ValidationStats:
        return ValidationStats.empty(d, self.sample_size)

    def accumulate(self, stats: ValidationStats, chunk) -> None:
        stats.add_rows(chunk.raw, chunk.w, chunk.bad, self.seed)

    def unpack(self, flat: np.ndarray, d: int) -> ValidationStats:
        return ValidationStats.unpack(flat)

    @staticmethod
    def merge_packed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (ValidationStats.unpack(a) + ValidationStats.unpack(b)).pack()


def bad_row_problems(
    bad: dict, features, weight_col, d: int, max_value: float = MAX_ABS_VALUE
) -> list[str]:
    """One phrase per kind of invalid row present, naming the column and the count
    (``max_value``: the largest magnitude a feature may have, :mod:`spark_em.core.precision`)."""
    what = describe_features(features)
    wname = f"weightCol {weight_col!r}"
    phrases = {
        "null_vector": f"{what}: {{}} rows have null features",
        "wrong_length": f"{what}: {{}} rows have a vector length other than d={d} "
        "(ragged or wrong-length vectors)",
        "null_element": f"{what}: {{}} rows have null values",
        "non_finite": f"{what}: {{}} rows have NaN or infinite values",
        "huge_value": f"{what}: {{}} rows have values beyond +-{max_value:g} "
        + (
            "(their squares would overflow the statistics; rescale the features)"
            if max_value >= MAX_ABS_VALUE
            else "(float32 blocks cannot hold them: rescale the features or use dtype='float64')"
        ),
        "null_weight": f"{wname}: {{}} rows have null weights",
        "negative_weight": f"{wname}: {{}} rows have negative or non-finite weights",
        "huge_weight": f"{wname}: {{}} rows have weights above {MAX_WEIGHT:g} (rescale the "
        "weights; only their ratios matter)",
    }
    return [phrases[kind].format(count) for kind, count in bad.items() if count]


def check_validation(
    stats: ValidationStats,
    features,
    weight_col,
    skip_invalid: bool,
    max_value: float = MAX_ABS_VALUE,
) -> None:
    """Raise :class:`InvalidInputError` for invalid rows (unless they are skipped), an empty
    input or a weight sum that is zero or not finite."""
    problems = bad_row_problems(stats.bad_rows, features, weight_col, stats.d, max_value)
    if problems and not skip_invalid:
        raise InvalidRowsError(
            "invalid input: " + "; ".join(problems),
            {k: v for k, v in stats.bad_rows.items() if v},
            stats.d,
        )
    if stats.n_rows == 0:
        raise InvalidInputError(
            "the input DataFrame is empty"
            + (" after skipping invalid rows" if problems else "")
            + ": nothing to fit"
        )
    if not np.isfinite(stats.weight_sum) or not np.all(np.isfinite(stats.weighted_sum)):
        raise InvalidInputError(f"weightCol {weight_col!r}: the weights' total is not finite")
    if not stats.weight_sum > 0:
        raise InvalidInputError(f"weightCol {weight_col!r}: the weights sum to zero")
