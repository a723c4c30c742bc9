"""PNG plots of a fit (``--plot-dir``; the ``plots`` extra, matplotlib with the Agg
backend, no display needed):

* ``log_likelihood.png``: mean log-likelihood per row at each iteration, one line per run;
* ``clusters.png``: a sample of the rows projected on its first two principal components,
  coloured by most probable component, with each component's 2-sigma ellipse (its mean and
  covariance projected the same way).
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from .exit_codes import UsageError

SAMPLE_ROWS = 2000


def require_matplotlib(flag: str = "plot-dir") -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError(f"--{flag} needs matplotlib: pip install 'spark-em[plots]'")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_log_likelihood(histories: dict, path: str, best: list[float] | None = None) -> None:
    """``histories``: run label -> mean log-likelihood per iteration; the run whose history
    is ``best`` (the model's) is drawn thicker and labelled "kept"."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for label, history in histories.items():
        its = np.arange(1, len(history) + 1)
        kept = best is not None and len(histories) > 1 and list(history) == list(best)
        ax.plot(
            its,
            history,
            marker="o",
            markersize=3,
            linewidth=2.5 if kept else 1.2,
            label=f"{label} (kept)" if kept else label,
            zorder=3 if kept else 2,
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("mean log-likelihood per row")
    ax.set_title("Log-likelihood per iteration")
    ax.grid(alpha=0.3)
    if len(histories) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def sample_rows(model, df, features, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to SAMPLE_ROWS rows of ``df`` (features (n, d), predictions (n,)) on the driver."""
    from pyspark.sql import functions as F

    from ..data.columns import feature_array

    fraction = min(1.0, 1.5 * SAMPLE_ROWS / max(rows, 1))
    sample = df.sample(fraction=fraction, seed=seed) if fraction < 1 else df
    m = model.copy().setPredictionCol("__spark_em_prediction").setProbabilityCol("__spark_em_p")
    out = m.transform(sample.withColumn("__spark_em_x", feature_array(sample, features)))
    got = (
        out.where(F.col("__spark_em_prediction").isNotNull())
        .select("__spark_em_x", "__spark_em_prediction")
        .limit(SAMPLE_ROWS)
        .collect()
    )
    if not got:
        return np.empty((0, model.numFeatures)), np.empty(0, dtype=int)
    X = np.asarray([r[0] for r in got], dtype=np.float64)
    return X, np.asarray([r[1] for r in got], dtype=int)


def projection(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and (2, d) principal axes of the rows X (n, d); a zero second axis if d < 2."""
    centre = X.mean(axis=0)
    _, _, vt = np.linalg.svd(X - centre, full_matrices=False)
    axes = np.zeros((2, X.shape[1]))
    axes[: min(2, vt.shape[0])] = vt[:2]
    return centre, axes


def plot_clusters(model, X: np.ndarray, labels: np.ndarray, path: str) -> None:
    from matplotlib.patches import Ellipse

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 6), dpi=100)
    centre, axes = projection(X)
    Z = (X - centre) @ axes.T
    cmap = plt.get_cmap("tab10" if model.getK() <= 10 else "tab20")
    for j in range(model.getK()):
        colour = cmap(j % cmap.N)
        mine = labels == j
        ax.scatter(
            Z[mine, 0],
            Z[mine, 1],
            s=6,
            alpha=0.5,
            color=colour,
            label=f"{j} (weight {model.weights[j]:.2f})",
        )
        mu = (model.means[j] - centre) @ axes.T
        cov = axes @ model.full_covariances()[j] @ axes.T
        vals, vecs = np.linalg.eigh(cov)
        vals = np.clip(vals, 0.0, None)
        angle = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
        ax.add_patch(
            Ellipse(
                mu,
                4 * np.sqrt(vals[1]),
                4 * np.sqrt(vals[0]),
                angle=angle,
                fill=False,
                color=colour,
                linewidth=2,
            )
        )
        ax.plot(*mu, marker="x", color="black", markersize=8)
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_title(
        f"{len(X):,} sampled rows by component (2-sigma ellipses), "
        f"k={model.getK()} {model.covarianceType}",
        fontsize=10,
    )
    ax.legend(fontsize=8, markerscale=3, loc="best")
    ax.grid(alpha=0.3)
    ax.set_aspect("equal", adjustable="datalim")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_fit_plots(
    directory: str, model, histories: dict, X: np.ndarray, labels: np.ndarray
) -> list[str]:
    """Both fit plots into ``directory`` (created); returns the file names."""
    os.makedirs(directory, exist_ok=True)
    plot_log_likelihood(
        histories, os.path.join(directory, "log_likelihood.png"), model.summary.logLikelihoodHistory
    )
    names = ["log_likelihood.png"]
    if len(X):
        plot_clusters(model, X, labels, os.path.join(directory, "clusters.png"))
        names.append("clusters.png")
    return names


def write_criterion_plot(directory: str, rows: list[dict], criterion: str, best: dict) -> None:
    """``<criterion>.png``: the criterion against k, one line per covariance type, the
    chosen candidate ``best`` (k, covarianceType) circled."""
    plt = _pyplot()
    os.makedirs(directory, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for t in dict.fromkeys(r["covarianceType"] for r in rows):
        pts = sorted((r["k"], r[criterion]) for r in rows if r["covarianceType"] == t)
        ax.plot([k for k, _ in pts], [v for _, v in pts], marker="o", label=t)
    best = next(
        r for r in rows if (r["k"], r["covarianceType"]) == (best["k"], best["covarianceType"])
    )
    ax.scatter(
        [best["k"]],
        [best[criterion]],
        s=160,
        facecolors="none",
        edgecolors="black",
        zorder=4,
        label=f"best: k={best['k']} {best['covarianceType']}",
    )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("k (components)")
    ax.set_ylabel(criterion.upper() + " (lower is better)")
    ax.set_title(f"{criterion.upper()} against k")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(directory, f"{criterion}.png"))
    plt.close(fig)
