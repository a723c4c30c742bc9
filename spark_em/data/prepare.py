"""Preparation of one fit: check the columns, choose the block store, run the first pass.

:func:`prepare` returns the opened store (a context manager the caller leaves when the fit
ends) and a :class:`PreparedData` value: what the first pass learned.  Nothing in it
changes afterwards.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame

from ..core.precision import precision
from ..core.segment_statistics import KeyedSummarizer
from ..errors import InvalidInputError
from .columns import (
    describe_features,
    feature_array,
    feature_dimension,
    quoted,
    selected_input,
)
from .dimension import describe_lengths, length_counts, most_frequent, schema_dimension
from .dimension import warning as dimension_warning
from .env import SparkEnv
from .stores import BLOCK_CACHES, BlockStore, StoreInput, choose_store, parquet_layout
from .validation import DISAGREE, ValidationSummarizer, check_validation

log = logging.getLogger("spark_em")


@dataclass(frozen=True)
class PreparedData:
    """What the validation pass learned about the valid rows of the input."""

    d: int
    n_rows: int
    weight_sum: float
    centre: np.ndarray  # weighted mean, the fit's centre c0
    sample: np.ndarray  # (m, d) rows drawn with probability proportional to weight
    bad_rows: dict  # invalid rows by kind (skipped with skip_invalid, else an error)
    store_name: str  # where the blocks live: the name of the block store
    seconds: float  # the preparation's wall time
    # missingValues="marginalize": NaN in the blocks are missing values, and the rows
    # with feature j missing, per feature (zeros otherwise)
    marginalize: bool = False
    missing_per_feature: tuple = ()
    # the statistics of the summarizers the first pass also ran (``prepare``'s
    # ``first_step``: a warm start's first E-step), about their own centre; empty when
    # none ran, or when the pass was run again for another d
    first_step: tuple = ()

    @property
    def rows_skipped(self) -> int:
        return int(sum(self.bad_rows.values()))


def prepare(
    df: DataFrame,
    features,
    weight_col: str | None = None,
    *,
    sample_size: int = 10_000,
    seed: int = 0,
    aggregation_depth: int = 2,
    block_cache: str = "auto",
    skip_invalid: bool = False,
    dtype: str = "float64",
    missing: bool = False,
    first_step: tuple = (),
    segments: tuple | None = None,
) -> tuple[BlockStore, PreparedData]:
    """Validate ``df`` and put its features in a block store, in one pass over the data.

    Raises :class:`InvalidInputError` for: a missing or non-numeric feature column, an empty
    DataFrame, invalid rows (null/NaN/inf/huge features, wrong vector lengths, null,
    negative or huge weights) unless ``skip_invalid`` -- each with the number of rows.
    ``dtype``: the type of the stored blocks (:mod:`spark_em.core.precision`; with
    ``float32``, features beyond its ``max_value`` are invalid rows too).
    With ``missing`` (missingValues="marginalize") NaN and null elements are missing
    values, kept as NaN in the blocks; a feature missing in every row is an error.
    ``first_step``: ``(centre, summarizers)`` the first pass runs too, over the valid rows
    centred on ``centre`` (a warm start's first E-step: one pass less for a short fit),
    when ``d`` is the centre's length; their statistics are ``PreparedData.first_step``.
    Where the schema does not give ``d``, the centre's length is the first guess of it
    (:mod:`spark_em.data.dimension`: rows of another length make it count the lengths).
    ``segments``: ``(segment column, its keys)`` (:mod:`spark_em.engine.update`):
    a store that can (``BlockStore.keyed``) keeps each segment's rows apart, and the first
    step's statistics are then ``{segment code: statistics}``.
    """
    t0 = time.perf_counter()
    if block_cache not in BLOCK_CACHES:
        raise ValueError(f"blockCache must be one of {BLOCK_CACHES}, got {block_cache!r}")
    chosen = precision(dtype)
    env = SparkEnv.of(df.sparkSession)
    arr = feature_array(df, features)
    keyed = [] if segments is None else [quoted(segments[0]).alias("s")]
    # the columns the first pass reads (a missing or non-numeric weightCol: before any job)
    selected = selected_input(df, arr, weight_col, *keyed)
    layout = parquet_layout(env, block_cache, df, features, weight_col, segments is not None)
    known = schema_dimension(df, features)
    if known is not None:
        d = known
    elif first_step and (layout is None or layout.d is None):
        # a warm start's dimension: the first guess, without a job to find one (after the
        # Parquet listing's, which is free and the data's own)
        d = int(np.shape(first_step[0])[0])
    elif layout is None and segments is None:
        d = None  # the first pass's tasks find it (read through Spark, no segments)
    else:
        d = _first_dimension(df, features, arr, layout)
    keys = None if segments is None else tuple(segments[1])

    def validated(d: int | None, also: tuple = (None, ())):
        store = choose_store(
            block_cache,
            StoreInput(
                df.sparkSession,
                env,
                d,
                selected,
                aggregation_depth,
                layout,
                chosen,
                missing,
                keys,
                weighted=bool(weight_col),
                # every row has d values: an array of the listed columns (a vector column's
                # ML attributes are not enforced: longer vectors are wrong_length rows)
                d_exact=isinstance(features, (list, tuple)),
            ),
        )
        try:
            validator = ValidationSummarizer(sample_size, seed, missing)
            summarizers = also[1]
            if store.keyed:  # the first step's statistics per segment too
                summarizers = [KeyedSummarizer(s) for s in summarizers]
            stats, more = store.open(validator, summarizers, also[0])
            return store, stats, tuple(more)
        except BaseException:
            store.release()
            raise

    # the first step's summarizers are for rows of its centre's length: not run for another d
    fits = bool(first_step) and np.shape(first_step[0]) == (d,)
    store, stats, first = validated(d, first_step if fits else (None, ()))
    lengths = None
    if d is None:  # the tasks' own d (arrow_blocks.task_dimension)
        if store.d is None:
            store.release()
            if stats.d == DISAGREE:  # vectors of several lengths: the most frequent
                lengths = length_counts(df, arr)
                d = _most_frequent(features, lengths) or _first_dimension(df, features, arr, layout)
            else:  # every row null: the first-row job names that
                d = _first_dimension(df, features, arr, layout)
            store, stats, first = validated(d)
        d = int(store.d)
    try:
        if stats.bad_rows.get("wrong_length"):
            # the first guess may be the malformed row's: d is the most frequent length
            lengths = length_counts(df, arr) if lengths is None else lengths
            best = _most_frequent(features, lengths) if known is None else d
            if best is not None and best != d:
                store.release()
                d = best
                store, stats, first = validated(d)
            if skip_invalid:
                log.warning(dimension_warning(features, lengths, d))
        check_validation(stats, features, weight_col, skip_invalid, chosen.max_value, lengths)
    except BaseException:
        store.release()
        raise
    return store, PreparedData(
        d=d,
        n_rows=int(stats.n_rows),
        weight_sum=float(stats.weight_sum),
        centre=stats.centre,
        sample=stats.sample,
        bad_rows=stats.bad_rows,
        store_name=store.name,
        seconds=time.perf_counter() - t0,
        marginalize=missing,
        missing_per_feature=tuple(stats.missing_per_feature),
        first_step=first,
    )


def _most_frequent(features, lengths: dict[int, int]) -> int | None:
    """The most frequent vector length (:func:`~spark_em.data.dimension.most_frequent`);
    InvalidInputError when that is 0."""
    best = most_frequent(lengths)
    if best == 0:
        raise InvalidInputError(
            f"{describe_features(features)}: most vectors have length 0 "
            f"({describe_lengths(lengths)})"
        )
    return best


def _first_dimension(df: DataFrame, features, arr, layout) -> int:
    """The first guess of d (:mod:`spark_em.data.dimension`): the length the Parquet listing
    saw, or the length of the first non-null row (a Spark job)."""
    if layout is not None and layout.d is not None:
        d = layout.d
    else:
        d = feature_dimension(df, features, arr)
    if d is None:
        raise InvalidInputError(
            f"the input DataFrame is empty (or {describe_features(features)} is null in "
            "every row): nothing to fit"
        )
    if d == 0:
        raise InvalidInputError(f"{describe_features(features)} has vectors of length 0")
    return int(d)
