"""Arrow list columns <-> (n, d) numpy blocks, with row validation. No Spark import.

Used inside Spark tasks: the preparation pass turns each Arrow batch of the feature column
(``array<double>``) into one numpy block, and ``transform`` reads its input the same way.
Nothing here loops over rows in Python.

With ``missing=True`` (``missingValues="marginalize"``) a NaN or null element is a missing
value, kept as NaN in ``X`` (the canonical quiet NaN, whatever its source, so that a row's
key does not depend on the store); +-inf, huge values, null vectors and wrong lengths stay
invalid, and a row whose every feature is missing is dropped as ``all_missing``.
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
    "huge_value",  # |x| > MAX_ABS_VALUE
    "null_weight",
    "negative_weight",  # negative or non-finite weight
    "huge_weight",  # weight > MAX_WEIGHT
    "all_missing",  # missingValues="marginalize": every feature of the row is missing
)

# Kinds that are left out of a fit whatever handleInvalid says (with one warning): a row
# without an observed feature carries no information, but nothing is wrong with it.
UNINFORMATIVE_KINDS = ("all_missing",)

# Larger magnitudes are refused: the statistics hold sums of w * x^2 over all rows, which
# stay far from float64's overflow (1.8e308) for any realistic row count only below these.
MAX_ABS_VALUE = 1e75
MAX_WEIGHT = 1e75


def list_to_matrix(
    arr: pa.Array, d: int, missing: bool = False
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Turn a list array of length n into ``X (n, d) float64`` plus a row-validity mask.

    Invalid rows (null, wrong length, null or non-finite elements) are zero in ``X`` and
    False in the mask; with ``missing``, NaN and null elements are missing values (NaN in
    ``X``), see the module's docstring.  Returns ``(X, valid, counts)``.
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
        if missing:
            return _with_missing(X, np.ones(n, dtype=bool), counts)
        if _within(X, MAX_ABS_VALUE):  # the common case: two reductions, no row-wise checks
            return X, np.ones(n, dtype=bool), counts
        finite = np.isfinite(X).all(axis=1) if d else np.ones(n, dtype=bool)
        counts["non_finite"] = int(n - finite.sum())
        valid = _not_huge(X, finite, counts)
        if not valid.all():
            X = np.where(valid[:, None], X, 0.0)
        return X, valid, counts
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
        if missing:
            vals = np.where(nulls, np.nan, vals)
        else:
            null_elem[np.unique(row_of_value[nulls])] = True
        bad_value &= ~nulls
    if missing:
        bad_value &= ~np.isnan(vals)
    null_elem &= ~wrong
    counts["null_element"] = int(null_elem.sum())
    non_finite = np.zeros(n, dtype=bool)
    non_finite[np.unique(row_of_value[bad_value])] = True
    non_finite &= ~(wrong | null_elem)
    counts["non_finite"] = int(non_finite.sum())
    valid = ~(null_rows | wrong | null_elem | non_finite)
    X = np.zeros((n, d))
    keep_values = valid[row_of_value]
    X[valid] = vals[keep_values].reshape(int(valid.sum()), d)
    if missing:
        return _with_missing(X, valid, counts)
    valid = _not_huge(X, valid, counts)
    X[~valid] = 0.0
    return X, valid, counts


def _with_missing(X: np.ndarray, valid: np.ndarray, counts: dict):
    """``(X, valid, counts)`` of rows whose NaN are missing values: rows with +-inf are
    ``non_finite``, rows with a huge value ``huge_value``, rows with no observed value
    ``all_missing`` (those three invalid); the other rows' NaN are made the canonical NaN
    and every invalid row is zero."""
    nan = np.isnan(X)
    with np.errstate(invalid="ignore"):
        inf = valid & ~(np.isfinite(X) | nan).all(axis=1)
    counts["non_finite"] += int(inf.sum())
    valid = _not_huge(X, valid & ~inf, counts)
    empty = valid & nan.all(axis=1)
    counts["all_missing"] = int(empty.sum())
    valid &= ~empty
    if nan.any():
        X = np.where(nan, np.nan, X)  # a copy: X may be a view of the Arrow buffer
    if not valid.all():
        X = np.where(valid[:, None], X, 0.0)
    return X, valid, counts


def _within(X: np.ndarray, max_value: float) -> bool:
    """Whether every value of ``X`` is in [-max_value, max_value] (so finite, not NaN: a NaN
    makes both comparisons false) -- two reductions, a tenth of the row-wise checks' time."""
    return X.size == 0 or bool(X.min() >= -max_value and X.max() <= max_value)


def _not_huge(
    X: np.ndarray, valid: np.ndarray, counts: dict, max_value: float = MAX_ABS_VALUE
) -> np.ndarray:
    """``valid`` without the rows holding a value beyond +-``max_value`` (counted)."""
    if _within(X, max_value):
        counts["huge_value"] = 0
        return valid
    with np.errstate(invalid="ignore"):
        huge = valid & (np.abs(X) > max_value).any(axis=1) if X.shape[1] else valid & False
    counts["huge_value"] = int(huge.sum())
    return valid & ~huge


