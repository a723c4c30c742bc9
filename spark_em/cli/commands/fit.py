"""``spark-em fit``: fit a Gaussian mixture to Parquet files or a table and save the model.

Optionally also the predictions, a JSON report, plots and an MLflow run: all of them
together, or none.

    spark-em fit --input /lake/features.parquet --k 8 --model-out /models/gmm
    spark-em fit --config conf/fit.toml --init-model /models/gmm-yesterday \
        --input /lake/day=2026-11-28
    spark-em fit --demo                     # generated data on an embedded local Spark
"""

from __future__ import annotations

import contextlib
import sys
import time

from ..align import ALIGN_TO, aligned
from ..exit_codes import NotConvergedError, UsageError
from ..inputs import check_source, demo_input, load_model, read_input
from ..job import Job, checkpoint_words, estimator
from ..local_checks import check_before_spark, model_metadata
from ..main import Command
from ..options import (
    BOOL,
    CHECKPOINT,
    INPUT,
    INT,
    MLFLOW,
    OVERWRITE,
    PREDICTIONS,
    RUN,
    STR,
    Option,
    at_least,
    param_options,
)
from ..outputs import MODEL as MODEL_DIR
from ..outputs import PARQUET, PLOTS, REPORT, check_local_outputs

DEMO = [
    Option("demo", "demo", BOOL, "fit generated demo data instead of an input", False),
    Option("demo-rows", "demo", INT, "rows of demo data", 20_000, check=at_least(1)),
    Option("demo-dim", "demo", INT, "dimension of demo data", 2, check=at_least(1)),
]
WARM_START = [
    Option(
        "init-model",
        "model",
        STR,
        "start EM from this saved model (warm start); k and covariance type default to its own",
        metavar="PATH",
    ),
    ALIGN_TO,
    Option(
        "require-convergence",
        "model",
        BOOL,
        "exit 3 (and write only the report) when the fit stops at max-iter without converging",
        False,
    ),
]
OUTPUT = [
    Option(
        "model-out",
        "output",
        STR,
        "save the fitted model here (required unless --demo)",
        metavar="PATH",
    ),
    Option(
        "predictions-out",
        "output",
        STR,
        "write the input rows with prediction and probability as Parquet",
        metavar="PATH",
    ),
    Option(
        "report-out", "output", STR, "write a JSON report (a file on this machine)", metavar="FILE"
    ),
    Option("plot-dir", "output", STR, "write PNG plots here (the plots extra)", metavar="DIR"),
    OVERWRITE,
]
OPTIONS = (
    INPUT
    + DEMO
    + param_options("fit")
    + WARM_START
    + CHECKPOINT
    + OUTPUT
    + PREDICTIONS
    + RUN
    + MLFLOW
)
OUTPUTS = (
    ("model-out", MODEL_DIR),
    ("predictions-out", PARQUET),
    ("report-out", REPORT),
    ("plot-dir", PLOTS),
)


def resolve(s) -> None:
    """k and the covariance type of a local ``--init-model``, read from its metadata (a
    flag or key that disagrees is refused); a model elsewhere is read once Spark is up."""
    meta = model_metadata(s, "init-model")
    if meta is None:
        return
    for key, value in (("k", meta.get("k")), ("covariance-type", meta.get("covarianceType"))):
        if value is None:
            continue
        if s.source(key) != "default" and s[key] != value:
            raise UsageError(
                f"{s.describe(key)} is {s[key]!r} but --init-model {s['init-model']} has "
                f"{key} {value!r}"
            )
        s.derive(key, value, "init-model")


def check(s) -> None:
    """Everything that can be checked before Spark starts."""
    check_source(s, allow_demo=True)
    if not s.get("model-out") and not s.get("demo"):
        raise UsageError("--model-out is required (where to save the fitted model)")
    check_local_outputs(s)
    check_before_spark(s, OUTPUTS, ("init-model", "align-to"))


def _estimator(s, features, weight_col, init_model):
    """The job's estimator; with ``--init-model`` its k and covariance type are the
    model's (a flag or key that disagrees is refused)."""
    fixed = {}
    if init_model is not None:
        for key, param, value in (
            ("k", "k", init_model.getK()),
            ("covariance-type", "covarianceType", init_model.covarianceType),
        ):
            if s.source(key) != "default" and s[key] != value:
                raise UsageError(
                    f"{s.describe(key)} is {s[key]!r} but --init-model "
                    f"{s['init-model']} has {key} {value!r}"
                )
            fixed[param] = value
    gm = estimator(s, "fit", features, weight_col, **fixed)
    if init_model is not None:
        gm.setInitialModel(init_model)
    return gm


def _effective(s, gm) -> dict:
    """The settings of the input and the model as the fit ran (k and covariance type of an
    --init-model included)."""
    params = {
        o.key: s[o.key]
        for o in s.options
        if o.section in ("model", "input") and s.get(o.key) is not None
    }
    for o in param_options("fit"):
        params[o.key] = gm.getOrDefault(o.param)
    params["features"] = gm.getFeaturesCol()
    return params


