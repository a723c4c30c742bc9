"""Model selection in shared scans, and checkpoints that a fit resumes from."""

from __future__ import annotations

import numpy as np
import pytest

from spark_em import GaussianMixture
from spark_em.data.datasets import sample_mixture
from spark_em.engine.checkpoint import CheckpointMismatchError
from spark_em.progress import InitialisationDone, IterationInfo

from .conftest import Killed, kill_at, to_df


@pytest.fixture(scope="module")
def diag_data(spark):
    X, _, _ = sample_mixture(1500, k=3, d=3, covariance_type="diag", seed=3, separation=6.0)
    return X, to_df(spark, X, partitions=3)


def test_select_recovers_k_and_covariance_type_by_bic(spark, diag_data):
    X, df = diag_data
    passes = []
    gm = GaussianMixture(seed=1, tol=1e-4)
    gm.progress = lambda e: passes.append(e.iteration) if isinstance(e, IterationInfo) else None
    model, table = gm.fitSelect(df, range(1, 6), ["full", "diag", "spherical"])
    rows = table.collect()
    assert len(rows) == 15 and {(r["k"], r["covarianceType"]) for r in rows} == {
        (k, t) for k in range(1, 6) for t in ("full", "diag", "spherical")
    }
    assert (model.getK(), model.covarianceType) == (3, "diag")
    best = min(rows, key=lambda r: r["bic"])
    assert (best["k"], best["covarianceType"]) == (3, "diag")
    # every candidate's BIC/AIC is sklearn's, under its final parameters
    sk = model.toSklearn()
    assert best["bic"] == pytest.approx(sk.bic(X), rel=1e-9)
    assert best["aic"] == pytest.approx(sk.aic(X), rel=1e-9)
    assert best["logLikelihood"] == pytest.approx(sk.score(X) * len(X), rel=1e-9)
    assert all(r["seconds"] > 0 and r["iterations"] >= 1 for r in rows)
    # one pass per iteration for all candidates: as many passes as the slowest candidate
    assert max(passes) == max(r["iterations"] for r in rows)
    assert len(set(passes)) == max(passes)


def test_each_candidate_equals_its_own_fit(spark, diag_data):
    X, df = diag_data
    gm = GaussianMixture(seed=7, tol=1e-3, maxIter=15, nInit=2)
    _, table = gm.fitSelect(df, [2, 4], ["full", "spherical"], criterion="aic")
    rows = {(r["k"], r["covarianceType"]): r for r in table.collect()}
    for (k, t), row in rows.items():
        alone = GaussianMixture(seed=7, tol=1e-3, maxIter=15, nInit=2, k=k, covarianceType=t).fit(
            df
        )
        assert row["iterations"] == alone.summary.numIter
        assert row["converged"] == alone.summary.converged
        sk = alone.toSklearn()
        assert row["logLikelihood"] == pytest.approx(sk.score(X) * len(X), rel=1e-9)


def test_select_rejects_bad_arguments(spark, diag_data):
    _, df = diag_data
    with pytest.raises(ValueError, match="criterion"):
        GaussianMixture().fitSelect(df, [2], criterion="likelihood")
    with pytest.raises(ValueError, match="covarianceType"):
        GaussianMixture().fitSelect(df, [2], ["banana"])
    with pytest.raises(ValueError, match="ks"):
        GaussianMixture().fitSelect(df, [0, 2])


