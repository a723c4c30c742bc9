"""``spark-em select``: choose k and the covariance type, every candidate fitted in ONE scan
of the data per EM iteration, and save the best by BIC (or AIC).

    spark-em select --input /lake/features.parquet --k 2..8 --covariance-types full,diag \\
        --model-out /models/gmm --report-out select.json
"""

from __future__ import annotations

import sys

from ...core.covariance import COVARIANCE_TYPES
from ..exit_codes import UsageError
from ..inputs import check_source, read_input
from ..job import Job, estimator
from ..main import Command
from ..options import BOOL, CHECKPOINT, COLUMNS, INPUT, MLFLOW, RUN, STR, Option, param_options
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
    Option(
        "overwrite",
        "output",
        BOOL,
        "replace existing outputs (only ones holding what this job writes)",
        False,
    ),
]
OPTIONS = INPUT + SELECT + param_options("select") + CHECKPOINT + OUTPUT + RUN + MLFLOW
OUTPUTS = (("model-out", MODEL_DIR), ("report-out", REPORT), ("plot-dir", PLOTS))


def check(s) -> None:
    check_source(s, allow_demo=False)
    if not s.get("model-out"):
        raise UsageError("--model-out is required (where to save the best model)")
    check_local_outputs(s)


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
        model, table = gm.fitSelect(inp.df, ks, types, s["criterion"])
        rows = [r.asDict() for r in table.orderBy("covarianceType", "k").collect()]
        best = {"k": model.getK(), "covarianceType": model.covarianceType}
        print_table(rows, best, s["criterion"], sys.stdout)
        report = select_report(settings, s["criterion"], best, rows, model, job)
        job.stage("model-out", lambda p: model.write().saveImpl(p))
        job.stage("report-out", lambda p: write_json(report, p))
        if "plot-dir" in job.targets:
            from ..plots import write_criterion_plot

            job.stage("plot-dir", lambda p: write_criterion_plot(p, rows, s["criterion"], best))
        job.tracker.log_select(report)
        job.commit()
    job.print_written()
    return 0


def print_table(rows: list[dict], best: dict, criterion: str, stream) -> None:
    print(
        f"{'k':>3} {'covariance':<10} {'log-likelihood':>16} {'BIC':>14} {'AIC':>14} "
        f"{'iter':>5} {'conv':>5} {'seconds':>8}",
        file=stream,
    )
    for r in rows:
        mark = (
            "  <- best"
            if (r["k"], r["covarianceType"]) == (best["k"], best["covarianceType"])
            else ""
        )
        print(
            f"{r['k']:>3} {r['covarianceType']:<10} {r['logLikelihood']:>16.6g} "
            f"{r['bic']:>14.6g} {r['aic']:>14.6g} {r['iterations']:>5} "
            f"{str(r['converged']).lower():>5} {r['seconds']:>8.2f}{mark}",
            file=stream,
        )
    print(f"best by {criterion.upper()}: k={best['k']} {best['covarianceType']}", file=stream)


COMMAND = Command("select", __doc__, OPTIONS, check, execute)
