"""``spark-em update``: the nightly incremental update of a model fitted with
``--segment-col`` (incremental EM: :meth:`spark_em.GaussianMixtureModel.update`).

It reads only the segments the model lacks -- found from the input's partition values
(``--input``: the ``col=value`` directories of its files, listed without reading a row;
else one distinct query of the column) -- plus, with ``--refresh N``, the N stored
segments whose statistics are the stalest; the read is filtered to those segments (Spark
prunes the partitions), and the update is told which they are (no query looks for them
again).  A partition directory whose files hold no row still counts among the keys when the
job chooses what to read (``--window``, ``--refresh``); the update itself then ends as if
it were not there.

    spark-em fit --input /lake/features --segment-col day --k 8 --model-out /models/gmm-0
    spark-em update --model /models/gmm-0 --input /lake/features --segment-col day \\
        --window 30 --refresh 2 --max-drift 0.5 --model-out /models/gmm-1 --report-out r.json

A night with nothing new reads nothing and writes the model with only the window applied
(the same parameters when no segment is dropped), exit 0, so that the chain goes on.
``--max-drift X``: when the new rows' mean log-likelihood under the old model is more than
X nats/row below the window's (its segments' statistics), nothing is written but the
report, exit 4 (the update has run by then: the new rows' score is its first E-step's where
its store keeps each segment's rows apart, else one more read of them).  ``--align-to
MODEL`` reorders the updated model's components (and its segments' statistics) to match
another saved model's.
"""

from __future__ import annotations

import time
from urllib.parse import unquote

from ..align import ALIGN_TO, aligned
from ..exit_codes import DriftError, UsageError
from ..inputs import check_source, load_model, read_input
from ..job import Job
from ..local_checks import check_before_spark
from ..main import Command
from ..options import FLOAT, INPUT, INT, OVERWRITE, RUN, STR, Option, at_least
from ..outputs import MODEL as MODEL_DIR
from ..outputs import REPORT, check_local_outputs

UPDATE = [
    Option(
        "model",
        "model",
        STR,
        "the saved model to update (fitted with --segment-col)",
        metavar="PATH",
    ),
    Option("segment-col", "input", STR, "the segment column (default: the model's)", metavar="COL"),
    Option(
        "refresh",
        "model",
        INT,
        "also re-read the N stored segments with the stalest statistics",
        0,
        check=at_least(0),
    ),
    Option(
        "window", "model", INT, "keep the N newest segment keys, drop the rest", check=at_least(1)
    ),
    Option(
        "max-iter", "model", INT, "iterations at most (default: the model's)", check=at_least(1)
    ),
    Option(
        "tol", "model", FLOAT, "convergence tolerance (default: the model's)", check=at_least(0)
    ),
    Option(
        "max-drift",
        "model",
        FLOAT,
        "exit 4 and write only the report when the new rows "
        "score more than X nats/row below the window",
        check=at_least(0),
        metavar="X",
    ),
    ALIGN_TO,
    Option("model-out", "output", STR, "save the updated model here (required)", metavar="PATH"),
    Option(
        "report-out", "output", STR, "write a JSON report (a file on this machine)", metavar="FILE"
    ),
    OVERWRITE,
]
OPTIONS = INPUT + UPDATE + RUN
OUTPUTS = (("model-out", MODEL_DIR), ("report-out", REPORT))


def check(s) -> None:
    check_source(s)
    for flag in ("model", "model-out"):
        if not s.get(flag):
            raise UsageError(f"--{flag} is required")
    check_local_outputs(s)
    check_before_spark(s, OUTPUTS, ("model", "align-to"))


def partition_keys(df, column: str, key_type: str) -> list | None:
    """The values of ``column`` in the ``column=value`` directories of ``df``'s files (no
    row is read), converted to the column's kind; None when the files do not say."""
    import datetime

    marker = f"/{column}="
    keys = set()
    try:
        files = df.inputFiles()
    except Exception:
        return None
    if not files:  # not a file source (a view, a DSv2 table): the rows say
        return None
    for f in files:
        if marker not in f:
            return None
        # the file URI's encoding undone; a value Spark escaped in its directory name
        # (``a:b`` is ``col=a%3Ab``) is left to the rows: file indexes differ in whether
        # they percent-encode the escaped name once more
        raw = unquote(f.split(marker, 1)[1].split("/", 1)[0])
        if raw == "__HIVE_DEFAULT_PARTITION__" or "%" in raw:
            return None
        keys.add(
            int(raw)
            if key_type == "long"
            else datetime.date.fromisoformat(raw)
            if key_type == "date"
            else raw
        )
    return sorted(keys)


