"""What a fit job reports: one evaluation pass under the fitted parameters (cluster sizes,
log-likelihood, BIC, AIC), the JSON report (``--report-out``) and the summary on stdout."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from ..core.mixture import aic, bic, n_parameters


@dataclass
class Evaluation:
    """The fitted model on its training rows, from one pass."""

    cluster_sizes: list[int]
    log_likelihood: float  # total weighted log-likelihood under the fitted parameters
    weight_sum: float
    rows: int
    unscored_rows: int  # rows with null features (no prediction)
    n_parameters: int

    @property
    def mean_log_likelihood(self) -> float:
        return self.log_likelihood / self.weight_sum

    @property
    def bic(self) -> float:
        return bic(self.log_likelihood, self.weight_sum, self.n_parameters)

    @property
    def aic(self) -> float:
        return aic(self.log_likelihood, self.n_parameters)


def evaluate(model, df, weight_col: str | None) -> Evaluation:
    """Cluster sizes, log-likelihood, weight sum and row count in ONE pass of ``transform``
    (``model.summary.clusterSizes`` and ``model.bic``/``aic`` would take three)."""
    from pyspark.sql import functions as F

    from ..data.columns import weight_column

    m = model.copy()
    pred, ll, prob = "__spark_em_prediction", "__spark_em_loglik", "__spark_em_probability"
    m.setPredictionCol(pred).setProbabilityCol(prob).setLogLikelihoodCol(ll)
    w = weight_column(df, weight_col)
    out = m.transform(df.withColumn("__spark_em_weight", w))
    scored = F.col(pred).isNotNull()
    rows = (
        out.groupBy(F.col(pred).alias("p"))
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum(F.when(scored, F.col("__spark_em_weight") * F.col(ll))).alias("ll"),
            F.sum(F.when(scored, F.col("__spark_em_weight"))).alias("w"),
        )
        .collect()
    )
    k = model.getK()
    sizes, total_ll, total_w, unscored = [0] * k, 0.0, 0.0, 0
    for r in rows:
        if r["p"] is None:
            unscored += int(r["n"])
            continue
        sizes[int(r["p"])] = int(r["n"])
        total_ll += float(r["ll"] or 0.0)
        total_w += float(r["w"] or 0.0)
    return Evaluation(
        sizes,
        total_ll,
        total_w,
        sum(sizes),
        unscored,
        n_parameters(k, model.numFeatures, model.covarianceType),
    )


def _finite(x):
    """JSON has no NaN/inf: they become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def fit_report(
    parameters: dict,
    model,
    evaluation: Evaluation,
    progress,
    env,
    seconds: dict,
    input_description: str,
    outputs: dict,
    warnings: list[str],
) -> dict:
    """The ``--report-out`` document (JSON-ready); ``parameters`` are the settings the fit
    ran with.  Log-likelihoods are means per row (the history, ``mean_log_likelihood``
    under the fitted parameters), with ``total_log_likelihood`` (the sum over the rows,
    the unit of MLlib's ``summary.logLikelihood``) beside it."""
    s = model.summary
    params = dict(parameters)
    return {
        "spark_em_report": {"version": 1, "job": "fit"},
        "status": "succeeded",
        "parameters": params,
        "input": input_description,
        "converged": bool(s.converged),
        "iterations": int(s.numIter),
        # how the start was found (summary.initialisation: mode, trials, best sample LL)
        "initialisation": _finite_values(s.initialisation),
        # log-likelihoods as the mean per row (sklearn's score), the total beside it
        "log_likelihood_history": [_finite(v) for v in s.logLikelihoodHistory],
        "runs": {label: [_finite(v) for v in h] for label, h in progress.histories.items()},
        "mean_log_likelihood": _finite(evaluation.mean_log_likelihood),
        "total_log_likelihood": _finite(evaluation.log_likelihood),
        "bic": _finite(evaluation.bic),
        "aic": _finite(evaluation.aic),
        "n_parameters": evaluation.n_parameters,
        "cluster_sizes": evaluation.cluster_sizes,
        "rows": evaluation.rows,
        "unscored_rows": evaluation.unscored_rows,
        # --missing-values marginalize: rows with each feature missing
        "rows_missing_per_feature": _per_feature(model, s.numMissingPerFeature),
        "weight_sum": evaluation.weight_sum,
        "model": {
            "k": model.getK(),
            "d": model.numFeatures,
            "covariance_type": model.covarianceType,
            "weights": np.asarray(model.weights).tolist(),
            "means": np.asarray(model.means).tolist(),
        },
        "seconds": {k: (round(v, 3) if v is not None else None) for k, v in seconds.items()},
        "spark": {"application_id": env.app_id, "kind": env.kind, "master": env.master},
        "outputs": outputs,
        "warnings": warnings,
    }


