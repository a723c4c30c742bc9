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

from dataclasses import dataclass, replace

import numpy as np

from ..core.rowkeys import row_hash, uniform
from ..errors import InvalidInputError, InvalidRowsError, describe_features, describe_lengths
from .arrow_blocks import BAD_KINDS, MAX_ABS_VALUE, MAX_WEIGHT, UNINFORMATIVE_KINDS

_HEAD = 5  # d, sample_size, m, n_rows, weight_sum

# ``ValidationStats.d`` of the tasks of a first pass that find d themselves
# (:func:`spark_em.data.arrow_blocks.task_dimension`): 0 is a task whose rows are all null
# (it says nothing about d, and adds to statistics of any d), DISAGREE the sum of tasks
# that found different ones.
DISAGREE = -1


@dataclass
class ValidationStats:
    """Mergeable summary of the valid rows (and counts of the invalid ones)."""

    d: int
    sample_size: int
    n_rows: float
    weight_sum: float
    weighted_sum: np.ndarray  # (d,) sum_i w_i x_i over the rows where x_i is observed
    bad: np.ndarray  # (len(BAD_KINDS),) invalid rows by kind
    keys: np.ndarray  # (m,) sample keys, larger is better
    sample_rows: np.ndarray  # (m, d), NaN where a value is missing
    observed_weight: np.ndarray  # (d,) sum of w over the rows where feature j is observed
    missing_count: np.ndarray  # (d,) rows where feature j is missing (missingValues)

    @classmethod
    def empty(cls, d: int, sample_size: int) -> ValidationStats:
        width = max(d, 0)
        return cls(
            d,
            sample_size,
            0.0,
            0.0,
            np.zeros(width),
            np.zeros(len(BAD_KINDS)),
            np.zeros(0),
            np.zeros((0, width)),
            np.zeros(width),
            np.zeros(width),
        )

    # ------------------------------------------------------------------ values
    @property
    def centre(self) -> np.ndarray:
        """The weighted mean of each feature over the rows where it is observed."""
        return self.weighted_sum / self.observed_weight

    @property
    def missing_per_feature(self) -> list[int]:
        """Rows with feature j missing, per feature (zeros unless missingValues)."""
        return [int(c) for c in self.missing_count]

    @property
    def bad_rows(self) -> dict[str, int]:
        return {kind: int(c) for kind, c in zip(BAD_KINDS, self.bad)}

    @property
    def sample(self) -> np.ndarray:
        """The sampled rows ``(m, d)`` in a canonical order (largest key first, ties by
        content), so that what is drawn from them next does not depend on merge order."""
        order = np.argsort(-self.keys, kind="stable")
        ranked = self.keys[order]
        if np.any(ranked[1:] == ranked[:-1]):  # ties (duplicate rows): by content, 12 ms
            order = np.lexsort(tuple(self.sample_rows.T[::-1]) + (-self.keys,))
        return self.sample_rows[order]

    # ------------------------------------------------------------------ adding
    def _keep_top(self) -> None:
        m = self.sample_size
        if self.keys.shape[0] > m:
            top = np.argpartition(-self.keys, m)[:m]
            self.keys, self.sample_rows = self.keys[top], self.sample_rows[top]

    def __add__(self, other: ValidationStats) -> ValidationStats:
        if self.d != other.d:  # tasks that found d themselves (DISAGREE's comment)
            if other.d == 0 and other.n_rows == 0:
                return self._with_counts(other.bad)
            if self.d == 0 and self.n_rows == 0:
                return other._with_counts(self.bad)
            disagree = ValidationStats.empty(DISAGREE, self.sample_size)
            disagree.bad = self.bad + other.bad
            return disagree
        out = ValidationStats(
            self.d,
            self.sample_size,
            self.n_rows + other.n_rows,
            self.weight_sum + other.weight_sum,
            self.weighted_sum + other.weighted_sum,
            self.bad + other.bad,
            np.concatenate([self.keys, other.keys]),
            np.concatenate([self.sample_rows, other.sample_rows]),
            self.observed_weight + other.observed_weight,
            self.missing_count + other.missing_count,
        )
        out._keep_top()
        return out

    def _with_counts(self, bad: np.ndarray) -> ValidationStats:
        """These statistics with ``bad`` more invalid rows."""
        return replace(self, bad=self.bad + bad)

    def add_rows(self, X: np.ndarray, w: np.ndarray, bad, seed: int, missing=False) -> None:
        """Add valid rows ``X (n, d)`` with weights ``w`` (and ``bad`` dropped rows);
        ``missing``: NaN in ``X`` are missing values (missingValues="marginalize")."""
        if bad is not None:
            self.bad += bad
        if X.shape[0] == 0:
            return
        self.n_rows += X.shape[0]
        total = float(w.sum())
        self.weight_sum += total
        nan = np.isnan(X) if missing else None
        if nan is not None and nan.any():
            self.weighted_sum += w @ np.where(nan, 0.0, X)
            self.observed_weight += w @ ~nan
            self.missing_count += nan.sum(axis=0)
        else:
            self.weighted_sum += w @ X
            self.observed_weight += total
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
            [
                head,
                self.weighted_sum,
                self.observed_weight,
                self.missing_count,
                self.bad,
                self.keys,
                self.sample_rows.ravel(),
            ]
        )

    @classmethod
    def unpack(cls, flat: np.ndarray) -> ValidationStats:
        d, size, m = (int(v) for v in flat[:3])
        width = max(d, 0)
        o = _HEAD
        parts = []
        for n in (width, width, width, len(BAD_KINDS), m, m * width):
            parts.append(np.array(flat[o : o + n]))
            o += n
        return cls(
            d,
            size,
            float(flat[3]),
            float(flat[4]),
            parts[0],
            parts[3],
            parts[4],
            parts[5].reshape(m, width),
            parts[1],
            parts[2],
        )


