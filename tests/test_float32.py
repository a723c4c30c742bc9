"""The accuracy contract of ``dtype="float32"`` (README, *Performance*): from one start,
after 25 iterations, on data near the origin and offset by 1e2 and 1e4, for the four
covariance types and every block store -- the mean log-likelihood within 1e-5 relative of
float64, means within 1e-4 of the data's scale, covariances within 1e-4 relative,
``transform``'s posteriors within 1e-5.  The float64 truth is a plain numpy EM written here
from the formulas; scikit-learn's float32 fit from the same start is measured beside it.
Also: float32 blocks take half the bytes, and features float32 cannot hold are refused."""

from __future__ import annotations

import glob
import os
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.linalg import solve_triangular
from sklearn.mixture import GaussianMixture as SkGM

from spark_em import GaussianMixture, GaussianMixtureModel, InvalidInputError
from spark_em.core.mixture import GaussianParams
from spark_em.data.datasets import sample_mixture
from spark_em.data.prepare import prepare
from spark_em.engine.em import Run
from spark_em.engine.fit_session import FitSession

ITERATIONS, REG = 25, 1e-6
TYPES = ("full", "tied", "diag", "spherical")
# every store at 1e2 and 1e4; the data near the origin on the local store
CASES = [("local", 0.0)] + [(s, o) for s in ("local", "parquet", "spark") for o in (1e2, 1e4)]


# ----------------------------------------------------------------- the float64 truth
def _full(cov, kind, k, d):
    """Covariances of any type as (k, d, d)."""
    if kind == "full":
        return cov
    if kind == "tied":
        return np.repeat(cov[None], k, axis=0)
    if kind == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([c * np.eye(d) for c in cov])


def _log_joint(X, weights, means, covs):
    """log(w_k N(x_i | mu_k, Sigma_k)), (n, k), by Cholesky factors."""
    n, d = X.shape
    out = np.empty((n, len(weights)))
    for j, (mu, S) in enumerate(zip(means, covs)):
        L = np.linalg.cholesky(S)
        z = solve_triangular(L, (X - mu).T, lower=True)
        out[:, j] = (
            np.log(weights[j])
            - 0.5 * (z * z).sum(axis=0)
            - np.log(np.diag(L)).sum()
            - 0.5 * d * np.log(2 * np.pi)
        )
    return out


def _posteriors(X, weights, means, covs):
    lj = _log_joint(X, weights, means, covs)
    top = lj.max(axis=1, keepdims=True)
    ll = np.log(np.exp(lj - top).sum(axis=1, keepdims=True)) + top
    return ll[:, 0], np.exp(lj - ll)


def _reference_em(X, kind, weights, means, cov):
    """ITERATIONS of EM in float64 (Dempster et al.; sklearn's M-step per type, with
    regCovar): the final parameters and the last E-step's mean log-likelihood."""
    n, d = X.shape
    k = len(weights)
    covs = _full(cov, kind, k, d)
    for _ in range(ITERATIONS):
        ll, r = _posteriors(X, weights, means, covs)
        nk = r.sum(axis=0)
        weights, means = nk / n, (r.T @ X) / nk[:, None]
        scatter = np.stack([((X - means[j]) * r[:, [j]]).T @ (X - means[j]) for j in range(k)])
        if kind == "full":
            cov = scatter / nk[:, None, None] + REG * np.eye(d)
        elif kind == "tied":
            cov = scatter.sum(axis=0) / n + REG * np.eye(d)
        else:
            diag = np.stack([np.diag(s) for s in scatter]) / nk[:, None] + REG
            cov = diag if kind == "diag" else diag.mean(axis=1)
        covs = _full(cov, kind, k, d)
    return weights, means, cov, float(ll.mean())


# ----------------------------------------------------------------- data and starts
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three separated clusters in 3-D, offset by 0, 1e2 and 1e4, as Parquet files."""
    X, _, _ = sample_mixture(3000, k=3, d=3, covariance_type="full", seed=11, separation=5.0)
    out = {}
    for offset in (0.0, 1e2, 1e4):
        Xo = X + offset
        path = str(tmp_path_factory.mktemp("f32") / f"x{offset:g}.parquet")
        feats = pa.FixedSizeListArray.from_arrays(pa.array(Xo.ravel()), 3)
        table = pa.table({"features": feats.cast(pa.list_(pa.float64()))})
        pq.write_table(table, path, row_group_size=500)
        out[offset] = (Xo, path)
    return out


def _start(X, kind, seed=5):
    """A start near the clusters: k rows' neighbourhoods, covariances of the whole data."""
    rng = np.random.default_rng(seed)
    k, d = 3, X.shape[1]
    means = X[rng.choice(X.shape[0], k, replace=False)] + rng.normal(0, 0.3, (k, d))
    full = np.stack([np.cov(X.T) * 0.5 for _ in range(k)])
    cov = {
        "full": full,
        "tied": full[0],
        "diag": np.stack([np.diag(c) for c in full]),
        "spherical": np.array([np.diag(c).mean() for c in full]),
    }[kind]
    return np.full(k, 1.0 / k), means, cov