def _per_feature(model, counts: list[int]) -> dict:
    """``{feature: rows with it missing}``, by column name (a list of feature columns) or
    by index; empty when missing values were not marginalised."""
    features = model.getFeaturesCol()
    names = features if isinstance(features, list) else [str(j) for j in range(len(counts))]
    return {str(n): int(c) for n, c in zip(names, counts)}


def _finite_values(document: dict) -> dict:
    """``document`` with its floats (and lists of floats) JSON-safe (None for inf/NaN)."""
    out = {}
    for key, value in document.items():
        if isinstance(value, float):
            value = _finite(value)
        elif isinstance(value, list):
            value = [_finite(v) if isinstance(v, float) else v for v in value]
        out[key] = value
    return out


def write_json(document: dict, path: str) -> None:
    with open(path, "w") as fh:
        json.dump(document, fh, indent=2, allow_nan=False)
        fh.write("\n")


def print_summary(model, evaluation: Evaluation, stream) -> None:
    """The fitted model in a few lines on stdout."""
    s = model.summary
    print(
        f"GaussianMixtureModel: k={model.getK()}, d={model.numFeatures}, "
        f"covarianceType={model.covarianceType}",
        file=stream,
    )
    print(
        f"iterations: {s.numIter}, converged: {s.converged}, rows: {evaluation.rows:,}, "
        f"mean log-likelihood: {evaluation.mean_log_likelihood:.6f}, "
        f"BIC: {evaluation.bic:.6g}, AIC: {evaluation.aic:.6g}",
        file=stream,
    )
    for j in range(model.getK()):
        mean = ", ".join(f"{v:.4f}" for v in model.means[j])
        print(
            f"  component {j}: weight {model.weights[j]:.4f}, size "
            f"{evaluation.cluster_sizes[j]:,}, mean [{mean}]",
            file=stream,
        )


def select_report(
    parameters: dict, criterion: str, best: dict, rows: list[dict], model, job
) -> dict:
    """The ``--report-out`` document of ``select`` (JSON-ready): the candidates' table, the
    choice and the seconds per phase."""
    seconds = dict(job.progress.phase_seconds(), total=job.seconds())
    return {
        "spark_em_report": {"version": 1, "job": "select"},
        "parameters": parameters,
        "criterion": criterion,
        "best": best,
        "candidates": rows,
        "converged": bool(model.summary.converged),
        "seconds": seconds,
        "spark": {"application_id": job.env.app_id, "kind": job.env.kind, "master": job.env.master},
        "outputs": job.written(),
    }


def score_report(settings, input_description: str, tally, anomaly: dict | None, job) -> dict:
    """The ``--report-out`` document of ``score``: what was scored with what, the rows
    scored and skipped (null outputs) in all and per partition, the anomaly threshold."""
    return {
        "spark_em_report": {"version": 1, "job": "score"},
        "status": "succeeded",
        "model": settings["model"],
        "input": input_description,
        "output": settings.get("output") or {"table": settings.get("output-table")},
        "mode": settings["mode"],
        "handle_invalid": settings["handle-invalid"],
        "rows": tally.as_dict(),
        "anomaly": anomaly,
        "seconds": {"total": round(job.seconds(), 3)},
        "spark": {"application_id": job.env.app_id, "kind": job.env.kind, "master": job.env.master},
        "outputs": dict(
            job.written(), **({"output": settings["output"]} if settings.get("output") else {})
        ),
    }
