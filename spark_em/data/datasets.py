"""Synthetic Gaussian-mixture data (numpy), and writing it as Parquet with Spark."""

from __future__ import annotations

import numpy as np


def sample_mixture(
    n: int,
    k: int = 3,
    d: int = 2,
    covariance_type: str = "full",
    seed: int | None = 0,
    separation: float = 6.0,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Draw ``n`` rows from a random mixture.  Returns ``(X (n, d), labels (n,), truth)``
    where ``truth`` holds the generating ``weights``, ``means`` and ``covariances`` (sklearn
    shapes for ``covariance_type``)."""
    rng = np.random.default_rng(seed)
    truth = random_mixture(k, d, covariance_type, rng, separation)
    X, labels = draw_mixture(n, truth, covariance_type, rng)
    return X, labels, truth


def random_mixture(
    k: int, d: int, covariance_type: str, rng: np.random.Generator, separation: float = 6.0
) -> dict:
    """Random generating parameters: ``weights``, ``means`` and ``covariances`` (sklearn shapes)."""
    weights = rng.dirichlet(np.full(k, 5.0))
    means = rng.normal(0.0, separation, size=(k, d))
    if covariance_type == "full":
        A = rng.normal(size=(k, d, d)) / np.sqrt(d)
        cov = A @ A.transpose(0, 2, 1) + 0.5 * np.eye(d)
    elif covariance_type == "tied":
        A = rng.normal(size=(d, d)) / np.sqrt(d)
        cov = A @ A.T + 0.5 * np.eye(d)
    elif covariance_type == "diag":
        cov = rng.uniform(0.3, 2.0, size=(k, d))
    elif covariance_type == "spherical":
        cov = rng.uniform(0.3, 2.0, size=k)
    else:
        raise ValueError(f"unknown covariance_type {covariance_type!r}")
    return {"weights": weights, "means": means, "covariances": cov}


def draw_mixture(
    n: int, truth: dict, covariance_type: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows ``X (n, d)`` and their component labels from the mixture ``truth``."""
    weights, means, cov = truth["weights"], truth["means"], truth["covariances"]
    k, d = means.shape
    labels = rng.choice(k, size=n, p=weights)
    z = rng.standard_normal((n, d))
    X = np.empty((n, d))
    for j in range(k):
        idx = labels == j
        if covariance_type in ("full", "tied"):
            c = cov[j] if covariance_type == "full" else cov
            X[idx] = means[j] + z[idx] @ np.linalg.cholesky(c).T
        else:
            X[idx] = means[j] + z[idx] * np.sqrt(cov[j])
    return X, labels


def to_dataframe(spark, X: np.ndarray, column: str = "features", num_partitions: int | None = None):
    """A DataFrame with one ``array<double>`` column from X (n, d), built through Arrow."""
    import pandas as pd

    pdf = pd.DataFrame({column: list(np.asarray(X, dtype=np.float64))})
    df = spark.createDataFrame(pdf, f"{column} array<double>")
    return df.repartition(num_partitions) if num_partitions else df


def write_parquet(
    X: np.ndarray, path: str, column: str = "features", rows_per_file: int = 250_000
) -> None:
    """Write X (n, d) as Parquet (pyarrow, no Spark needed) with one ``array<double>``
    column, into a temporary directory that is then renamed to ``path``."""
    chunks = (X[start : start + rows_per_file] for start in range(0, X.shape[0], rows_per_file))
    _write_chunks(path, chunks, column)


def _write_chunks(path: str, chunks, column: str) -> None:
    """Write each (m, d) chunk as one Parquet file with an ``array<double>`` column, into a
    temporary sibling directory that is then renamed to ``path``."""
    import os
    import shutil
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    try:
        for i, X in enumerate(chunks):
            values = pa.array(np.ascontiguousarray(X, dtype=np.float64).ravel())
            arr = pa.FixedSizeListArray.from_arrays(values, X.shape[1]).cast(pa.list_(pa.float64()))
            pq.write_table(pa.table({column: arr}), os.path.join(tmp, f"part-{i:05d}.parquet"))
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_mixture_parquet(
    path: str,
    n: int,
    k: int,
    d: int,
    covariance_type: str = "full",
    seed: int = 0,
    rows_per_file: int | None = None,
    column: str = "features",
    separation: float = 6.0,
) -> dict:
    """Write ``n`` rows of a random mixture as Parquet files of ``rows_per_file`` rows
    (default: about 32 MB each), generated chunk by chunk so that memory stays flat
    whatever ``n``.  Written into a temporary sibling, then renamed.  Returns the truth."""
    rng = np.random.default_rng(seed)
    truth = random_mixture(k, d, covariance_type, rng, separation)
    if rows_per_file is None:
        rows_per_file = max(1000, (32 << 20) // (8 * d))
    chunks = (
        draw_mixture(
            min(rows_per_file, n - start), truth, covariance_type, np.random.default_rng([seed, i])
        )[0]
        for i, start in enumerate(range(0, n, rows_per_file))
    )
    _write_chunks(path, chunks, column)
    return truth