def _sklearn32(X, kind, weights, means, cov):
    inv = {
        "full": lambda c: np.linalg.inv(c),
        "tied": lambda c: np.linalg.inv(c),
        "diag": lambda c: 1.0 / c,
        "spherical": lambda c: 1.0 / c,
    }[kind]
    sk = SkGM(
        3,
        covariance_type=kind,
        max_iter=ITERATIONS,
        tol=0.0,
        reg_covar=REG,
        weights_init=weights,
        means_init=means,
        precisions_init=inv(cov),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(X.astype(np.float32))
    return sk.weights_, sk.means_, sk.covariances_, float(sk.lower_bound_)


def _errors(got, truth, X, kind):
    """(relative error of the mean log-likelihood, error of the means in the data's spread,
    largest covariance error relative to the entry's scale sqrt(S_ii S_jj))."""
    _, means, cov, ll = got
    _, means0, cov0, ll0 = truth
    spread = X.std(axis=0).max()
    full0 = _full(cov0, kind, 3, X.shape[1])
    scale = np.sqrt(np.einsum("kii,kjj->kij", full0, full0))
    cov_err = np.abs(_full(np.asarray(cov), kind, 3, X.shape[1]) - full0) / scale
    return abs(ll - ll0) / abs(ll0), np.abs(means - means0).max() / spread, cov_err.max()


# ----------------------------------------------------------------- the contract
@pytest.mark.parametrize("store,offset", CASES)
def test_float32_fit_keeps_the_accuracy_contract(spark, data, store, offset):
    """The four covariance types from one start each, as four runs of one float32 fit in
    lock-step (the engine's runs of a model selection: every pass shared), against the
    float64 truth; scikit-learn's float32 fit from the same starts measured beside."""
    X, path = data[offset]
    df = spark.read.parquet(path)
    if store != "parquet":
        df = df.repartition(3)
    gm = GaussianMixture(
        k=3, maxIter=ITERATIONS, tol=0.0, regCovar=REG, dtype="float32", blockCache=store
    )
    starts = {kind: _start(X, kind) for kind in TYPES}
    with FitSession.open(df, gm._settings(), 3) as session:
        assert session.store.name == store
        runs = [Run(GaussianParams.from_covariances(*starts[kind], kind), kind) for kind in TYPES]
        runs = session.iterate(runs)
    for kind, run in zip(TYPES, runs):
        assert len(run.history) == ITERATIONS
        truth = _reference_em(X, kind, *starts[kind])
        p = run.params
        ll_err, mean_err, cov_err = _errors(
            (p.weights, p.means, p.covariances, run.history[-1]), truth, X, kind
        )
        try:
            sk = _errors(_sklearn32(X, kind, *starts[kind]), truth, X, kind)
        except ValueError:  # "ill-defined empirical covariance": no float32 fit at all
            sk = (np.inf, np.inf, np.inf)
        print(
            f"\n{store} offset {offset:g} {kind}: spark-em float32 ll {ll_err:.1e} means "
            f"{mean_err:.1e} cov {cov_err:.1e} | sklearn float32 ll {sk[0]:.1e} means "
            f"{sk[1]:.1e} cov {sk[2]:.1e}"
        )
        assert ll_err <= 1e-5 and mean_err <= 1e-4 and cov_err <= 1e-4, kind
        if offset >= 1e4:  # centred in float64 before the cast: closer than sklearn's
            assert cov_err < sk[2] and mean_err < sk[1], kind
        if store != "local":
            continue  # transform does not depend on where the fit's blocks lived
        model = GaussianMixtureModel.fromParameters(p.weights, p.means, p.covariances, kind)
        rows = model.transform(df).select("features", "probability").toPandas()
        Xt = np.stack(rows["features"].to_numpy())
        _, resp = _posteriors(Xt, truth[0], truth[1], _full(truth[2], kind, 3, 3))
        prob = np.stack([v.toArray() for v in rows["probability"]])
        np.testing.assert_allclose(prob, resp, rtol=0, atol=1e-5, err_msg=kind)


# ----------------------------------------------------------------- the blocks themselves
def _files(spark):
    root = spark.sparkContext.getConf().get("spark.local.dir").split(",")[0]
    return glob.glob(f"{root}/spark-em-blocks-*/*.bin") + glob.glob(
        f"{root}/*/spark-em-blocks-*/*.bin"
    )


@pytest.mark.parametrize("dtype,row_bytes", [("float64", 8 * 3), ("float32", 4 * 3)])
@pytest.mark.parametrize("weighted", [False, True])
def test_block_files_hold_the_rows_in_the_dtype(spark, data, dtype, row_bytes, weighted):
    """Local block files: a float64 weight (with a weightCol only) and d features of the
    dtype per row (float32 files add one header of d float64 references each); Spark's
    cache: d features of the dtype per row."""
    from pyspark.sql import functions as F

    X, path = data[1e4]
    df = spark.read.parquet(path).repartition(3).withColumn("w", F.lit(2.0))
    before = set(_files(spark))
    weight_col = "w" if weighted else None
    store, prepared = prepare(
        df, "features", weight_col=weight_col, block_cache="local", dtype=dtype
    )
    with store:
        files = [f for f in _files(spark) if f not in before]
        header = 8 * 3 if dtype == "float32" else 0
        row = row_bytes + (8 if weighted else 0)
        assert sum(os.path.getsize(f) - header for f in files) == X.shape[0] * row
        assert prepared.n_rows == X.shape[0]
        # the weights as the passes read them back from the files
        layout = store._layout()
        read = [layout.read(f, 0, layout.rows_in(os.path.getsize(f))) for f in files]
        assert sum(len(r[1]) for r in read) == X.shape[0]
        assert sum(float(r[1].sum()) for r in read) == X.shape[0] * (2.0 if weighted else 1.0)
    if weighted:
        return
    store, _ = prepare(df, "features", block_cache="spark", dtype=dtype)
    with store:
        stored = store.blocks.agg(F.sum(F.length("X"))).first()[0]
        assert stored == X.shape[0] * 3 * (4 if dtype == "float32" else 8)


@pytest.mark.parametrize("store", ["local", "spark", "parquet"])
def test_float32_refuses_features_it_cannot_hold(spark, tmp_path, store):
    """A feature beyond 1e30 is an invalid row in float32 (named, with the way out); float64
    takes it."""
    X = np.random.default_rng(0).normal(size=(50, 2))
    X[7, 1] = 3e31
    path = str(tmp_path / "huge.parquet")
    feats = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 2)
    pq.write_table(pa.table({"features": feats.cast(pa.list_(pa.float64()))}), path)
    df = spark.read.parquet(path)
    gm = GaussianMixture(k=1, maxIter=1, blockCache=store, dtype="float32")
    with pytest.raises(InvalidInputError, match=r"1 rows have values beyond \+-1e\+30.*float64"):
        gm.fit(df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wide = gm.setDtype("float64").fit(df)
        rest = gm.setDtype("float32").setBlockCache("auto").fit(df.where("features[1] < 1e30"))
    assert wide.summary.numRows == 50 and rest.summary.numRows == 49
    assert rest.getDtype() == "float32"


def test_float32_kernel_on_its_longest_slices_keeps_the_contract():
    """float32 full-covariance slices hold FLOAT32_PRODUCTS_CHUNK_FACTOR times the rows
    (32,768 at d=3): on 80,000 rows offset by 1e4, in such slices, the float32 kernel's
    statistics and log-likelihood match the float64 kernel's (itself checked against
    scikit-learn elsewhere) within the accuracy contract, and its M-step's parameters too."""
    from spark_em.core.estep import EStepKernel
    from spark_em.core.summarizers import Chunk
    from spark_em.core.tuning import FLOAT32_PRODUCTS_CHUNK_FACTOR, MAX_CHUNK_ROWS

    X, _, _ = sample_mixture(80_000, k=3, d=3, covariance_type="full", seed=3, separation=4.0)
    X = X + 1e4
    sk = SkGM(3, covariance_type="full", max_iter=3, random_state=0).fit(X[:5000])
    params = GaussianParams(
        sk.weights_, sk.means_, sk.covariances_, sk.precisions_cholesky_, "full"
    )
    centre = X.mean(axis=0)
    out = {}
    for dtype in ("float64", "float32"):
        kernel = EStepKernel(params, centre, dtype=dtype)
        if dtype == "float32":
            assert kernel._slice_buffer()[0] == FLOAT32_PRODUCTS_CHUNK_FACTOR * MAX_CHUNK_ROWS
        stats = kernel.new_stats(3)
        kernel.accumulate(stats, Chunk(X, np.ones(X.shape[0]), centre))
        out[dtype] = stats
    s64, s32 = out["float64"], out["float32"]
    rel = abs(s32.log_likelihood - s64.log_likelihood) / abs(s64.log_likelihood)
    assert rel < 1e-5, rel
    np.testing.assert_allclose(s32.nk, s64.nk, rtol=1e-5)
    p64, p32 = s64.m_step(centre, 1e-6), s32.m_step(centre, 1e-6)
    scale = X.std(axis=0).max()
    assert np.abs(p32.means - p64.means).max() < 1e-4 * scale
    np.testing.assert_allclose(p32.covariances, p64.covariances, rtol=1e-4)
