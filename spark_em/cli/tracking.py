"""MLflow logging of a job (``--mlflow``; the ``mlflow`` extra, ``mlflow-skinny`` is enough).

A fit logs its parameters; the metric ``em_mean_log_likelihood`` per iteration (step =
iteration) of the run the model comes from, and with ``n-init`` > 1 also
``em_mean_log_likelihood_run_<i>`` per run; the final metrics ``mean_log_likelihood`` (per
row, under the fitted parameters), ``total_log_likelihood``, ``bic``, ``aic``,
``iterations``, ``converged`` (0/1), ``rows``, ``weight_sum``; the report
(``report.json``), the plots, the Spark model directory (artifact ``spark-model``, when it
is on this machine) and the model in MLflow's format (``model``: a pyfunc flavour that
scores a pandas DataFrame, :mod:`spark_em.io.mlflow_model`), registered as a new version
of ``--mlflow-register NAME``.  A selection logs ``bic_k<k>_<type>``, ``aic_...``,
``mean_log_likelihood_...``, ``iterations_...`` per candidate and the best model the same
way.  The run id is printed.

The tracking URI is ``--mlflow-tracking-uri``, else ``MLFLOW_TRACKING_URI``; the registry is
the tracking store.  mlflow-skinny has no database backend: use an MLflow server
(``http://...``), Databricks, or a file store (``file:/path``).  MLflow 3 refuses file
stores unless ``MLFLOW_ALLOW_FILE_STORE=true``: the job sets it for a ``file:`` URI you
name; set it yourself to read that store back (``mlflow ui``, ``MlflowClient``).
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
        mlflow.set_registry_uri(uri)
        mlflow.set_experiment(self.settings["mlflow-experiment"])
        self.run = mlflow.start_run(run_name=self.settings.get("mlflow-run-name"))
        mlflow.log_params({k: _param(v) for k, v in params.items()})
        print(
            f"MLflow run {self.run.info.run_id} (experiment "
            f"{self.settings['mlflow-experiment']!r}, tracking URI {uri})",
            flush=True,
        )

    def log_fit(self, report: dict, model, histories: dict, model_dir, plot_dir) -> None:
        """A fit: metrics, report, plots, the Spark model directory (``model_dir`` when on
        this machine) and the model in MLflow's format."""
        if self.run is None:
            return
        import mlflow

        for step, value in enumerate(model.summary.logLikelihoodHistory, start=1):
            mlflow.log_metric("em_mean_log_likelihood", value, step=step)
        if len(histories) > 1:
            for label, history in histories.items():
                name = f"em_mean_log_likelihood_{label.replace(' ', '_')}"
                for step, value in enumerate(history, start=1):
                    mlflow.log_metric(name, value, step=step)
        for key in FINAL_METRICS:
            if report.get(key) is not None:
                mlflow.log_metric(key, float(report[key]))
        mlflow.log_metric("converged", 1.0 if report["converged"] else 0.0)
        mlflow.set_tag("spark.application_id", report["spark"]["application_id"] or "")
        mlflow.log_dict(report, "report.json")
        if plot_dir is not None:
            mlflow.log_artifacts(plot_dir, "plots")
        self._log_model(model, model_dir, report["outputs"].get("model-out"))

    def log_select(self, report: dict, model, model_dir) -> None:
        """A model selection: each candidate's criteria, mean log-likelihood and
        iterations, the choice, the report, and the best model as :meth:`log_fit` does."""
        if self.run is None:
            return
        import mlflow

        for r in report["candidates"]:
            name = f"k{r['k']}_{r['covarianceType']}"
            for key, metric in (
                ("bic", "bic"),
                ("aic", "aic"),
                ("meanLogLikelihood", "mean_log_likelihood"),
                ("iterations", "iterations"),
            ):
                mlflow.log_metric(f"{metric}_{name}", float(r[key]))
        mlflow.set_tag("best", f"k={report['best']['k']} {report['best']['covarianceType']}")
        mlflow.log_dict(report, "report.json")
        self._log_model(model, model_dir, report["outputs"].get("model-out"))

    def _log_model(self, model, model_dir, model_uri) -> None:
        import tempfile

        import mlflow

        from .. import __version__
        from ..io.mlflow_model import LOADER_MODULE, write_pyfunc_data

        if model_dir is not None:
            mlflow.log_artifacts(model_dir, "spark-model")
        mlflow.set_tag("spark_em.model_uri", model_uri or "")
        with tempfile.TemporaryDirectory(prefix="spark-em-mlflow-") as tmp:
            data = f"{tmp}/gaussian_mixture"
            write_pyfunc_data(model.mixture, model.getFeaturesCol(), data)
            info = mlflow.pyfunc.log_model(
                name="model",
                loader_module=LOADER_MODULE,
                data_path=data,
                pip_requirements=[f"spark-em=={__version__}"],
            )
        name = self.settings.get("mlflow-register")
        if name:
            version = mlflow.register_model(info.model_uri, name)
            print(f"MLflow: registered {name} version {version.version}")

    def end(self, ok: bool) -> None:
        if self.run is None:
            return
        import mlflow

        mlflow.end_run(status="FINISHED" if ok else "FAILED")
        self.run = None


FINAL_METRICS = (
    "mean_log_likelihood",
    "total_log_likelihood",
    "bic",
    "aic",
    "iterations",
    "rows",
    "weight_sum",
)


def _param(value):
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
