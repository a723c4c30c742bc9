"""A checkpoint's arrays pass the checks of a loaded model (finite, shapes, weights,
positive definite): a damaged one is refused with one CheckpointError naming the file, the
problem and the fix (discard it), never resumed, never numpy's own advice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from spark_em import GaussianMixture
from spark_em.data.datasets import sample_mixture
from spark_em.engine.checkpoint import CheckpointError

from .conftest import Killed, kill_at, to_df


def settings():
    return dict(k=2, seed=1, maxIter=6, tol=0.0, covarianceType="full")


@pytest.fixture(scope="module")
def interrupted(spark, tmp_path_factory):
    """The checkpoint of a fit killed after its second iteration, and its data."""
    X, _, _ = sample_mixture(300, k=2, d=2, seed=4, separation=6.0)
    df = to_df(spark, X, partitions=2)
    ckpt = tmp_path_factory.mktemp("ckpt") / "c"
    gm = GaussianMixture(**settings()).setCheckpointDir(str(ckpt))
    gm.progress = kill_at(3)
    with pytest.raises(Killed):
        gm.fit(df)
    return ckpt, df


def rewrite(change):
    """Rewrite the checkpoint's .npz with ``change(dict of arrays)`` applied."""

    def tamper(ckpt: Path) -> None:
        state = json.loads((ckpt / "state.json").read_text())
        f = ckpt / state["arrays"]
        with np.load(f) as z:
            arrays = {n: z[n] for n in z.files}
        change(arrays)
        with open(f, "wb") as fh:
            np.savez(fh, **arrays)

    return tamper


def nan_means(a):
    a["0_means"] = a["0_means"].copy()
    a["0_means"][0, 0] = np.nan


def pickled(a):
    a["0_weights"] = np.array([0.5, 0.5], dtype=object)


def missing(a):
    del a["0_covariances"]


def weights_sum_to_3(a):
    a["0_weights"] = a["0_weights"] * 3


def not_positive_definite(a):
    a["0_covariances"] = a["0_covariances"].copy()
    a["0_covariances"][1] = [[1.0, 2.0], [2.0, 1.0]]


CASES = {
    "NaN means": (nan_means, "run 0: means contain NaN or infinite values"),
    "pickled array": (pickled, "pickled \\(object\\) arrays, which are never loaded"),
    "missing array": (missing, "run 0 has no covariances array \\(0_covariances\\)"),
    "weights sum to 3": (weights_sum_to_3, "run 0: weights sum to 3.0"),
    "not positive definite": (not_positive_definite, "covariance 1 is not positive definite"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_damaged_checkpoint_is_one_clear_error(spark, interrupted, tmp_path, case):
    ckpt, df = interrupted
    change, problem = CASES[case]
    mine = tmp_path / "c"
    shutil.copytree(ckpt, mine)
    rewrite(change)(mine)
    gm = GaussianMixture(**settings()).setCheckpointDir(str(mine))
    with pytest.raises(CheckpointError, match=problem) as info:
        gm.fit(df)
    message = str(info.value)
    assert message.startswith(f"checkpoint {mine}/arrays-")
    assert "discard the checkpoint" in message and "allow_pickle" not in message
    assert "\n" not in message and info.value.__cause__ is None
    # the fix the message gives works
    model = GaussianMixture(**settings()).setCheckpointDir(str(mine), discard=True).fit(df)
    assert np.all(np.isfinite(model.means)) and model.summary.numIter == 6


def test_the_untouched_checkpoint_resumes(spark, interrupted, tmp_path):
    ckpt, df = interrupted
    mine = tmp_path / "c"
    shutil.copytree(ckpt, mine)
    resumed = GaussianMixture(**settings()).setCheckpointDir(str(mine)).fit(df)
    whole = GaussianMixture(**settings()).fit(df)
    np.testing.assert_allclose(resumed.means, whole.means, rtol=1e-9, atol=1e-12)


BAD_PARAMETERS = {
    "NaN means": (
        [0.5, 0.5],
        [[np.nan, 0.0], [1.0, 1.0]],
        [np.eye(2)] * 2,
        "means contain NaN",
    ),
    "weights sum to 3": ([1.5, 1.5], [[0.0, 0.0], [1.0, 1.0]], [np.eye(2)] * 2, "weights sum to"),
    "not positive definite": (
        [0.5, 0.5],
        [[0.0, 0.0], [1.0, 1.0]],
        [np.eye(2), [[1.0, 2.0], [2.0, 1.0]]],
        "covariance 1 is not positive definite",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PARAMETERS))
def test_from_parameters_and_from_sklearn_get_the_same_checks(case):
    from sklearn.mixture import GaussianMixture as SkGM

    from spark_em import GaussianMixtureModel

    w, m, c, problem = BAD_PARAMETERS[case]
    with pytest.raises(ValueError, match=f"fromParameters: {problem}"):
        GaussianMixtureModel.fromParameters(w, m, c, "full")
    sk = SkGM(2)
    sk.weights_, sk.means_, sk.covariances_ = np.array(w), np.array(m), np.array(c, dtype=float)
    with pytest.raises(ValueError, match=f"fromSklearn: {problem}"):
        GaussianMixtureModel.fromSklearn(sk)