def execute(s) -> int:
    from ...core.segment_statistics import window
    from ...data.columns import quoted
    from ...data.segments import key_type, segment_keys
    from ..reports import write_json

    with Job.start(s, "update", OUTPUTS) as job:
        model = load_model(s["model"], "model")
        col = s.get("segment-col") or model.getSegmentCol()
        if not model.segments or not col:
            raise UsageError(f"--model {s['model']} keeps no segments: fit it with --segment-col")
        if col != model.getSegmentCol():
            model = model.copy()
            model._set(segmentCol=col)
        inp = read_input(job.spark, s, model.getFeaturesCol())
        model.setFeaturesCol(inp.features)
        model.setWeightCol(inp.weight_col or model.getWeightCol())
        kind = key_type(inp.df, col)
        keys = None if s.get("where") else partition_keys(inp.df, col, kind)
        keys_from = "partition paths"
        if keys is None:
            _, keys = segment_keys(inp.df, col, model.getHandleInvalid() == "skip")
            keys_from = "rows"
        stored = {seg.key: seg for seg in model.segments}
        kept, dropped = window([*keys, *stored], s.get("window"))
        kept_set = set(kept)
        new = [k for k in keys if k not in stored and k in kept_set]
        stale = sorted(
            (seg for seg in model.segments if seg.key in set(keys) and seg.key in kept_set),
            key=lambda seg: (seg.iteration, seg.key),
        )
        refreshed = [seg.key for seg in stale[: s["refresh"]]]
        reading = sorted(new + refreshed)
        window_weight = sum(stored[k].weightSum for k in kept if k in stored)
        window_ll = sum(seg.stats.log_likelihood for seg in model._segments if seg.key in kept_set)
        report = {
            "spark_em_report": {"version": 1, "job": "update"},
            "model": s["model"],
            "input": inp.description,
            "segment_col": col,
            "keys_from": keys_from,
            "segments_new": [str(k) for k in new],
            "segments_refreshed": [str(k) for k in refreshed],
        }
        t0 = time.perf_counter()
        # the read is filtered to those segments' partitions; no query looks for them again
        updated = model.update(
            inp.df, s.get("window"), s.get("max-iter"), s.get("tol"), keys=reading
        )
        u = updated.summary.update
        drift = None
        if new:
            # the new rows under the old model: the update's own pass where its store keeps
            # each segment's rows apart, else one pass over them here
            scored = u.get("newSegments")
            if scored and scored["weightSum"] > 0:
                new_ll = scored["logLikelihood"] / scored["weightSum"]
            else:
                new_ll = model.score(inp.df.where(quoted(col).isin(new)))
            window_mean = window_ll / window_weight if window_weight else float("nan")
            drift = {
                "new_mean_log_likelihood": new_ll,
                "window_mean_log_likelihood": window_mean,
                "nats_per_row_below_window": window_mean - new_ll,
            }
            report["drift"] = drift
        limit = s.get("max-drift")
        if drift is not None and limit is not None and drift["nats_per_row_below_window"] > limit:
            report["status"] = f"refused: drift above --max-drift {limit:g}"
            job.stage("report-out", lambda p: write_json(report, p))
            job.commit()
            raise DriftError(
                f"the new rows score {drift['nats_per_row_below_window']:.4f} nats/row below the "
                f"window (--max-drift {limit:g}); nothing written"
                + (" except the report" if "report-out" in job.targets else "")
            )
        report.update(
            status="ok" if reading else "nothing new",
            rows_read=u["rowsRead"],
            segments_updated=u["segmentsUpdated"],
            segments_frozen=u["segmentsFrozen"],
            segments_dropped=u["segmentsDropped"],
            iterations=u["iterations"],
            converged=u["converged"],
            mean_log_likelihood=updated.summary.meanLogLikelihood,
            seconds={"update": round(time.perf_counter() - t0, 3)},
        )
        if s.get("align-to"):  # the segments' statistics are reordered with the components
            updated, report["aligned_to"] = aligned(updated, s["align-to"])
        job.stage("model-out", lambda p: updated.write().saveImpl(p))
        report["seconds"]["total"] = round(job.seconds(), 3)
        report["outputs"] = job.written()
        job.stage("report-out", lambda p: write_json(report, p))
        job.commit()
        if not s["quiet"]:
            print(
                f"updated {len(u['segmentsUpdated'])} segments ({u['rowsRead']} rows), "
                f"{len(u['segmentsFrozen'])} frozen, {len(u['segmentsDropped'])} dropped, "
                f"{u['iterations']} iterations, converged={u['converged']}"
            )
        job.print_written()
    return 0


COMMAND = Command("update", __doc__, OPTIONS, check, execute)
