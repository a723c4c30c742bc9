"""Arrow list columns <-> (n, d) numpy blocks, with row validation. No Spark import.

Used inside Spark tasks: the preparation pass turns each Arrow batch of the feature column
(``array<double>``) into one numpy block, and ``transform`` reads its input the same way.
Nothing here loops over rows in Python.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Per-block counts of invalid rows, in this order.
BAD_KINDS = (
    "null_vector",  # the feature value itself is null
    "wrong_length",  # vector/array length differs from the dimension d
    "null_element",  # an element of the array is null
    "non_finite",  # NaN or +-inf
    "null_weight",
    "negative_weight",  # negative or non-finite weight
)


def list_to_matrix(arr: pa.Array, d: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Turn a list array of length n into ``X (n, d) float64`` plus a row-validity mask.

    Invalid rows (null, wrong length, null or non-finite elements) are zero in ``X`` and
    False in the mask.  Returns ``(X, valid, counts)``.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    counts = dict.fromkeys(BAD_KINDS, 0)
    if n == 0:
        return np.zeros((0, d)), np.zeros(0, dtype=bool), counts
    null_rows = arr.is_null().to_numpy(zero_copy_only=False)
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
    values = arr.flatten()  # skips null rows, honours slicing offsets
    vals = values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    if not null_rows.any() and values.null_count == 0 and np.all(lengths == d):
        X = vals.reshape(n, d)
        finite = np.isfinite(X).all(axis=1) if d else np.ones(n, dtype=bool)
        counts["non_finite"] = int(n - finite.sum())
        if counts["non_finite"]:
            X = np.where(finite[:, None], X, 0.0)
        return X, finite, counts
    # Slow path: some row is malformed; still vectorized.
    counts["null_vector"] = int(null_rows.sum())
    wrong = (~null_rows) & (lengths != d)
    counts["wrong_length"] = int(wrong.sum())
    present_lengths = np.where(null_rows, 0, lengths)
    row_of_value = np.repeat(np.arange(n), present_lengths)
    bad_value = ~np.isfinite(vals)
    null_elem = np.zeros(n, dtype=bool)
    if values.null_count:
        nulls = values.is_null().to_numpy(zero_copy_only=False)
        null_elem[np.unique(row_of_value[nulls])] = True
        bad_value &= ~nulls
    null_elem &= ~wrong
    counts["null_element"] = int(null_elem.sum())
    non_finite = np.zeros(n, dtype=bool)
    non_finite[np.unique(row_of_value[bad_value])] = True
    non_finite &= ~(wrong | null_elem)
    counts["non_finite"] = int(non_finite.sum())
    valid = ~(null_rows | wrong | null_elem | non_finite)
    X = np.zeros((n, d))
    keep_values = valid[row_of_value]
    X[valid] = vals[keep_values].reshape(-1, d)
    return X, valid, counts


def weights_to_numpy(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Row weights as float64 with a validity mask (null, negative, non-finite are invalid)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    w = arr.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    null = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else np.zeros(len(w), bool)
    neg = (~null) & ~(np.isfinite(w) & (w >= 0))
    valid = ~(null | neg)
    counts = {"null_weight": int(null.sum()), "negative_weight": int(neg.sum())}
    return np.where(valid, w, 0.0), valid, counts