class ValidationSummarizer:
    """The summarizer of the first pass (rows are not centred yet: ``centre=None``);
    ``missing``: NaN are missing values (missingValues="marginalize")."""

    def __init__(self, sample_size: int, seed: int, missing: bool = False):
        self.sample_size, self.seed = max(int(sample_size), 1), int(seed)
        self.missing = bool(missing)

    def new_stats(self, d: int) -> ValidationStats:
        return ValidationStats.empty(d, self.sample_size)

    def accumulate(self, stats: ValidationStats, chunk) -> None:
        stats.add_rows(chunk.raw, chunk.w, chunk.bad, self.seed, self.missing)

    def unpack(self, flat: np.ndarray, d: int) -> ValidationStats:
        return ValidationStats.unpack(flat)

    @staticmethod
    def merge_packed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (ValidationStats.unpack(a) + ValidationStats.unpack(b)).pack()


def bad_row_problems(
    bad: dict,
    features,
    weight_col,
    d: int,
    max_value: float = MAX_ABS_VALUE,
    lengths: dict | None = None,
) -> list[str]:
    """One phrase per kind of invalid row present, naming the column and the count
    (``max_value``: the largest magnitude a feature may have, :mod:`spark_em.core.precision`;
    ``lengths``: rows by vector length, named in the wrong-length phrase)."""
    what = describe_features(features)
    wname = f"weightCol {weight_col!r}"
    phrases = {
        "null_vector": f"{what}: {{}} rows have null features",
        "wrong_length": f"{what}: {{}} rows have a vector length other than d={d} "
        + (f"({describe_lengths(lengths)})" if lengths else "(ragged or wrong-length vectors)"),
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
        "all_missing": f"{what}: {{}} rows have every feature missing (no information)",
    }
    return [phrases[kind].format(count) for kind, count in bad.items() if count]


def check_validation(
    stats: ValidationStats,
    features,
    weight_col,
    skip_invalid: bool,
    max_value: float = MAX_ABS_VALUE,
    lengths: dict | None = None,
) -> None:
    """Raise :class:`InvalidInputError` for invalid rows (unless they are skipped), an empty
    input or a weight sum that is zero or not finite (``lengths``: rows by vector length,
    named when some have the wrong one)."""
    invalid = {k: v for k, v in stats.bad_rows.items() if k not in UNINFORMATIVE_KINDS}
    problems = bad_row_problems(invalid, features, weight_col, stats.d, max_value, lengths)
    if problems and not skip_invalid:
        raise InvalidRowsError(
            "invalid input: " + "; ".join(problems),
            {k: v for k, v in invalid.items() if v},
            stats.d,
            lengths,
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
    unobserved = np.flatnonzero(~(stats.observed_weight > 0))
    if unobserved.shape[0]:
        raise InvalidInputError(
            f"{describe_features(features)}: feature {_feature_name(features, unobserved[0])} "
            "is missing in every row (or every row of positive weight): nothing to fit it with"
        )


def _feature_name(features, j: int) -> str:
    """Feature ``j`` by its column name (a list of columns), else by its index."""
    if isinstance(features, (list, tuple)):
        return repr(features[j])
    return f"{j} (0-based)"
