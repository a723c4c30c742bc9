"""scikit-learn's regression test ``test_gaussian_mixture_setting_best_params`` (30 uniform
rows in 3-D, 6 spherical components from a given start with precisions up to 1e6,
``max_iter=1``), run through spark-em from the same start and compared with scikit-learn.

With ``regCovar=1e-6`` both fit and agree.  With ``reg_covar=0`` scikit-learn keeps
variances of 3.6e-16 and 9.5e-16 for the two components that hold one row each (roundoff
of its ``E[x^2] - mean^2``); spark-em takes those moments again about the new means,
finds them exactly 0 and raises IllDefinedCovarianceError -- a clear error (it used to be
a TypeError in the log line of that second pass), not yet scikit-learn's acceptance
(issue 20, point 4, open)."""

from __future__ import annotations

import numpy as np
import pytest

from spark_em import GaussianMixture, GaussianMixtureModel, IllDefinedCovarianceError

MEANS = np.array(
    [
        [0.670637869618158, 0.21038256107384043, 0.12892629765485303],
        [0.09394051075844147, 0.5759464955561779, 0.929296197576212],
        [0.5033230372781258, 0.9569852381759425, 0.08654043447295741],
        [0.18578301420435747, 0.5531158970919143, 0.19388943970532435],
        [0.4548589928173794, 0.35182513658825276, 0.568146063202464],
        [0.609279894978321, 0.7929063819678847, 0.9620097270828052],
    ]
)
PRECISIONS = np.array(
    [
        999999.999604483,
        999999.9990869573,
        553.7603944542167,
        204.78596008931834,
        15.867423501783637,
        85.4595728389735,
    ]
)
WEIGHTS = np.array(
    [
        0.03333333333333341,
        0.03333333333333341,
        0.06666666666666674,
        0.06666666666666674,
        0.7000000000000001,
        0.10000000000000007,
    ]
)


def fit(spark, reg):
    X = np.random.RandomState(0).uniform(size=(30, 3))
    df = spark.createDataFrame([(x.tolist(),) for x in X], "features array<double>")
    init = GaussianMixtureModel.fromParameters(
        WEIGHTS / WEIGHTS.sum(), MEANS, 1 / PRECISIONS, "spherical"
    )
    gm = GaussianMixture(
        k=6, covarianceType="spherical", regCovar=reg, maxIter=1, initialModel=init
    )
    return X, gm.fit(df)


def test_setting_best_params_as_sklearn(spark):
    from sklearn.mixture import GaussianMixture as SkGM

    with pytest.warns(UserWarning, match="did not converge"):
        X, model = fit(spark, 1e-6)
    sk = SkGM(
        6,
        covariance_type="spherical",
        reg_covar=1e-6,
        means_init=MEANS,
        weights_init=WEIGHTS,
        precisions_init=PRECISIONS,
        max_iter=1,
        random_state=0,
    ).fit(X)
    assert not model.summary.converged and not sk.converged_
    assert np.all(np.isfinite(model.covariances))
    np.testing.assert_allclose(model.weights, sk.weights_, rtol=1e-9)
    np.testing.assert_allclose(model.means, sk.means_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.covariances, sk.covariances_, rtol=1e-8)


def test_collapsed_component_without_reg_covar_is_a_clear_error(spark):
    with pytest.raises(IllDefinedCovarianceError, match="increase regCovar"):
        fit(spark, 0.0)
