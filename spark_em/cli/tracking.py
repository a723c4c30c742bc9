"""MLflow logging of a fit (``--mlflow``; the ``mlflow`` extra, ``mlflow-skinny`` is enough):
parameters, the mean log-likelihood of each iteration as the metric
``em_mean_log_likelihood`` (step = iteration; one per run with ``n-init`` > 1), the final
metrics (``mean_log_likelihood`` under the fitted parameters, ``bic``, ``aic``, ...), the
report and the model directory (and plots) as artifacts.

The tracking URI is ``--mlflow-tracking-uri``, else ``MLFLOW_TRACKING_URI``.  mlflow-skinny
has no database backend: use an MLflow server (``http://...``), Databricks, or a file store
(``file:/path``; mlflow 3 keeps file stores behind ``MLFLOW_ALLOW_FILE_STORE``, which this
module sets for a ``file:`` URI the user chose).
"""

from __future__ import annotations

import importlib.util
import os

from .exit_codes import UsageError


def check(settings) -> None:
    """Before Spark starts: mlflow importable and a tracking URI known."""
    if not settings.get("mlflow"):
        return
    if importlib.util.find_spec("mlflow") is None:
        raise UsageError("--mlflow needs MLflow: pip install 'spark-em[mlflow]'")
    if not (settings.get("mlflow-tracking-uri") or os.environ.get("MLFLOW_TRACKING_URI")):
        raise UsageError(
            "--mlflow needs a tracking URI: --mlflow-tracking-uri URI or "
            "MLFLOW_TRACKING_URI (e.g. file:/tmp/mlruns or http://host:5000)"
        )


def _tracking_uri(settings) -> str:
    uri = settings.get("mlflow-tracking-uri") or os.environ["MLFLOW_TRACKING_URI"]
    if uri.startswith("/"):
        uri = "file:" + uri
    return uri


class MlflowRun:
    """One MLflow run around a job: ``start`` before the fit, ``log_fit`` when the outputs
    are staged, ``end`` with the job's status.  Does nothing without ``--mlflow``."""

    def __init__(self, settings):
        self.enabled = bool(settings.get("mlflow"))
        self.settings = settings
        self.run = None

    def start(self, params: dict) -> None:
        if not self.enabled:
            return
        import mlflow

        uri = _tracking_uri(self.settings)
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(self.settings["mlflow-experiment"])
        self.run = mlflow.start_run(run_name=self.settings.get("mlflow-run-name"))
        mlflow.log_params({k: _param(v) for k, v in params.items()})

    def log_fit(
        self, report: dict, histories: dict, model_dir: str | None, plot_dir: str | None
    ) -> None:
        if self.run is None:
            return
        import mlflow

        for label, history in histories.items():
            name = (
                "em_mean_log_likelihood"
                if len(histories) == 1
                else f"em_mean_log_likelihood_{label.replace(' ', '_')}"
            )
            for step, value in enumerate(history, start=1):
                mlflow.log_metric(name, value, step=step)
        for key in (
            "log_likelihood",
            "mean_log_likelihood",
            "bic",
            "aic",
            "iterations",
            "rows",
            "weight_sum",
        ):
            if report.get(key) is not None:
                mlflow.log_metric(key, float(report[key]))
        mlflow.log_metric("converged", 1.0 if report["converged"] else 0.0)
        mlflow.set_tag("spark.application_id", report["spark"]["application_id"] or "")
        mlflow.log_dict(report, "report.json")
        if model_dir is not None:
            mlflow.log_artifacts(model_dir, "model")
        else:
            mlflow.set_tag("model_uri", report["outputs"].get("model") or "")
        if plot_dir is not None:
            mlflow.log_artifacts(plot_dir, "plots")

    def log_select(self, report: dict) -> None:
        """A model selection: each candidate's criteria and iterations, the choice, the
        report."""
        if self.run is None:
            return
        import mlflow

        for r in report["candidates"]:
            name = f"k{r['k']}_{r['covarianceType']}"
            for key in ("bic", "aic", "logLikelihood", "iterations"):
                mlflow.log_metric(f"{key}_{name}", float(r[key]))
        mlflow.set_tag("best", f"k={report['best']['k']} {report['best']['covarianceType']}")
        mlflow.log_dict(report, "report.json")

    def end(self, ok: bool) -> None:
        if self.run is None:
            return
        import mlflow

        mlflow.end_run(status="FINISHED" if ok else "FAILED")
        self.run = None


def _param(value):
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
