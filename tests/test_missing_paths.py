"""``missingValues="marginalize"`` through the rest of the fit's paths (issue 21, point 5):
a checkpointed fit interrupted and resumed, ``nInit`` restarts, ``fitSelect`` and the default
start searched on the sample.  Truth: the row-by-row reference EM and marginal
log-likelihood of :mod:`tests.test_missing` (written from the formulas, not the kernel)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from spark_em import GaussianMixture, GaussianMixtureModel

from .conftest import Killed, kill_at
from .test_missing import (
    REG,
    K,
    N,
    frame,
    full_covariances,
    make_holes,
    reference_em,
    start_of,
)


@pytest.fixture(scope="module")
def holes():
    return make_holes()


def observed_log_likelihood(Xm, model) -> float:
    """Mean over rows of log sum_k pi_k N(x_o | mu_k,o, Sigma_k,oo), row by row."""
    k, d = model.means.shape
    covs = full_covariances(model.covariances, model.covarianceType, k, d)
    total = 0.0
    for x in Xm:
        o = ~np.isnan(x)
        total += logsumexp(
            [
                np.log(model.weights[j])
                + multivariate_normal(model.means[j][o], covs[j][np.ix_(o, o)]).logpdf(x[o])
                for j in range(k)
            ]
        )
    return total / len(Xm)


def test_an_interrupted_fit_resumes_from_its_checkpoint_to_the_reference(spark, holes, tmp_path):
    _, Xm, means = holes
    df, _ = frame(spark, Xm, "array", 2)
    start = start_of("full", means)

    def estimator():
        return (
            GaussianMixture(k=K, maxIter=8, tol=0.0, regCovar=REG, missingValues="marginalize")
            .setInitialModel(GaussianMixtureModel.fromParameters(*start))
            .setCheckpointDir(str(tmp_path / "ckpt"))
        )

    killed = estimator()
    killed.progress = kill_at(4)
    with pytest.raises(Killed):
        killed.fit(df)
    model = estimator().fit(df)  # resumes after iteration 3
    history, (weights, mu, cov) = reference_em(Xm, np.ones(N), start, "full", 8)
    np.testing.assert_allclose(model.summary.logLikelihoodHistory, history, rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.means, mu, rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.covariances, cov, rtol=0, atol=1e-6)
    assert not (tmp_path / "ckpt").exists() or not any((tmp_path / "ckpt").iterdir())


def test_n_init_fit_select_and_the_default_start_with_missing_values(spark, holes):
    X, Xm, _ = holes
    df, _ = frame(spark, Xm, "array", 2)
    gm = GaussianMixture(k=K, seed=3, tol=1e-8, missingValues="marginalize")
    one, two = gm.fit(df), gm.copy({gm.nInit: 2}).fit(df)
    for model in (one, two):
        # the default start, searched on the sample's complete rows
        start = model.summary.initialisation
        assert start["mode"] == "sample-em" and not start["degenerate"]
        assert start["sampleRows"] == int((~np.isnan(Xm).any(axis=1)).sum())
        # the reported log-likelihood is the observed-data one of the final parameters
        assert model.summary.meanLogLikelihood == pytest.approx(
            observed_log_likelihood(Xm, model), abs=1e-6
        )
    assert two.summary.meanLogLikelihood >= one.summary.meanLogLikelihood - 1e-9
    best, table = gm.fitSelect(df, ks=[1, 2, 3], covarianceTypes=["full", "diag"])
    rows = table.collect()
    assert len(rows) == 6 and best.getK() == K  # two separated components
    by = {(r["k"], r["covarianceType"]): r for r in rows}
    assert by[(K, best.covarianceType)]["meanLogLikelihood"] == pytest.approx(
        observed_log_likelihood(Xm, best), abs=1e-6
    )
