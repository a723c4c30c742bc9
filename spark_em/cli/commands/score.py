"""``spark-em score``: add a saved model's predictions to Parquet files or a table.

    spark-em score --model /models/gmm --input /lake/events/day=2026-11-28 \\
        --output /lake/clusters --partition-by day --mode overwrite-partitions
    spark-em score --model /models/gmm --table lake.events --where "day = '2026-11-28'" \\
        --output-table lake.clusters --mode append --log-likelihood-col loglik

Adds ``prediction`` (int), ``probability`` (``array<double>``; ``--probability-format``),
with ``--log-likelihood-col`` each row's log-likelihood (an anomaly score: low is
unusual), and with ``--anomaly-quantile Q`` a boolean ``is_anomaly``: the row's
log-likelihood is below the Q quantile of the training rows' (kept with the model).
Prints, and with ``--report-out`` reports, the rows scored and skipped per partition.
"""

from __future__ import annotations

from ..exit_codes import DataError, UsageError
from ..inputs import check_source, load_model, read_input
from ..job import Job
from ..local_checks import LocalPaths, check_before_spark, local_path_of
from ..main import Command
from ..options import COLUMNS, FLOAT, INPUT, INT, PREDICTIONS, RUN, STR, Option, param_options
from ..outputs import PARQUET, REPORT, check_local_outputs, holds_parquet
from ..predictions import MODES, PredictionWriter, check_partition_columns, with_predictions
from ..score_counts import ScoreCounts

ANOMALY_COL = "is_anomaly"


def _quantile_problem(q: float) -> str | None:
    return None if 0 < q <= 0.5 else f"must be in (0, 0.5], got {q!r}"


OPTIONS = (
    INPUT
    + [
        Option("model", "model", STR, "the saved model to score with", metavar="PATH"),
        Option("seed", "input", INT, "seed of --sample-fraction", 42),
        Option("output", "output", STR, "write the scored rows as Parquet here", metavar="PATH"),
        Option(
            "output-table",
            "output",
            STR,
            "write the scored rows to this catalog table",
            metavar="NAME",
        ),
        Option(
            "partition-by",
            "output",
            COLUMNS,
            "partition the output by these columns",
            metavar="COLS",
        ),
        Option(
            "mode",
            "output",
            STR,
            "when the output exists: fail, replace it, replace only "
            "the partitions present in the new rows, or add the rows",
            "error",
            MODES,
        ),
        Option(
            "anomaly-quantile",
            "output",
            FLOAT,
            f"add a boolean {ANOMALY_COL}: the row's log-likelihood is below this quantile of "
            "the training rows' (e.g. 0.001; the model keeps them)",
            check=_quantile_problem,
            metavar="Q",
        ),
        Option(
            "report-out",
            "output",
            STR,
            "write a JSON report (rows scored and skipped per partition; a file on this "
            "machine; replaced when --mode is not error)",
            metavar="FILE",
        ),
    ]
    + param_options("score")
    + PREDICTIONS
    + RUN
)
HINT = "choose --mode overwrite, overwrite-partitions or append"


def check(s) -> None:
    check_source(s)
    if not s.get("model"):
        raise UsageError("--model is required (the saved model to score with)")
    outs = [k for k in ("output", "output-table") if s.get(k)]
    if len(outs) != 1:
        raise UsageError("give one of --output PATH or --output-table NAME")
    if s["mode"] == "overwrite-partitions" and not s.get("partition-by"):
        raise UsageError("--mode overwrite-partitions needs --partition-by COLS")
    check_local_outputs(s, ("report-out",))
    outputs = [("report-out", REPORT)]
    in_place = s["mode"] in ("overwrite-partitions", "append")
    if s.get("output") and not in_place:
        outputs.append(("output", PARQUET))
    check_before_spark(s, outputs, ("model",), overwrite=s["mode"] != "error", hint=HINT)
    path = local_path_of(s, s["output"]) if s.get("output") and in_place else None
    ops = LocalPaths()
    if path is not None and ops.exists(path) and not holds_parquet(ops.list, path):
        raise UsageError(
            f"--output {s['output']} exists and does not hold a Parquet data set: not "
            "writing into it"
        )


def _columns(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def execute(s) -> int:
    from ..reports import score_report, write_json

    with Job.start(
        s, "score", (("report-out", REPORT),), overwrite=s["mode"] != "error", hint=HINT
    ) as job:
        model = load_model(s["model"], "model")
        inp = read_input(job.spark, s, model.getFeaturesCol())
        model = model.copy()
        if s.get("features"):
            model.setFeaturesCol(inp.features)
        model.setHandleInvalid(s["handle-invalid"])
        if s.source("missing-values") != "default":  # else the model's own (saved with it)
            model.setMissingValues(s["missing-values"])
        anomaly = _anomaly(model, s)
        partition_by = _columns(s.get("partition-by"))
        check_partition_columns(inp.df, partition_by)
        writer = PredictionWriter(
            job.spark,
            job.outputs,
            path=s.get("output"),
            table=s.get("output-table"),
            mode=s["mode"],
            partition_by=partition_by,
        )
        writer.plan()
        out = with_predictions(
            model, inp.df, s["probability-format"], s.get("log-likelihood-col"), anomaly
        )
        writer.check_schema(out)
        counts = ScoreCounts(inp.df, partition_by, model.getPredictionCol())
        try:
            writer.write(counts.observe(out))
            writer.commit()  # writes that cannot be staged (in place, tables)
        except Exception as exc:
            refused = _refused_rows(exc, inp, model)
            if refused is None:
                raise
            raise refused from exc
        tally = counts.result()
        where = s.get("output") or f"table {s['output-table']}"
        print(
            f"scored {inp.description} with {s['model']} (k={model.getK()}) -> {where} "
            f"(mode {s['mode']}) in {job.seconds():.1f}s"
        )
        for line in tally.lines():
            print(f"  {line}")
        report = score_report(s, inp.description, tally, anomaly, job)
        job.stage("report-out", lambda p: write_json(report, p))
        job.commit()
    job.print_written()
    return 0


def _anomaly(model, s) -> dict | None:
    """``{"column", "quantile", "threshold", "rows"}`` for ``--anomaly-quantile``."""
    q = s.get("anomaly-quantile")
    if q is None:
        return None
    try:
        threshold = model.logLikelihoodThreshold(q)
    except ValueError as exc:
        raise DataError(f"--anomaly-quantile {q:g} with --model {s['model']}: {exc}") from None
    rows = model.summary.logLikelihoodQuantiles.get("rows")
    return {"column": ANOMALY_COL, "quantile": q, "threshold": threshold, "sample_rows": rows}


def _refused_rows(exc: Exception, inp, model):
    """Scoring refused invalid rows inside a task (``handleInvalid`` error): the error in
    one line with the counts over all rows, an example and the fix (one more pass over
    the input, only on this failure); None for any other failure."""
    from ..data_errors import refused

    if "InvalidRowsError" not in str(exc):
        return None
    features = model.getFeaturesCol()
    return refused(inp.df, features, None, model.numFeatures, scoring=True)


COMMAND = Command("score", __doc__, OPTIONS, check, execute)
