"""``spark-em select``: choose k and the covariance type, every candidate fitted in ONE scan
of the data per EM iteration, and save the best by BIC (or AIC).

    spark-em select --input /lake/features.parquet --k 2..8 --covariance-types full,diag \\
        --model-out /models/gmm --report-out select.json
"""

from __future__ import annotations

import sys

from ...core.covariance import COVARIANCE_TYPES
from ...errors import InvalidRowsError
from ..align import ALIGN_TO, aligned
from ..data_errors import refused, skipped
from ..exit_codes import UsageError
from ..inputs import check_source, read_input
from ..job import Job, checkpoint_words, estimator
from ..local_checks import check_before_spark
from ..main import Command
from ..options import (
    CHECKPOINT,
    COLUMNS,
    INPUT,
    MLFLOW,
    OVERWRITE,
    RUN,
    STR,
    Option,
    param_options,
)
from ..outputs import MODEL as MODEL_DIR
from ..outputs import PLOTS, REPORT, check_local_outputs


def parse_ks(text: str) -> list[int]:
    """``2..8`` (inclusive) or ``2,3,5``: the candidate k, ValueError if malformed."""
    text = str(text).strip()
    if ".." in text:
        low, _, high = text.partition("..")
        ks = list(range(int(low), int(high) + 1))
    else:
        ks = [int(v) for v in text.split(",") if v.strip()]
    if not ks or min(ks) < 1:
        raise ValueError(text)
    return sorted(set(ks))


def _ks_problem(value) -> str | None:
    try:
        parse_ks(value)
    except ValueError:
        return f"must be a range like 2..8 or a list like 2,3,5 of k >= 1, got {value!r}"
    return None


def _types_problem(value) -> str | None:
    types = [value] if isinstance(value, str) else list(value)
    bad = [t for t in types if t not in COVARIANCE_TYPES]
    return (
        f"unknown covariance types {bad}; choose from {', '.join(COVARIANCE_TYPES)}"
        if bad
        else None
    )


SELECT = [
    Option(
        "k",
        "select",
        STR,
        "candidate numbers of components: 2..8 or 2,3,5",
        "2..8",
        check=_ks_problem,
        metavar="KS",
    ),
    Option(
        "covariance-types",
        "select",
        COLUMNS,
        "candidate covariance types, comma-separated",
        "full",
        check=_types_problem,
        metavar="TYPES",
    ),
    Option("criterion", "select", STR, "what chooses the best candidate", "bic", ("bic", "aic")),
]
ALIGN = [ALIGN_TO]
OUTPUT = [
    Option("model-out", "output", STR, "save the best model here (required)", metavar="PATH"),
    Option(
        "report-out",
        "output",
        STR,
        "write the table and the choice as JSON (a file on this machine)",
        metavar="FILE",
    ),
    Option(
        "plot-dir",
        "output",
        STR,
        "write bic.png (criterion against k per covariance type)",
        metavar="DIR",
    ),
    OVERWRITE,
]
OPTIONS = INPUT + SELECT + param_options("select") + ALIGN + CHECKPOINT + OUTPUT + RUN + MLFLOW
OUTPUTS = (("model-out", MODEL_DIR), ("report-out", REPORT), ("plot-dir", PLOTS))


def check(s) -> None:
    check_source(s, allow_demo=False)
    if not s.get("model-out"):
        raise UsageError("--model-out is required (where to save the best model)")
    check_local_outputs(s)
    check_before_spark(s, OUTPUTS, ("align-to",))


def execute(s) -> int:
    from ..reports import select_report, write_json

    ks = parse_ks(s["k"])
    types = (
        [s["covariance-types"]]
        if isinstance(s["covariance-types"], str)
        else list(s["covariance-types"])
    )
    with Job.start(s, "select", OUTPUTS) as job:
        inp = read_input(job.spark, s, "features")
        gm = estimator(s, "select", inp.features, inp.weight_col)
        gm.progress = job.progress
        params = {o.param: s[o.key] for o in param_options("select") if s.get(o.key) is not None}
        settings = dict(
            params,
            k=ks,
            covariance_types=types,
            criterion=s["criterion"],
            features=inp.features,
            input=inp.description,
        )
        job.tracker.start(settings)
        try:
            with checkpoint_words(s):
                model, table = gm.fitSelect(inp.df, ks, types, s["criterion"])
        except InvalidRowsError as exc:
            raise refused(inp.df, inp.features, inp.weight_col, exc.d, lengths=exc.lengths) from exc
        rows = mark_stuck([r.asDict() for r in table.orderBy("covarianceType", "k").collect()])
        best = {"k": model.getK(), "covarianceType": model.covarianceType}
        extra = {}
        if model.summary.numRowsSkipped:
            line, extra["skipped_rows"] = skipped(
                inp.df, inp.features, inp.weight_col, model.numFeatures
            )
            job.warn(line)
        if s.get("align-to"):
            model, extra["aligned_to"] = aligned(model, s["align-to"])
        print_table(rows, best, s["criterion"], sys.stdout)
        job.stage("model-out", lambda p: model.write().saveImpl(p))
        if "plot-dir" in job.targets:
            from ..plots import write_criterion_plot

            job.stage("plot-dir", lambda p: write_criterion_plot(p, rows, s["criterion"], best))
        report = dict(select_report(settings, s["criterion"], best, rows, model, job), **extra)
        job.stage("report-out", lambda p: write_json(report, p))
        job.tracker.log_select(report, model, job.local_staged("model-out"))
        job.commit()
    job.print_written()
    return 0


def mark_stuck(rows: list[dict]) -> list[dict]:
    """``rows`` with ``stuck``: a candidate whose mean log-likelihood is below that of a
    smaller k of the same covariance type.  A mixture of k+1 components can always do at
    least as well as one of k (a component of weight 0), so such a fit stopped in a local
    optimum: raise --n-init, or do not trust its BIC."""
    for r in rows:
        smaller = [
            o["meanLogLikelihood"]
            for o in rows
            if o["covarianceType"] == r["covarianceType"] and o["k"] < r["k"]
        ]
        r["stuck"] = bool(smaller) and r["meanLogLikelihood"] < max(smaller)
    return rows


def print_table(rows: list[dict], best: dict, criterion: str, stream) -> None:
    """The candidates: log-likelihood as the mean per row (6 decimals, the unit of the
    progress lines and of sklearn's score), BIC and AIC as totals."""
    print(
        f"{'k':>3} {'covariance':<10} {'mean log-lik':>13} {'BIC':>16} {'AIC':>16} "
        f"{'iter':>5} {'conv':>5} {'seconds':>8}",
        file=stream,
    )
    for r in rows:
        notes = []
        if (r["k"], r["covarianceType"]) == (best["k"], best["covarianceType"]):
            notes.append("<- best")
        if r.get("stuck"):
            notes.append("stuck: below a smaller k (local optimum; raise --init-trials)")
        if r.get("degenerateStart"):
            notes.append("degenerate start: every start had an empty or collapsed component")
        print(
            f"{r['k']:>3} {r['covarianceType']:<10} {r['meanLogLikelihood']:>13.6f} "
            f"{r['bic']:>16.2f} {r['aic']:>16.2f} {r['iterations']:>5} "
            f"{str(r['converged']).lower():>5} {r['seconds']:>8.2f}"
            + ("  " + "; ".join(notes) if notes else ""),
            file=stream,
        )
    print(f"best by {criterion.upper()}: k={best['k']} {best['covarianceType']}", file=stream)


COMMAND = Command("select", __doc__, OPTIONS, check, execute)
