"""The same rows give the same model however Spark partitions and orders them: 1, 7 and 64
partitions, and an input with empty partitions.  The initialisation sample and the random
responsibilities are drawn from each row's content and the seed (spark_em.core.rowkeys), so every
init mode starts from the same parameters (up to the order of summation, 1e-12) and 30 EM
iterations later the models agree to 1e-9 -- on local block files and in Spark's cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spark_em import GaussianMixture
from spark_em.core.initialisation import INIT_MODES
from spark_em.data.prepare import prepare
from spark_em.engine.em import InitSpec, Run, initial_starts, step

SEEDS = (11, 12)  # nInit=2: two starts per init mode
SPECS = [
    InitSpec(3, cov, mode, seed)
    for mode, cov in zip(INIT_MODES, ("full", "tied", "diag", "spherical", "full"))
    for seed in SEEDS
]


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(17)
    X = np.concatenate(
        [
            rng.normal(c, 1.0 + 0.3 * i, size=(n, 3))
            for i, (c, n) in enumerate(((-4.0, 150), (0.0, 100), (5.0, 110)))
        ]
    )
    w = rng.uniform(0.3, 2.0, size=len(X))
    return X, w


def layouts(spark, X, w):
    """The same rows, differently partitioned and ordered."""
    rng = np.random.default_rng(0)
    order = rng.permutation(len(X))
    pdf = pd.DataFrame({"features": list(X[order]), "w": w[order], "key": order % 7})
    df = spark.createDataFrame(pdf, "features array<double>, w double, key int")
    sorted_df = spark.createDataFrame(
        pd.DataFrame({"features": list(X), "w": w, "key": np.arange(len(X)) % 3}),
        "features array<double>, w double, key int",
    )
    return {
        "1": sorted_df.coalesce(1),
        # seven keys hashed into 12 partitions: at most 7 hold rows, 5 or more are empty
        "7+empty": df.repartition(12, "key"),
        "64": df.repartition(64),
    }


def fit_all(df, store):
    """What every init mode (nInit=2 each) starts from and ends at after 30 iterations, in
    lock-step (one pass per iteration for all ten runs, as nInit runs in a fit)."""
    pstore, data = prepare(df, "features", "w", sample_size=200, seed=5, block_cache=store)
    with pstore:
        assert pstore.name == store
        starts = [p for p, _ in initial_starts(pstore, data, SPECS, 1e-6, 1e-3)]
        runs = [Run(p, f"run {i}") for i, p in enumerate(starts)]
        for iteration in range(1, 31):
            step(pstore, data, runs, iteration, tol=0.0, reg_covar=1e-6)
    return data.sample, starts, [r.params for r in runs]


def assert_params(a, b, rtol):
    scale = max(np.abs(a.means).max(), 1.0)
    np.testing.assert_allclose(a.weights, b.weights, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(a.means, b.means, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(
        a.covariances, b.covariances, rtol=rtol, atol=rtol * np.abs(b.covariances).max()
    )


@pytest.mark.parametrize("store", ["local", "spark"])
def test_every_init_mode_gives_the_same_model_for_any_partitioning(spark, rows, store):
    X, w = rows
    frames = layouts(spark, X, w)
    assert frames["64"].rdd.getNumPartitions() == 64
    sizes = frames["7+empty"].rdd.glom().map(len).collect()
    assert sizes.count(0) >= 5 and sum(sizes) == len(X)
    results = {name: fit_all(df, store) for name, df in frames.items()}
    sample, starts, finals = results.pop("1")
    for name, (s, st, fi) in results.items():
        np.testing.assert_array_equal(s, sample, err_msg=name)  # the same rows, the same order
        for spec, a, b in zip(SPECS, st, starts):
            assert_params(a, b, 1e-12)
        for spec, a, b in zip(SPECS, fi, finals):
            assert_params(a, b, 1e-9)
    # and the runs really moved: 30 iterations from different starts
    assert not np.allclose(finals[0].means, starts[0].means)


def test_a_fit_with_default_init_and_n_init_is_the_same_for_any_partitioning(spark, rows):
    X, w = rows
    frames = layouts(spark, X, w)
    # k=4 on three clusters and a sample of 60 rows: the local optimum EM ends in depends on
    # the start, so a start that depended on the partitioning would show
    models = [
        GaussianMixture(
            k=4, nInit=2, seed=7, maxIter=30, tol=0.0, weightCol="w", initSampleSize=60
        ).fit(frames[n])
        for n in ("1", "7+empty")
    ]
    for m in models[1:]:
        np.testing.assert_allclose(m.means, models[0].means, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(m.covariances, models[0].covariances, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(m.weights, models[0].weights, rtol=1e-9)