def weights_to_numpy(
    arr: pa.Array | None, n: int = 0
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Row weights as float64 with a validity mask (null, negative, non-finite are invalid);
    ``arr`` None: the ``n`` weights of 1 of an input without a weightCol."""
    if arr is None:
        return np.ones(n), np.ones(n, dtype=bool), {}
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_float64(arr.type):  # integers, decimals (nulls stay nulls)
        arr = pc.cast(arr, pa.float64(), safe=False)
    w = arr.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    null = (
        arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else np.zeros(len(w), bool)
    )
    with np.errstate(invalid="ignore"):
        neg = (~null) & ~(np.isfinite(w) & (w >= 0))
        huge = (~null) & ~neg & (w > MAX_WEIGHT)
    valid = ~(null | neg | huge)
    counts = {
        "null_weight": int(null.sum()),
        "negative_weight": int(neg.sum()),
        "huge_weight": int(huge.sum()),
    }
    return np.where(valid, w, 0.0), valid, counts


def task_dimension(batches, d: int | None, column: int = 0):
    """``(batch, d)`` for each Arrow batch of one task, in order: ``d`` as given, or where
    the fit does not know it yet (None), the task's own -- the length of its first
    non-null, non-empty feature vector (``column``: the features' column); batches before
    that row wait for it.  A task without such a row gets 0 when every row it holds is
    null (its statistics then say nothing about d, :class:`~spark_em.data.validation.
    ValidationStats`), and 1 when it holds empty vectors: those are then ``wrong_length``
    rows and the driver, whose tasks disagree unless d is 1, counts the rows of each length
    (:func:`spark_em.data.prepare.prepare`).  The batches that wait hold only null and
    empty vectors (Arrow keeps about 13 bytes a row of them, weight included)."""
    if d is not None:
        for batch in batches:
            yield batch, d
        return
    waiting: list = []
    for batch in batches:
        if d is None:
            lengths = pc.fill_null(pc.list_value_length(batch.column(column)), 0)
            first = np.flatnonzero(lengths.to_numpy(zero_copy_only=False) > 0)
            if not first.shape[0]:
                waiting.append(batch)
                continue
            d = int(lengths[int(first[0])].as_py())
            yield from ((b, d) for b in waiting)
            waiting = []
        yield batch, d
    if waiting:  # no vector with a value: all null (0), or some empty (1)
        empty = any(b.column(column).null_count < b.num_rows for b in waiting)
        yield from ((b, 1 if empty else 0) for b in waiting)


def decode_rows(
    features: pa.Array,
    weights: pa.Array | None,
    d: int,
    max_value: float = MAX_ABS_VALUE,
    missing: bool = False,
):
    """The valid rows of one Arrow batch of an ``array<double>`` features column and a
    weights column: see :func:`combine_rows` (``missing``: NaN and nulls are missing
    values, :func:`list_to_matrix`)."""
    return combine_rows(*list_to_matrix(features, d, missing), weights, max_value)


def decode_batch(
    batch: pa.RecordBatch, d: int, max_value: float = MAX_ABS_VALUE, missing: bool = False
):
    """:func:`decode_rows` of one batch of the input's selected columns
    (:func:`~spark_em.data.columns.selected_input`: ``x`` first, ``w`` only where the fit
    has a weightCol, the segment key ``s`` where there are segments)."""
    return decode_rows(batch.column(0), batch_weights(batch), d, max_value, missing)


def batch_weights(batch: pa.RecordBatch) -> pa.Array | None:
    """The batch's weights (its column ``w``), or None where the input has no weightCol and
    none were selected (:func:`~spark_em.data.columns.selected_input`)."""
    return batch.column("w") if "w" in batch.schema.names else None


def combine_rows(
    X: np.ndarray,
    valid: np.ndarray,
    counts: dict,
    weights: pa.Array | None,
    max_value: float = MAX_ABS_VALUE,
):
    """Valid rows of decoded features (``X``, ``valid``, ``counts`` as
    :func:`list_to_matrix` returns them) and their weights (all 1 for ``None``):
    ``(X (m, d) float64, w (m,), bad)`` where ``bad`` counts the dropped rows by kind (int64,
    in :data:`BAD_KINDS` order; a row with bad features is not counted again for a bad
    weight).  ``max_value`` below MAX_ABS_VALUE (float32 blocks,
    :mod:`spark_em.core.precision`): rows beyond it are ``huge_value`` too."""
    if max_value < MAX_ABS_VALUE and X.shape[0]:
        already = counts["huge_value"]
        valid = _not_huge(X, valid, counts, max_value)
        counts["huge_value"] += already
    w, wvalid, wcounts = weights_to_numpy(weights, X.shape[0])
    if weights is not None and not valid.all() and not wvalid.all():
        # count bad weights among good features only
        if isinstance(weights, pa.ChunkedArray):
            weights = weights.combine_chunks()
        _, _, wcounts = weights_to_numpy(weights.filter(pa.array(valid)))
    counts.update(wcounts)
    keep = valid & wvalid
    if not keep.all():
        X, w = X[keep], w[keep]
    bad = np.array([counts.get(k, 0) for k in BAD_KINDS], dtype=np.int64)
    return np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(w, np.float64), bad


def vectors_to_matrix(
    arr: pa.Array, d: int, missing: bool = False
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Spark ML vectors as stored in Parquet (struct of ``type`` 0 sparse / 1 dense,
    ``size``, ``indices``, ``values``) -> ``(X (n, d), valid, counts)`` as
    :func:`list_to_matrix` (a sparse vector's implicit entries are zeros, never missing)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    null = arr.is_null().to_numpy(zero_copy_only=False)
    kind = pc.fill_null(arr.field("type"), 1).to_numpy(zero_copy_only=False)
    values = arr.field("values")
    if not (kind == 0).any():  # all dense (or null): the values lists are the rows
        return list_to_matrix(
            pc.if_else(pa.array(null), pa.scalar(None, values.type), values), d, missing
        )
    counts = dict.fromkeys(BAD_KINDS, 0)
    X = np.zeros((n, d))
    size = pc.fill_null(arr.field("size"), -1).to_numpy(zero_copy_only=False)
    lengths = pc.fill_null(pc.list_value_length(values), 0).to_numpy(zero_copy_only=False)
    dense = ~null & (kind == 1)
    sparse = ~null & (kind == 0)
    wrong = (dense & (lengths != d)) | (sparse & (size != d))
    vals = values.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
    row_of_value = np.repeat(np.arange(n), np.where(null, 0, lengths))
    bad_value = ~np.isfinite(vals)
    if missing:
        bad_value &= ~np.isnan(vals)
    idx = arr.field("indices").flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    # indices follow the values of sparse rows only; place each value
    in_sparse = sparse[row_of_value]
    ok_rows = ~(null | wrong)
    keep_dense = dense[row_of_value] & ok_rows[row_of_value]
    X[dense & ok_rows] = vals[keep_dense].reshape(-1, d)
    sp_rows = row_of_value[in_sparse]
    if idx.shape[0] != sp_rows.shape[0]:  # indices and values of different lengths
        wrong |= sparse
        sp_rows, idx = sp_rows[:0], idx[:0]
    out_of_range = (idx < 0) | (idx >= d)
    wrong_idx = np.zeros(n, dtype=bool)
    wrong_idx[sp_rows[out_of_range]] = True
    wrong |= wrong_idx
    ok = ok_rows[sp_rows] & ~wrong_idx[sp_rows]
    X[sp_rows[ok], idx[ok]] = vals[in_sparse][: sp_rows.shape[0]][ok]
    non_finite = np.zeros(n, dtype=bool)
    non_finite[np.unique(row_of_value[bad_value])] = True
    non_finite &= ~(null | wrong)
    counts["null_vector"] = int(null.sum())
    counts["wrong_length"] = int(wrong.sum())
    counts["non_finite"] = int(non_finite.sum())
    valid = ~(null | wrong | non_finite)
    X[~valid] = 0.0
    if missing:
        return _with_missing(X, valid, counts)
    valid = _not_huge(X, valid, counts)
    X[~valid] = 0.0
    return X, valid, counts


def columns_to_matrix(
    cols: list, d: int, missing: bool = False
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Numeric columns (one per feature) -> ``(X (n, d), valid, counts)`` as
    :func:`list_to_matrix`: a null is a null element, NaN/inf non-finite (with
    ``missing``, a null or NaN is a missing value)."""
    counts = dict.fromkeys(BAD_KINDS, 0)
    arrays = [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in cols]
    n = len(arrays[0]) if arrays else 0
    X = np.empty((n, d))
    null = np.zeros(n, dtype=bool)
    for j, a in enumerate(arrays):
        a = pc.cast(a, pa.float64(), safe=False)  # as Spark's cast: big integers round
        if a.null_count:
            null |= a.is_null().to_numpy(zero_copy_only=False)
            a = pc.fill_null(a, np.nan if missing else 0.0)
        X[:, j] = a.to_numpy(zero_copy_only=False)
    if missing:
        return _with_missing(X, np.ones(n, dtype=bool), counts)
    finite = np.isfinite(X).all(axis=1)
    counts["null_element"] = int(null.sum())
    counts["non_finite"] = int((~null & ~finite).sum())
    valid = ~null & finite
    valid = _not_huge(X, valid, counts)
    X[~valid] = 0.0
    return X, valid, counts
