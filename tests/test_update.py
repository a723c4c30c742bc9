"""Segments and incremental EM (Neal & Hinton, 1998): ``segmentCol``, ``model.segments``,
``model.update``.  The truth is a row-by-row numpy reference of incremental EM written here
from the paper's formulas (per-segment statistics of an E-step, frozen between steps, the
M-step of their sum), and plain EM (``initialModel``) when every segment is refreshed."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from spark_em import GaussianMixture, GaussianMixtureModel, ModelFormatError
from spark_em.errors import ConvergenceWarning, InvalidInputError

K, D, REG = 2, 2, 1e-6
TYPES = ("full", "tied", "diag", "spherical")


# ------------------------------------------------------------------ the numpy reference
def full_covs(weights, covs, ct):
    if ct == "full":
        return covs
    if ct == "tied":
        return np.stack([covs] * len(weights))
    if ct == "diag":
        return np.stack([np.diag(c) for c in covs])
    return np.stack([np.eye(D) * c for c in covs])


def e_stats(X, w, theta, ct):
    """The E-step of one segment under ``theta``: sum_i w r_ik, sum_i w r_ik x_i,
    sum_i w r_ik x_i x_i^T (raw moments), sum_i w log p(x_i), sum_i w."""
    weights, means, covs = theta
    fc = full_covs(weights, covs, ct)
    logp = np.stack(
        [np.log(weights[j]) + multivariate_normal(means[j], fc[j]).logpdf(X) for j in range(K)],
        axis=1,
    )
    ll = logsumexp(logp, axis=1)
    r = np.exp(logp - ll[:, None]) * w[:, None]
    return {
        "N": r.sum(axis=0),
        "S": r.T @ X,
        "M": np.einsum("ik,ia,ib->kab", r, X, X),
        "ll": float(w @ ll),
        "W": float(w.sum()),
    }


def add(*stats):
    return {key: sum(s[key] for s in stats) for key in stats[0]}


def m_step(st, ct):
    N = st["N"]
    mu = st["S"] / N[:, None]
    scatter = st["M"] - N[:, None, None] * np.einsum("ka,kb->kab", mu, mu)  # about mu_k
    if ct == "full":
        covs = scatter / N[:, None, None] + REG * np.eye(D)
    elif ct == "tied":
        covs = scatter.sum(axis=0) / N.sum() + REG * np.eye(D)
    else:
        var = np.stack([np.diag(s) for s in scatter]) / N[:, None] + REG
        covs = var if ct == "diag" else var.mean(axis=1)
    return N / N.sum(), mu, covs


def incremental_em(frozen, fresh_rows, theta, ct, max_iter, tol):
    """theta <- M(sum frozen + sum fresh(theta)) until the fresh rows' mean log-likelihood
    changes by less than tol; returns (theta, history, statistics of the last E-step)."""
    history, fresh = [], None
    for _ in range(max_iter):
        fresh = [e_stats(X, w, theta, ct) for X, w in fresh_rows]
        total = add(*fresh)
        history.append(total["ll"] / total["W"])
        theta = m_step(add(*frozen, *fresh), ct)
        if len(history) > 1 and abs(history[-1] - history[-2]) < tol:
            break
    return theta, history, fresh


# ------------------------------------------------------------------ data
@pytest.fixture(scope="module")
def days():
    """Four days of a drifting 2-component mixture in 2-D, with row weights."""
    rng = np.random.default_rng(3)
    out = {}
    for day in range(1, 5):
        n = 120
        z = rng.random(n) < 0.4
        shift = 0.3 * day
        X = np.where(
            z[:, None],
            rng.normal([-2.0 + shift, 0.0], [0.7, 1.2], (n, D)),
            rng.normal([2.0, 1.0 + shift], [1.0, 0.5], (n, D)),
        )
        out[day] = (X, rng.uniform(0.5, 2.0, n))
    return out


def frame(spark, days, which):
    rows = [(x.tolist(), float(wi), int(day)) for day in which for x, wi in zip(*days[day])]
    return spark.createDataFrame(rows, "features array<double>, w double, day long")


def start(ct):
    weights = np.array([0.4, 0.6])
    means = np.array([[-1.0, -0.5], [1.5, 1.5]])
    covs = {
        "full": np.stack([np.eye(D), np.eye(D) * 2.0]),
        "tied": np.eye(D) * 1.5,
        "diag": np.array([[1.0, 1.5], [2.0, 0.5]]),
        "spherical": np.array([1.0, 2.0]),
    }[ct]
    return weights, means, covs


def close(model, theta, tol):
    for a, b in zip((model.weights, model.means, model.covariances), theta):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def fitted(spark, days, ct, which=(1, 2, 3), **params):
    """One EM iteration from ``start(ct)`` with segments: every segment's statistics are
    under the known start."""
    init = GaussianMixtureModel.fromParameters(*start(ct), covarianceType=ct)
    gm = GaussianMixture(
        k=K,
        covarianceType=ct,
        segmentCol="day",
        weightCol="w",
        initialModel=init,
        maxIter=1,
        **params,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return gm.fit(frame(spark, days, which))


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("ct", TYPES)
def test_fit_keeps_segments_and_update_is_incremental_em(spark, days, ct):
    model = fitted(spark, days, ct)
    stats0 = {day: e_stats(*days[day], start(ct), ct) for day in days}
    theta1 = m_step(add(*(stats0[d] for d in (1, 2, 3))), ct)
    close(model, theta1, 1e-6)
    assert [(s.key, s.rows, s.iteration) for s in model.segments] == [
        (1, 120, 0),
        (2, 120, 0),
        (3, 120, 0),
    ]
    assert [s.weightSum for s in model.segments] == pytest.approx(
        [days[d][1].sum() for d in (1, 2, 3)], rel=1e-12
    )
    # day 3 again (its statistics replaced) and the new day 4; days 1 and 2 frozen
    updated = model.update(frame(spark, days, (3, 4)), maxIter=30, tol=1e-8)
    theta, history, _ = incremental_em(
        [stats0[1], stats0[2]], [days[3], days[4]], theta1, ct, 30, 1e-8
    )
    close(updated, theta, 1e-6)
    np.testing.assert_allclose(updated.summary.logLikelihoodHistory, history, rtol=1e-9)
    n = len(history)
    assert updated.summary.numIter == n
    assert [(s.key, s.iteration) for s in updated.segments] == [(1, 0), (2, 0), (3, n), (4, n)]
    report = updated.summary.update
    assert report["rowsRead"] == 240 and report["segmentsUpdated"] == ["3", "4"]
    assert report["segmentsFrozen"] == ["1", "2"] and report["segmentsDropped"] == []


def refuse(*args, **kwargs):
    raise AssertionError("the update read the input again")


@pytest.mark.parametrize("store,most", [("local", 32), ("local", 1), ("spark", 32), ("spark", 1)])
def test_update_on_each_store_and_the_new_segments_score(spark, days, store, most, monkeypatch):
    """Local block files and Spark's cache keep each segment's rows apart (one file per
    task and segment; block rows of one segment): every pass gives per-segment statistics,
    so the update needs no read of the input beyond its iterations', and its first E-step
    scores the new segment under the model.  With more segments than MAX_KEYED_SEGMENTS
    (here 1) the rows are stored without keys and the split is a read of the input.  Each
    equals the numpy reference; the rows of the two segments come in alternate blocks (one
    Arrow batch holds both)."""
    import spark_em.engine.update as engine_update

    monkeypatch.setattr(engine_update, "MAX_KEYED_SEGMENTS", most)
    ct = "full"
    model = fitted(spark, days, ct, blockCache=store)
    keyed = most > 1
    if keyed:  # the update: no pass beyond the validation pass and the iterations
        monkeypatch.setattr(engine_update, "keyed_pass", refuse)
        monkeypatch.setattr(engine_update, "run_pass", refuse)
    stats0 = {day: e_stats(*days[day], start(ct), ct) for day in days}
    theta1 = m_step(add(*(stats0[d] for d in (1, 2, 3))), ct)
    rows = [(x.tolist(), float(wi), day) for day in (3, 4) for x, wi in zip(*days[day])]
    rows = rows[0::2] + rows[1::2]  # days 3 and 4 alternate
    df = spark.createDataFrame(rows, "features array<double>, w double, day long").coalesce(1)
    updated = model.update(df, maxIter=30, tol=1e-8)
    theta, history, fresh = incremental_em(
        [stats0[1], stats0[2]], [days[3], days[4]], theta1, ct, 30, 1e-8
    )
    close(updated, theta, 1e-6)
    np.testing.assert_allclose(updated.summary.logLikelihoodHistory, history, rtol=1e-9)
    # the fresh segments' statistics (as saved with the model): the reference's last E-step
    for seg, ref in zip(updated._segments[2:], fresh):
        assert seg.weight_sum == pytest.approx(ref["W"], rel=1e-12)
        assert seg.stats.log_likelihood == pytest.approx(ref["ll"], rel=1e-9)
        np.testing.assert_allclose(seg.stats.nk, ref["N"], rtol=1e-8)
    scored = updated.summary.update.get("newSegments")
    if keyed:
        day4 = e_stats(*days[4], theta1, ct)  # day 4 under the model's parameters
        assert scored["keys"] == ["4"]
        assert scored["weightSum"] == pytest.approx(day4["W"], rel=1e-12)
        assert scored["logLikelihood"] == pytest.approx(day4["ll"], rel=1e-9)
    else:
        assert scored is None


def test_update_of_the_keys_given_asks_no_query(spark, days, monkeypatch):
    """``keys``: the segments to take from the input.  When every listed key of the window
    has rows, no query looks for them and the result is the numpy reference's; rows of
    other keys are left out.  A listed key without rows (here 9) sends the update back to
    the query's answer, window included; a list whose segments hold no row is a night with
    nothing new; keys of the wrong kind are refused."""
    import spark_em.engine.update as engine_update

    ct = "diag"
    model = fitted(spark, days, ct)
    stats0 = {day: e_stats(*days[day], start(ct), ct) for day in days}
    theta1 = m_step(add(*(stats0[d] for d in (1, 2, 3))), ct)
    df = frame(spark, days, (2, 3, 4))
    with monkeypatch.context() as m:
        m.setattr(engine_update, "segment_keys", refuse)
        updated = model.update(df, maxIter=30, tol=1e-8, keys=[3, 4])
    # day 2's rows were left out: it stays frozen, as day 1
    theta, history, _ = incremental_em(
        [stats0[1], stats0[2]], [days[3], days[4]], theta1, ct, 30, 1e-8
    )
    close(updated, theta, 1e-6)
    np.testing.assert_allclose(updated.summary.logLikelihoodHistory, history, rtol=1e-9)
    assert [s.key for s in updated.segments] == [1, 2, 3, 4]
    assert updated.summary.update["segmentsUpdated"] == ["3", "4"]
    assert updated.summary.update["rowsRead"] == 240
    # day 9 listed but absent, window 3: days 2, 3, 4 kept, as the query finds them; the
    # same rows were read, so the update goes on in its session (one validation pass)
    opened = []
    with monkeypatch.context() as m:
        real_open = engine_update.FitSession.open
        m.setattr(
            engine_update.FitSession,
            "open",
            lambda *a, **kw: opened.append(1) or real_open(*a, **kw),
        )
        listed = model.update(df, window=3, maxIter=30, tol=1e-8, keys=[3, 4, 9])
    assert len(opened) == 1
    queried = model.update(frame(spark, days, (3, 4)), window=3, maxIter=30, tol=1e-8)
    assert [s.key for s in listed.segments] == [2, 3, 4] == [s.key for s in queried.segments]
    np.testing.assert_allclose(listed.means, queried.means, rtol=1e-12)
    assert listed.summary.update == queried.summary.update
    nothing = model.update(df, keys=[9])
    assert nothing.summary.update["rowsRead"] == 0
    np.testing.assert_array_equal(nothing.means, model.means)
    assert nothing.segments == model.segments
    for wrong in (["3"], "34", [4, None]):
        with pytest.raises(ValueError, match="(not long values|not one str)"):
            model.update(df, keys=wrong)


@pytest.mark.parametrize("store", ["local", "spark"])
def test_a_segment_without_valid_rows_gets_no_statistics(spark, days, store):
    """handleInvalid='skip' and a new day whose rows are all invalid, in a 1-iteration
    update (its statistics are the validation pass's E-step): the day gets no segment; the
    refreshed day's statistics are those of its E-step under the model's parameters."""
    ct = "diag"
    model = fitted(spark, days, ct, blockCache=store, handleInvalid="skip")
    stats0 = {day: e_stats(*days[day], start(ct), ct) for day in days}
    theta1 = m_step(add(*(stats0[d] for d in (1, 2, 3))), ct)
    rows = [(x.tolist(), float(wi), 3) for x, wi in zip(*days[3])]
    rows += [(None, 1.0, 4)] * 20
    df = spark.createDataFrame(rows, "features array<double>, w double, day long").coalesce(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        updated = model.update(df, maxIter=1)
    assert [(s.key, s.rows) for s in updated.segments] == [(1, 120), (2, 120), (3, 120)]
    ref = e_stats(*days[3], theta1, ct)
    assert updated._segments[2].stats.log_likelihood == pytest.approx(ref["ll"], rel=1e-9)
    np.testing.assert_allclose(updated._segments[2].stats.nk, ref["N"], rtol=1e-9)


def test_window_drops_the_oldest_segments(spark, days):
    ct = "full"
    model = fitted(spark, days, ct)
    stats0 = {day: e_stats(*days[day], start(ct), ct) for day in days}
    theta1 = m_step(add(*(stats0[d] for d in (1, 2, 3))), ct)
    updated = model.update(frame(spark, days, (4,)), window=2, maxIter=20, tol=1e-8)
    theta, history, _ = incremental_em([stats0[3]], [days[4]], theta1, ct, 20, 1e-8)
    close(updated, theta, 1e-6)
    assert [s.key for s in updated.segments] == [3, 4]
    assert updated.summary.update["segmentsDropped"] == ["1", "2"]
    assert updated.summary.update["segmentsFrozen"] == ["3"]


def test_rerunning_a_night_replaces_its_segment(spark, days):
    model = fitted(spark, days, "diag")
    day4 = frame(spark, days, (4,))
    once = model.update(day4, maxIter=200, tol=1e-12)
    twice = once.update(day4, maxIter=200, tol=1e-12)
    close(twice, (once.weights, once.means, once.covariances), 1e-6)
    assert [(s.key, s.rows) for s in twice.segments] == [(1, 120), (2, 120), (3, 120), (4, 120)]
    # a doubled day 4 would weigh twice: its weight sum is that of its rows, once
    assert twice.segments[-1].weightSum == pytest.approx(days[4][1].sum(), rel=1e-12)


@pytest.mark.parametrize("ct", ["full", "spherical"])
def test_refreshing_every_segment_is_em(spark, days, ct):
    df = frame(spark, days, (1, 2, 3, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = GaussianMixture(
            k=K, covarianceType=ct, segmentCol="day", weightCol="w", maxIter=3
        ).fit(df)
        for j in (1, 2, 3):
            updated = model.update(df, maxIter=j, tol=0.0)
            em = GaussianMixture(
                k=K, covarianceType=ct, weightCol="w", initialModel=model, maxIter=j, tol=0.0
            ).fit(df)
            close(updated, (em.weights, em.means, em.covariances), 1e-9)
            np.testing.assert_allclose(
                updated.summary.logLikelihoodHistory, em.summary.logLikelihoodHistory, rtol=1e-9
            )


def test_segments_survive_save_and_load(spark, days, tmp_path):
    model = fitted(spark, days, "tied")
    path = str(tmp_path / "m")
    model.write().save(path)
    loaded = GaussianMixtureModel.load(path)
    assert loaded.segments == model.segments
    assert loaded.getSegmentCol() == "day"
    day4 = frame(spark, days, (4,))
    a, b = model.update(day4, maxIter=5), loaded.update(day4, maxIter=5)
    close(b, (a.weights, a.means, a.covariances), 1e-12)
    # another model's segment statistics are refused
    other = fitted(spark, days, "tied", which=(1, 2, 4))
    other_path = str(tmp_path / "other")
    other.write().save(other_path)
    seg = tmp_path / "m" / "segments"
    shutil.rmtree(seg)
    shutil.copytree(tmp_path / "other" / "segments", seg)
    with pytest.raises(ModelFormatError, match="segment"):
        GaussianMixtureModel.load(path)


def test_segment_column_errors(spark, days):
    df = frame(spark, days, (1,))
    with pytest.raises(InvalidInputError, match="segmentCol 'nope' does not exist"):
        GaussianMixture(k=K, segmentCol="nope").fit(df)
    bad = df.withColumn("day", df["w"])
    with pytest.raises(InvalidInputError, match="segmentCol 'day' has type double"):
        GaussianMixture(k=K, segmentCol="day").fit(bad)
    with pytest.raises(ValueError, match="fitted with segmentCol"):
        GaussianMixtureModel.fromParameters(*start("full")).update(df)


def test_segments_with_missing_values(spark, days):
    """missingValues='marginalize': rows with a NaN count in their segment, and refreshing
    every segment is still EM from the model (marginal E-step)."""
    rows = [
        ([np.nan if (i % 7 == 0) else v for v in x.tolist()[:1]] + x.tolist()[1:], int(day))
        for day in (1, 2)
        for i, x in enumerate(days[day][0])
    ]
    df = spark.createDataFrame(rows, "features array<double>, day long")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(k=K, segmentCol="day", missingValues="marginalize", maxIter=3)
        model = gm.fit(df)
        assert sum(s.rows for s in model.segments) == 240 == model.summary.numRows
        updated = model.update(df, maxIter=1, tol=0.0)
        em = GaussianMixture(
            k=K, missingValues="marginalize", initialModel=model, maxIter=1, tol=0.0
        ).fit(df)
    close(updated, (em.weights, em.means, em.covariances), 1e-9)
