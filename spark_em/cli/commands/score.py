"""``spark-em score``: add a saved model's predictions to Parquet files or a table.

    spark-em score --model /models/gmm --input /lake/events/day=2026-11-28 \\
        --output /lake/clusters --partition-by day --mode overwrite-partitions
    spark-em score --model /models/gmm --table lake.events --where "day = '2026-11-28'" \\
        --output-table lake.clusters --mode append --log-likelihood-col loglik

Adds ``prediction`` (int), ``probability`` (``array<double>``; ``--probability-format``) and,
with ``--log-likelihood-col``, each row's log-likelihood (an anomaly score: low is unusual).
"""

from __future__ import annotations

from ..exit_codes import UsageError
from ..inputs import check_source, load_model, read_input
from ..job import Job
from ..main import Command
from ..options import COLUMNS, INPUT, INT, PREDICTIONS, RUN, STR, Option, param_options
from ..predictions import MODES, PredictionWriter, check_partition_columns, with_predictions

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
    ]
    + param_options("score")
    + PREDICTIONS
    + RUN
)


def check(s) -> None:
    check_source(s)
    if not s.get("model"):
        raise UsageError("--model is required (the saved model to score with)")
    outs = [k for k in ("output", "output-table") if s.get(k)]
    if len(outs) != 1:
        raise UsageError("give one of --output PATH or --output-table NAME")
    if s["mode"] == "overwrite-partitions" and not s.get("partition-by"):
        raise UsageError("--mode overwrite-partitions needs --partition-by COLS")


def _columns(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def execute(s) -> int:
    with Job.start(
        s,
        "score",
        overwrite=s["mode"] == "overwrite",
        hint="choose --mode overwrite, overwrite-partitions or append",
    ) as job:
        model = load_model(s["model"], "model")
        inp = read_input(job.spark, s, model.getFeaturesCol())
        model = model.copy()
        if s.get("features"):
            model.setFeaturesCol(inp.features)
        model.setHandleInvalid(s["handle-invalid"])
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
        out = with_predictions(model, inp.df, s["probability-format"], s.get("log-likelihood-col"))
        writer.write(out)
        job.commit()
        writer.commit()
        where = s.get("output") or f"table {s['output-table']}"
        print(
            f"scored {inp.description} with {s['model']} (k={model.getK()}) -> {where} "
            f"(mode {s['mode']}) in {job.seconds():.1f}s"
        )
    return 0


COMMAND = Command("score", __doc__, OPTIONS, check, execute)