def execute(s) -> int:
    with Job.start(s, "fit", OUTPUTS) as job:
        init_model = load_model(s["init-model"], "init-model") if s.get("init-model") else None
        default_features = init_model.getFeaturesCol() if init_model is not None else "features"
        source = (
            demo_input(job.spark, job.env, s)
            if s.get("demo")
            else contextlib.nullcontext(read_input(job.spark, s, default_features))
        )
        with source as inp:
            gm = _estimator(s, inp.features, inp.weight_col, init_model)
            if "predictions-out" in job.targets:  # before the fit, not after it
                from ..predictions import check_prediction_columns

                check_prediction_columns(inp.df, gm, s.get("log-likelihood-col"))
            gm.progress = job.progress
            job.tracker.start(
                dict(
                    {
                        o.param: gm.getOrDefault(o.param)
                        for o in param_options("fit")
                        if s.get(o.key) is not None or o.param in ("k", "covarianceType")
                    },
                    features=inp.features,
                    input=inp.description,
                )
            )
            _fit_and_write(job, gm, inp, _effective(s, gm))
    return 0


def _fit_and_write(job: Job, gm, inp, params: dict) -> None:
    from ..plots import sample_rows, write_fit_plots
    from ..predictions import with_predictions
    from ..reports import evaluate, fit_report, print_summary, write_json

    s = job.settings
    model = _fit(gm, inp, s)
    extra = {}
    if model.summary.numRowsSkipped:
        extra["skipped_rows"] = _skipped(job, inp, model.numFeatures)
    if s.get("align-to"):
        model, extra["aligned_to"] = aligned(model, s["align-to"])
    fitted = time.perf_counter()
    evaluation = evaluate(model, inp.df, inp.weight_col)
    evaluated = time.perf_counter()
    print_summary(model, evaluation, sys.stdout)
    warnings = []
    converged = model.summary.converged
    if not converged:
        warnings.append(
            f"the fit did not converge: it stopped at max-iter {gm.getMaxIter()} "
            f"(with its last change above tol {gm.getTol():g}, or its components not yet "
            "separated)"
        )
        job.warn(warnings[-1])
    everything = converged or not s["require-convergence"]
    if everything:
        # the target stages the output (a temporary sibling; in place on Connect, after its
        # own overwrite check): the model writer's own part only, no second temporary
        job.stage("model-out", lambda p: model.write().saveImpl(p))
        if "predictions-out" in job.targets:
            out = with_predictions(
                model, inp.df, s["probability-format"], s.get("log-likelihood-col")
            )
            job.stage("predictions-out", lambda p: out.write.parquet(p))
        if "plot-dir" in job.targets:
            X, labels = sample_rows(model, inp.df, inp.features, evaluation.rows, s["seed"])
            job.stage(
                "plot-dir", lambda p: write_fit_plots(p, model, job.progress.histories, X, labels)
            )
    seconds = dict(
        job.progress.phase_seconds(),
        fit=fitted - job.started,
        evaluation=evaluated - fitted,
        write=time.perf_counter() - evaluated,
    )
    seconds["total"] = job.seconds()
    report = fit_report(
        params,
        model,
        evaluation,
        job.progress,
        job.env,
        seconds,
        inp.description,
        job.written(),
        warnings,
    )
    report.update(extra)
    if not everything:
        report["status"] = "refused: not converged (--require-convergence)"
    job.stage("report-out", lambda p: write_json(report, p))
    if everything:
        plot_dir = job.targets["plot-dir"].staged if "plot-dir" in job.targets else None
        job.tracker.log_fit(
            report, model, job.progress.histories, job.local_staged("model-out"), plot_dir
        )
    job.commit()
    job.print_written()
    if not everything:
        raise NotConvergedError(
            f"{warnings[-1]} (--require-convergence); nothing written"
            + (" except the report" if "report-out" in job.targets else "")
        )


def _fit(gm, inp, settings):
    """The fitted model; invalid rows refused in one line naming their columns, counts over
    all rows, an example and the fix."""
    from ...errors import InvalidRowsError
    from ..data_errors import refused

    try:
        with checkpoint_words(settings):
            return gm.fit(inp.df)
    except InvalidRowsError as exc:
        raise refused(inp.df, inp.features, inp.weight_col, exc.d, lengths=exc.lengths) from exc


def _skipped(job: Job, inp, d: int) -> dict:
    """The invalid rows a --handle-invalid skip fit left out, by kind and column (one more
    pass over the input, only when rows were skipped): a warning line and the report's
    record."""
    from ..data_errors import skipped

    line, record = skipped(inp.df, inp.features, inp.weight_col, d)
    job.warn(line)
    return record


COMMAND = Command("fit", __doc__, OPTIONS, check, execute, resolve)