@pytest.mark.parametrize("select", [False, True])
def test_resume_from_checkpoint_equals_an_uninterrupted_fit(spark, diag_data, tmp_path, select):
    X, df = diag_data

    def run(gm, checkpoint=None):
        gm.setCheckpointDir(checkpoint)
        if select:
            return gm.fitSelect(df, [2, 3], ["diag", "full"])[0]
        return gm.fit(df)

    settings = dict(k=3, covarianceType="full", seed=5, tol=0.0, maxIter=8, initMode="random")
    whole = run(GaussianMixture(**settings))
    ckpt = str(tmp_path / "ckpt")
    gm = GaussianMixture(**settings)
    gm.progress = kill_at(4)
    with pytest.raises(Killed):
        run(gm, ckpt)
    events = []
    gm.progress = events.append
    resumed = run(gm, ckpt)
    inits = [e for e in events if isinstance(e, InitialisationDone)]
    assert [e.mode for e in inits] == ["checkpoint"]  # no new initialisation
    first = min(e.iteration for e in events if isinstance(e, IterationInfo))
    assert first == 4  # iterations 1..3 were finished before the kill
    np.testing.assert_allclose(resumed.means, whole.means, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(resumed.covariances, whole.covariances, rtol=1e-9, atol=1e-12)
    assert resumed.summary.logLikelihoodHistory == pytest.approx(
        whole.summary.logLikelihoodHistory, rel=1e-9
    )


def test_checkpoint_of_other_data_or_settings_is_refused(spark, diag_data, tmp_path):
    """An interrupted fit's checkpoint is refused by a fit of other settings or rows, in
    words; discard=True starts afresh; a fit that finishes removes its checkpoint, so the
    next night's fit over new rows is not refused."""
    import os

    X, df = diag_data
    ckpt = str(tmp_path / "ckpt")
    gm = GaussianMixture(k=2, seed=1, maxIter=5, tol=0.0).setCheckpointDir(ckpt)
    gm.progress = kill_at(3)
    with pytest.raises(Killed):
        gm.fit(df)
    # no pickle anywhere: the arrays load with allow_pickle=False
    names = sorted(os.listdir(ckpt))
    assert names[0].startswith("arrays-") and names[0].endswith(".npz") and names[1] == "state.json"
    with pytest.raises(CheckpointMismatchError) as caught:
        GaussianMixture(k=3, seed=1, maxIter=5, tol=0.0).setCheckpointDir(ckpt).fit(df)
    assert "holds another fit: other settings (k is 3 here, 2 in the checkpoint)" in str(
        caught.value
    )
    assert caught.value.what == "settings" and "discard=True" in str(caught.value)
    other = to_df(spark, X[:1000])
    with pytest.raises(CheckpointMismatchError) as caught:
        GaussianMixture(k=2, seed=1, maxIter=5, tol=0.0).setCheckpointDir(ckpt).fit(other)
    assert "other rows (rows is 1000 here, 1500 in the checkpoint)" in str(caught.value)
    assert caught.value.what == "rows"
    shifted = to_df(spark, X + 1.0)  # the same number of rows, other values
    with pytest.raises(CheckpointMismatchError, match="the features' mean differs"):
        GaussianMixture(k=2, seed=1, maxIter=5, tol=0.0).setCheckpointDir(ckpt).fit(shifted)
    # 2 iterations done: a resume with maxIter=1 is refused (a model cannot say numIter=2
    # beside maxIter=1), with the value that resumes it
    with pytest.raises(CheckpointMismatchError) as caught:
        GaussianMixture(k=2, seed=1, maxIter=1, tol=0.0).setCheckpointDir(ckpt).fit(df)
    assert "holds 2 finished iterations, more than maxIter=1" in str(caught.value)
    assert "raise maxIter to at least 2" in str(caught.value)
    assert caught.value.what == "settings"
    assert os.path.exists(os.path.join(ckpt, "state.json"))  # refusals change nothing

    # discard: a fresh fit, equal to one without a checkpoint
    fresh = (
        GaussianMixture(k=2, seed=1, maxIter=4, tol=0.0)
        .setCheckpointDir(ckpt, discard=True)
        .fit(other)
    )
    plain = GaussianMixture(k=2, seed=1, maxIter=4, tol=0.0).fit(other)
    np.testing.assert_allclose(fresh.means, plain.means, rtol=1e-12)
    assert not os.path.exists(ckpt)  # finished: removed

    # a finished fit leaves no checkpoint; the next fit over other rows runs
    GaussianMixture(k=2, seed=1, maxIter=2).setCheckpointDir(ckpt).fit(df)
    assert not os.path.exists(ckpt)
    GaussianMixture(k=3, seed=1, maxIter=2).setCheckpointDir(ckpt).fit(other)
    assert not os.path.exists(ckpt)
