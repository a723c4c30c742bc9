"""Fits that keep their statistics per segment, and the incremental update of such a model
(Neal & Hinton, 1998; :mod:`spark_em.core.segment_statistics`), as short sequences of the
fit template's steps (:class:`~spark_em.engine.fit_session.FitSession`).

* :func:`fit_segmented`: a fit as :func:`~spark_em.engine.fit_session.fit` whose result
  keeps each segment's statistics of its last E-step; the model's parameters are the
  M-step of their sum.
* :func:`update`: the segments present in the input are E-stepped every iteration, every
  other stored segment of the window stays frozen: ``theta <- M(frozen + fresh(theta))``
  from the model's parameters until the fresh rows' mean log-likelihood changes by less
  than ``tol`` or ``maxIter``; the fresh segments' statistics of the last E-step replace
  any stored ones of the same keys.

A store that keeps each segment's rows apart (``BlockStore.keyed``: local block files and
Spark's cache, for a fit or an update of at most
:data:`~spark_em.core.tuning.MAX_KEYED_SEGMENTS` segments; not the Parquet store, which
reads the input's own files) gives every pass's statistics per segment: the last E-step's
are the (fresh) segments' statistics,
and the first's (the warm start's, taken by the validation pass) score the segments new to
the model under its parameters (``newSegments`` in the report: the nightly job's drift
signal) -- no read beyond the iterations'.  Otherwise the store holds the rows without keys:
every iteration is one ordinary pass, and the per-segment split is one more read of the
input at the end (:func:`~spark_em.data.segments.keyed_pass`); the caller scores the new
segments itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from pyspark.sql import DataFrame

from ..core.missing import e_step
from ..core.segment_statistics import (
    KeyedSummarizer,
    SegmentStats,
    m_step_of,
    reoriginated,
    summed,
    window,
)
from ..core.tuning import MAX_KEYED_SEGMENTS
from ..data.columns import quoted
from ..data.passes import run_pass
from ..data.segments import given_keys, keyed_pass, segment_keys
from ..errors import InvalidInputError
from .em import FitResult, Run, best_run
from .fit_session import FitSession, FitSettings


@dataclass(frozen=True)
class SegmentedResult:
    """A fit's or an update's result, its segments (sorted by key) and what it did
    (``report``: rowsRead, segmentsUpdated, segmentsFrozen, segmentsDropped -- lists of
    keys as strings -- iterations, converged)."""

    result: FitResult
    segments: tuple[SegmentStats, ...]
    runs: int = 1
    report: dict = field(default_factory=dict)


def fit_segmented(
    dataset: DataFrame, settings: FitSettings, segment_col: str, progress: Callable | None = None
) -> SegmentedResult:
    """A fit (``nInit`` runs, or one from the initial model) whose result keeps each
    segment's statistics of the last E-step; its parameters are their sum's M-step."""
    if settings.max_iter < 1:
        raise ValueError("segmentCol needs maxIter >= 1: segments keep an E-step's statistics")
    dataset, keys = segment_keys(dataset, segment_col, settings.skip_invalid)
    apart = (segment_col, keys) if len(keys) <= MAX_KEYED_SEGMENTS else None
    with FitSession.open(dataset, settings, settings.k, progress, apart) as session:
        n = 1 if settings.warm_start is not None else settings.n_init
        runs = session.start(
            [(settings.k, settings.covariance_type)], [f"run {i}" for i in range(n)]
        )
        runs = session.iterate(runs)
        best = best_run(runs)
        segments = _keyed(session, dataset, segment_col, keys, best, first_iteration=0)
        result = session.result(best)
    params = m_step_of(segments, settings.reg_covar)
    report = _report(result, segments, [], [], True)
    return SegmentedResult(replace(result, params=params), tuple(segments), len(runs), report)


def update(
    dataset: DataFrame,
    settings: FitSettings,
    segment_col: str,
    stored: Sequence[SegmentStats],
    window_size: int | None = None,
    progress: Callable | None = None,
    keys: Sequence | None = None,
) -> SegmentedResult | None:
    """Incremental EM from ``settings.warm_start`` (the model's parameters) over the
    segments present in ``dataset``, the other ``stored`` segments of the window frozen.
    None when no segment of the window is present in ``dataset`` (nothing to E-step).

    The segments present are found by one distinct query; or, ``keys`` given, ``dataset``
    is cut to those keys' rows and, when every key of them in the window has a valid row
    (the validation pass's per-segment statistics tell, where the store keeps each
    segment's rows apart), no query runs.  Otherwise the query decides after the
    validation pass: the update goes on in the same session when its window needs no
    other rows, else (or when the listed rows fail the validation) it starts again as the
    query finds the segments.  The parameters and segments are the query path's either
    way."""
    if settings.max_iter < 1:
        raise ValueError("update needs maxIter >= 1")
    if window_size is not None and window_size < 1:
        raise ValueError(f"window must be None or >= 1, got {window_size!r}")
    todo = (settings, segment_col, stored, window_size, progress)
    if keys is None:
        return _update(*segment_keys(dataset, segment_col, settings.skip_invalid), *todo)
    dataset, present = given_keys(dataset, segment_col, keys)
    try:
        return _update(dataset, present, *todo, listed=True)
    except (InvalidInputError, _ListedWithoutRows):  # as the query finds them (or raises)
        pass
    return _update(*segment_keys(dataset, segment_col, settings.skip_invalid), *todo)


class _ListedWithoutRows(Exception):
    """The listed segments are not those the query finds, and the window then needs rows
    the session did not read: the update starts again from the query's keys."""


def _all_have_rows(session: FitSession, fresh: list) -> bool:
    """Whether each segment of ``fresh`` has a valid row, from the validation pass's first
    E-step kept per segment by a keyed store (False when the store did not keep it)."""
    first = session.data.first_step
    return bool(first) and isinstance(first[0], dict) and set(first[0]) == set(range(len(fresh)))


def _update(
    dataset: DataFrame,
    present: list,
    settings: FitSettings,
    segment_col: str,
    stored: Sequence[SegmentStats],
    window_size: int | None,
    progress: Callable | None,
    listed: bool = False,
) -> SegmentedResult | None:
    _check_key_types(present, stored, segment_col)
    fresh, frozen, dropped = _windowed(present, stored, window_size)
    chain = 1 + max((s.iteration for s in stored), default=-1)
    if not fresh:
        return None
    given = dataset  # every present key's rows, for the query below
    if len(fresh) < len(present):
        dataset = dataset.where(quoted(segment_col).isin(fresh))
    stored_keys = {s.key for s in stored}
    new = [i for i, key in enumerate(fresh) if key not in stored_keys]
    apart = (segment_col, fresh) if len(fresh) <= MAX_KEYED_SEGMENTS else None
    with FitSession.open(dataset, settings, settings.k, progress, apart) as session:
        runs = session.start([(settings.k, settings.covariance_type)], ["update"])
        if listed and not _all_have_rows(session, fresh):
            # the query's segments: the same rows when its window keeps no listed key
            # this session left out (then only the frozen segments and the drops change)
            _, found = segment_keys(given, segment_col, settings.skip_invalid)
            now, frozen, dropped = _windowed(found, stored, window_size)
            if not now or set(now) - set(fresh):
                raise _ListedWithoutRows
            new = [i for i in new if fresh[i] in set(now)]
        centre = session.data.centre
        keyed = session.store.keyed and bool(new)
        model = settings.warm_start.params if settings.warm_start is not None else None
        scores = _new_scores(session, model, new) if keyed and model is not None else None
        runs[0].frozen = summed(frozen, centre) if frozen else None
        runs = session.iterate(runs)
        run = runs[0]
        updated = _keyed(session, dataset, segment_col, fresh, run, first_iteration=chain)
        result = session.result(run)
    segments = sorted([*frozen, *updated], key=lambda s: s.key)
    params = m_step_of(segments, settings.reg_covar)
    report = _report(result, updated, frozen, dropped, run.converged)
    if scores is not None:
        report["newSegments"] = {"keys": [str(fresh[i]) for i in new], **scores}
    return SegmentedResult(replace(result, params=params), tuple(segments), 1, report)


def _windowed(present: list, stored: Sequence[SegmentStats], window_size: int | None):
    """``(fresh keys, frozen segments, dropped keys)`` of an update whose input holds the
    segments ``present``: the window over them and the stored ones."""
    kept, dropped = window(present + [s.key for s in stored], window_size)
    kept_set, present_set = set(kept), set(present)
    fresh = [k for k in present if k in kept_set]
    frozen = [s for s in stored if s.key in kept_set and s.key not in present_set]
    return fresh, frozen, dropped


def _new_scores(session: FitSession, params, codes: list[int]) -> dict:
    """The weight sum and log-likelihood of the segments ``codes`` (new to the model) under
    ``params`` (the model's), from a keyed store: the first E-step the validation pass took
    (a warm start's), else one pass, E-step without moments."""
    data = session.data
    taken = session.warm_estep[0][0] if session.warm_estep is not None else None
    if isinstance(taken, dict):
        stats = {c: st for c, st in taken.items() if c in set(codes)}
    else:
        kernel = e_step(
            params, data.centre, data.marginalize, moments=False, dtype=session.store.precision
        )
        (stats,), _ = run_pass(
            session.store, [KeyedSummarizer(kernel, only=codes)], data.centre, "new segments"
        )
    weight = float(sum(st.weight_sum for st in stats.values()))
    ll = float(sum(st.log_likelihood for st in stats.values()))
    return {"weightSum": weight, "logLikelihood": ll}


def _keyed(
    session: FitSession, dataset, segment_col: str, keys: list, run: Run, first_iteration: int
) -> list[SegmentStats]:
    """Each segment's statistics under the parameters of ``run``'s last E-step (its current
    ones when no E-step ran, as after resuming a finished checkpoint), moments about the
    session's centre; their iteration in the chain is ``first_iteration`` + the E-steps
    before the last."""
    s, centre = session.settings, session.data.centre
    params = run.estep_params if run.estep_params is not None else run.params
    iteration = first_iteration + max(len(run.history) - 1, 0)
    marginalize = session.data.marginalize
    if run.segment_stats is not None:  # the last E-step's, per segment (a keyed store)
        stats = {keys[code]: st for code, st in run.segment_stats.items()}
    elif session.store.keyed:  # from the blocks, a pass like an iteration's
        kernel = e_step(params, centre, marginalize, dtype=session.store.precision)
        (by_code,), _ = run_pass(
            session.store, [KeyedSummarizer(kernel)], centre, "segment statistics"
        )
        stats = {keys[code]: st for code, st in by_code.items()}
    else:
        kernel = e_step(params, centre, marginalize)
        stats = keyed_pass(
            dataset,
            s.features,
            s.weight_col,
            segment_col,
            keys,
            kernel,
            centre,
            s.aggregation_depth,
            missing=marginalize,
        )
    return [
        SegmentStats(key, iteration, centre, reoriginated(st, centre, centre, None))
        for key, st in sorted(stats.items(), key=lambda kv: kv[0])
    ]


def _check_key_types(present: list, stored: Sequence[SegmentStats], segment_col: str) -> None:
    if not present or not stored:
        return
    new, old = type(present[0]), type(stored[0].key)
    if not (issubclass(new, old) or issubclass(old, new)):
        raise ValueError(
            f"segmentCol {segment_col!r} holds {new.__name__} keys but the model's segments "
            f"have {old.__name__} keys"
        )


def _report(result: FitResult, updated, frozen, dropped, converged: bool) -> dict:
    return {
        "rowsRead": int(result.n_rows),
        "segmentsUpdated": [str(s.key) for s in updated],
        "segmentsFrozen": [str(s.key) for s in frozen],
        "segmentsDropped": [str(k) for k in dropped],
        "iterations": int(result.num_iter),
        "converged": bool(converged),
    }


def unchanged(stored: Sequence[SegmentStats], window_size: int | None, reg_covar: float):
    """``(segments kept, keys dropped, their parameters)`` of an update that read nothing
    new: the window applied to the stored segments, nothing E-stepped."""
    kept, dropped = window([s.key for s in stored], window_size)
    segments = [s for s in stored if s.key in set(kept)]
    return segments, dropped, m_step_of(segments, reg_covar)


def nothing_read(segments: Sequence[SegmentStats], dropped: Sequence) -> dict:
    """The report of an update that read nothing new (:func:`unchanged`)."""
    return {
        "rowsRead": 0,
        "segmentsUpdated": [],
        "segmentsFrozen": [str(s.key) for s in segments],
        "segmentsDropped": [str(k) for k in dropped],
        "iterations": 0,
        "converged": True,
    }
