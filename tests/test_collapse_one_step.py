"""scikit-learn's regression test ``test_gaussian_mixture_setting_best_params`` (30 uniform
rows in 3-D, 6 spherical components from a given start with precisions up to 1e6,
``max_iter=1``), run through spark-em from the same start and compared with scikit-learn.

With ``regCovar=1e-6`` both fit and agree.  With ``reg_covar=0`` scikit-learn keeps
variances of 3.6e-16 and 9.5e-16 for the two components that hold one row each: its
``E[x^2] - mean^2`` with ``N_k + 10 eps`` in the denominators is, exactly,
``10 eps n m^2 / (n + 10 eps)^2`` for rows of weight ``n`` on one point ``m``, plus its
rounding.  spark-em takes those moments again about the new means and finds 0, then takes
scikit-learn's value (:mod:`spark_em.core.collapsed`): the test compares it with that
formula evaluated in extended precision, written here from the responsibilities, and with
scikit-learn's own float64 result within its rounding.  Where scikit-learn raises
(``full``: the scatter of one row is rank one; a row at the origin; heavier collapsed
components) spark-em raises too (tests/test_collapsed_variance.py)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from spark_em import GaussianMixture, GaussianMixtureModel

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


def sklearn_m_step_exact(X):
    """scikit-learn's spherical M-step after one E-step from the given start, in exact
    rational arithmetic from the float64 responsibilities (spherical densities):
    ``N_k + 10 eps``, means ``sum r x / N_k``, variances ``mean_f(E[x_f^2] - mean_f^2)``."""
    sq = ((X[:, None, :] - MEANS[None]) ** 2).sum(axis=2) * PRECISIONS
    log_p = np.log(WEIGHTS / WEIGHTS.sum()) + 1.5 * np.log(PRECISIONS / (2 * np.pi)) - 0.5 * sq
    r = np.exp(log_p - log_p.max(axis=1, keepdims=True))
    r /= r.sum(axis=1, keepdims=True)
    eps10 = 10 * Fraction(float(np.finfo(np.float64).eps))
    means, variances = np.zeros((6, 3)), np.zeros(6)
    for j in range(6):
        rj = [Fraction(float(v)) for v in r[:, j]]
        nk = sum(rj) + eps10
        var = Fraction(0)
        for f in range(3):
            xs = [Fraction(float(v)) for v in X[:, f]]
            mean = sum(a * b for a, b in zip(rj, xs)) / nk
            var += sum(a * b * b for a, b in zip(rj, xs)) / nk - mean * mean
            means[j, f] = float(mean)
        variances[j] = float(var / 3)
    return means, variances


def test_collapsed_components_without_reg_covar_as_sklearn(spark):
    from sklearn.mixture import GaussianMixture as SkGM

    with pytest.warns(UserWarning, match="did not converge"):
        X, model = fit(spark, 0.0)
    sk = SkGM(
        6,
        covariance_type="spherical",
        reg_covar=0.0,
        means_init=MEANS,
        weights_init=WEIGHTS,
        precisions_init=PRECISIONS,
        max_iter=1,
        random_state=0,
    ).fit(X)
    assert not model.summary.converged and not sk.converged_
    means, variances = sklearn_m_step_exact(X)
    got = model.covariances
    assert np.all(np.isfinite(got)) and np.all(got > 0)
    np.testing.assert_allclose(model.weights, sk.weights_, rtol=1e-9)
    np.testing.assert_allclose(model.means, sk.means_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.means, means, rtol=1e-12, atol=1e-14)
    # the two components on one row: variances of about 1e-15, scikit-learn's formula
    # exactly, and scikit-learn's float64 value within its rounding (a few eps * m^2)
    assert np.all(got[:2] < 1e-14)
    np.testing.assert_allclose(got[:2], variances[:2], rtol=1e-9)
    np.testing.assert_allclose(got[:2], sk.covariances_[:2], rtol=0.5)
    np.testing.assert_allclose(got[2:], sk.covariances_[2:], rtol=1e-8)
    np.testing.assert_allclose(got[2:], variances[2:], rtol=1e-10)
