"""Drawing rows from a fitted mixture on the executors: ``GaussianMixtureModel.sample``.

The rows are generated where Spark runs them: ``spark.range(n)`` split into
``ceil(n / ROWS_PER_PARTITION)`` partitions, and a ``mapInArrow`` function that draws, per
partition, the component labels and the Gaussian rows from two random streams seeded by
``(seed, partition index)``.  The driver holds only the parameters.  The streams are drawn
element by element, so the rows do not depend on how Spark cuts a partition into Arrow
batches: the same ``(n, seed)`` gives the same DataFrame on any cluster.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession

from ..core.mixture import GaussianParams
from ..data.passes import task_partition

__all__ = ["ROWS_PER_PARTITION", "partition_streams", "draw_rows", "sample"]

ROWS_PER_PARTITION = 100_000


def partition_streams(seed: int, partition: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for the labels and the Gaussian noise of one partition."""
    seq = np.random.SeedSequence([int(seed) % 2**64, int(partition)])
    labels, noise = seq.spawn(2)
    return np.random.default_rng(labels), np.random.default_rng(noise)


def draw_rows(
    label_rng: np.random.Generator,
    noise_rng: np.random.Generator,
    cum_weights: np.ndarray,
    means: np.ndarray,
    cholesky: np.ndarray,
    m: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``(X (m, d), labels (m,))``: labels drawn with probabilities given by
    ``cum_weights (k,)`` (cumulative, last 1), rows ``means[j] + L_j z`` with
    ``cholesky (k, d, d)`` the lower factors of the covariances and ``z`` standard normal."""
    k, d = means.shape
    labels = np.minimum(np.searchsorted(cum_weights, label_rng.random(m), side="right"), k - 1)
    z = noise_rng.standard_normal((m, d))
    X = np.empty((m, d))
    for j in range(k):
        rows = labels == j
        X[rows] = means[j] + z[rows] @ cholesky[j].T
    return X, labels.astype(np.int32)


def sample(
    params: GaussianParams,
    n: int,
    seed: int | None,
    features_col: str = "features",
    label_col: str = "label",
    spark: SparkSession | None = None,
) -> DataFrame:
    """A DataFrame of ``n`` rows drawn from the mixture: ``features_col`` (Vector, d) and
    ``label_col`` (int, the component each row was drawn from).  ``seed=None``: a random
    seed."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if features_col == label_col:
        raise ValueError(f"the features and label columns must differ, both are {label_col!r}")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**63)
    spark = spark or SparkSession.active()
    cum = np.cumsum(params.weights)
    cum[-1] = 1.0
    means = np.array(params.means)
    chol = np.linalg.cholesky(params.full_covariances())
    d = params.d

    def draw(batches):
        label_rng, noise_rng = partition_streams(seed, task_partition()[0])
        for batch in batches:
            m = batch.num_rows
            X, labels = draw_rows(label_rng, noise_rng, cum, means, chol, m)
            offsets = pa.array(np.arange(0, m * d + 1, d, dtype=np.int32))
            yield pa.RecordBatch.from_arrays(
                [pa.ListArray.from_arrays(offsets, pa.array(X.ravel())), pa.array(labels)],
                ["x", "label"],
            )

    partitions = max(1, math.ceil(n / ROWS_PER_PARTITION))
    rows = spark.range(0, int(n), 1, partitions).mapInArrow(draw, "x array<double>, label int")
    return rows.select(array_to_vector("x").alias(features_col), F.col("label").alias(label_col))
