"""The Params of GaussianMixture and GaussianMixtureModel: pyspark.ml's shared Params where
spark-em means the same thing, defaults as sklearn and MLlib have them, getters and setters,
and Params kept through save and load."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.param.shared import (
    HasAggregationDepth,
    HasFeaturesCol,
    HasHandleInvalid,
    HasMaxIter,
    HasPredictionCol,
    HasProbabilityCol,
    HasSeed,
    HasTol,
    HasWeightCol,
)
from sklearn.mixture import GaussianMixture as SkGM

from spark_em import GaussianMixture, GaussianMixtureModel
from spark_em.params import DEFAULT_SEED

# mixin -> the Param it defines, used unchanged by spark-em
SHARED_AS_IS = {
    HasMaxIter: "maxIter",
    HasTol: "tol",
    HasAggregationDepth: "aggregationDepth",
    HasHandleInvalid: "handleInvalid",
    HasPredictionCol: "predictionCol",
    HasProbabilityCol: "probabilityCol",
}
# redefined because pyspark's converter refuses a value spark-em accepts
SHARED_REDEFINED = {
    HasSeed: ("seed", None),
    HasWeightCol: ("weightCol", None),
    HasFeaturesCol: ("featuresCol", ["a", "b"]),
}

# every Param: (default, a value that is not the default)
PARAMS = {
    "k": (2, 4),
    "covarianceType": ("full", "diag"),
    "maxIter": (100, 7),
    "tol": (1e-3, 0.5),
    "regCovar": (1e-6, 1e-3),
    "initMode": ("sample-em", "random"),
    "initTrials": (10, 3),
    "initMaxIter": (50, 5),
    "nInit": (1, 3),
    "seed": (42, None),  # a fixed default: reproducible unless seed=None is set
    "initialModel": (None, "model"),  # "model": a GaussianMixtureModel, built in the test
    "aggregationDepth": (2, 3),
    "initSampleSize": (10_000, 50),
    "blockCache": ("auto", "spark"),
    "dtype": ("float64", "float32"),
    "handleInvalid": ("error", "skip"),
    "missingValues": ("invalid", "marginalize"),
    "featuresCol": ("features", ["x", "y"]),
    "weightCol": (None, "w"),
    "segmentCol": (None, "day"),
    "predictionCol": ("prediction", "p"),
    "probabilityCol": ("probability", "q"),
    "logLikelihoodCol": (None, "l"),
}
COLUMN_PARAMS = ("featuresCol", "weightCol", "predictionCol", "probabilityCol", "logLikelihoodCol")
# the model carries every Param of the fit but these (covarianceType is its plain value)
NOT_ON_MODEL = ("covarianceType", "initialModel")


def small_model() -> GaussianMixtureModel:
    return GaussianMixtureModel.fromParameters(
        [0.25, 0.75], np.array([[0.0, 1.0], [2.0, -1.0]]), np.array([0.5, 2.0]), "spherical"
    )


def value_of(name: str, value):
    return small_model() if value == "model" and name == "initialModel" else value


def test_shared_params_are_pyspark_ones():
    gm, model = GaussianMixture(), small_model()
    for mixin, name in SHARED_AS_IS.items():
        assert isinstance(gm, mixin)
        ours, theirs = getattr(gm, name), getattr(mixin, name)
        assert (ours.name, ours.doc) == (theirs.name, theirs.doc)
        assert ours.typeConverter is theirs.typeConverter
        assert ours.parent == gm.uid
    for mixin in (HasFeaturesCol, HasWeightCol, HasPredictionCol, HasProbabilityCol):
        assert isinstance(model, mixin)
    assert model.predictionCol.doc == HasPredictionCol.predictionCol.doc


def test_redefined_shared_params_accept_what_pyspark_refuses():
    gm = GaussianMixture()
    for mixin, (name, value) in SHARED_REDEFINED.items():
        assert isinstance(gm, mixin) and getattr(gm, name).name == name
        with pytest.raises(TypeError):
            getattr(mixin, name).typeConverter(value)
        gm.set(getattr(gm, name), value)
        assert gm.getOrDefault(name) == value
    # seed's default is not HasSeed's (a hash of the class name, different in each process)
    # but a documented constant
    assert GaussianMixture().getSeed() == DEFAULT_SEED == 42
    assert HasSeed().getSeed() == hash("HasSeed")


def test_defaults_are_sklearn_and_mllib_ones():
    gm = GaussianMixture()
    sk = SkGM().get_params()
    assert (
        gm.getMaxIter(),
        gm.getTol(),
        gm.getRegCovar(),
        gm.getNInit(),
        gm.getCovarianceType(),
    ) == (
        sk["max_iter"],
        sk["tol"],
        sk["reg_covar"],
        sk["n_init"],
        sk["covariance_type"],
    )
    # the start is the one default that differs: searched on the sample (issue 17), while
    # sklearn's k-means start stays available under its name
    assert gm.getInitMode() == "sample-em" and sk["init_params"] == "kmeans"
    assert (gm.getInitTrials(), gm.getInitMaxIter()) == (10, 50)

    class Shared(HasAggregationDepth, HasFeaturesCol, HasPredictionCol, HasProbabilityCol):
        pass

    shared = Shared()
    for name in ("aggregationDepth", "featuresCol", "predictionCol", "probabilityCol"):
        assert gm.getOrDefault(name) == shared.getOrDefault(name), name


def test_every_param_getter_setter_default_round_trip():
    gm = GaussianMixture()
    assert sorted(p.name for p in gm.params) == sorted(PARAMS)
    for name, (default, other) in PARAMS.items():
        other = value_of(name, other)
        getter = getattr(gm, f"get{name[0].upper()}{name[1:]}")
        setter = getattr(gm, f"set{name[0].upper()}{name[1:]}")
        assert getter() == default and not gm.isSet(name), name
        assert setter(other) is gm
        assert getter() == other, name
        assert GaussianMixture(**{name: other}).getOrDefault(name) == other, name
        assert gm.copy().getOrDefault(name) == gm.getOrDefault(name), name
        gm.clear(getattr(gm, name))
        assert getter() == default, name
    # the model has the fit's Params with their getters, and the column Params' setters
    model = small_model()
    assert sorted(p.name for p in model.params) == sorted(set(PARAMS) - set(NOT_ON_MODEL))
    for name in set(PARAMS) - set(NOT_ON_MODEL) - set(COLUMN_PARAMS):
        cap = f"{name[0].upper()}{name[1:]}"
        expected = 2 if name == "k" else PARAMS[name][0]  # k: the model's own
        assert getattr(model, f"get{cap}")() == expected, name
    assert model.getCovarianceType() == model.covarianceType == "spherical"
    for name in COLUMN_PARAMS:
        default, other = PARAMS[name]
        cap = f"{name[0].upper()}{name[1:]}"
        assert getattr(model, f"get{cap}")() == default
        assert getattr(model, f"set{cap}")(other) is model
        assert getattr(model, f"get{cap}")() == other


def test_saved_then_loaded_estimator_and_model_keep_their_params(spark, tmp_path):
    gm = GaussianMixture(**{name: value_of(name, other) for name, (_, other) in PARAMS.items()})
    gm.write().save(str(tmp_path / "estimator"))
    back = GaussianMixture.load(str(tmp_path / "estimator"))
    assert back.uid == gm.uid
    for name in PARAMS:
        assert back.isSet(name), name
        if name == "initialModel":
            np.testing.assert_array_equal(back.getInitialModel().means, gm.getInitialModel().means)
        else:
            assert back.getOrDefault(name) == gm.getOrDefault(name), name
    # unset Params come back unset, with today's defaults
    plain = GaussianMixture(k=3)
    plain.write().save(str(tmp_path / "plain"))
    back = GaussianMixture.load(str(tmp_path / "plain"))
    assert back.getK() == 3
    for name, (default, _) in PARAMS.items():
        if name != "k":
            assert not back.isSet(name) and back.getOrDefault(name) == default, name

    model = small_model()
    for name in COLUMN_PARAMS:
        model.set(model.getParam(name), PARAMS[name][1])
    model.write().save(str(tmp_path / "model"))
    loaded = GaussianMixtureModel.load(str(tmp_path / "model"))
    for name in COLUMN_PARAMS:
        assert loaded.getOrDefault(name) == PARAMS[name][1], name


# ----------------------------------------------------------------- one table of Params
def test_the_param_table_is_what_the_api_the_checks_and_the_jobs_use():
    """Every Param once (spark_em.params.PARAMS): the stages' Params, defaults and
    constructor keywords, the checks, each job's flag and the README's list come from it."""
    import inspect
    from pathlib import Path

    from spark_em.cli.main import commands
    from spark_em.params import PARAMS, markdown_table

    gm = GaussianMixture()
    assert [p.name for p in PARAMS] == list(PARAMS_BY_NAME)
    signature = inspect.signature(GaussianMixture.__init__)
    for p in PARAMS:
        assert gm.getOrDefault(p.name) == p.default, p.name
        assert signature.parameters[p.name].default == p.default, p.name
        assert gm.getParam(p.name).doc == p.description, p.name
        for bad in BAD_VALUES.get(p.name, ()):
            with pytest.raises(ValueError, match=p.name):
                GaussianMixture(**{p.name: bad})._settings()
    jobs = commands()
    for p in PARAMS:
        for job in ("fit", "select", "score"):
            options = {o.key: o for o in jobs[job].options}
            if job not in p.jobs:
                continue
            o = options[p.flag]
            assert (o.param, o.default, tuple(o.choices)) == (p.name, p.default, p.allowed), (
                job,
                p.name,
            )
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert markdown_table() in readme


PARAMS_BY_NAME = {
    name: None
    for name in (
        "k",
        "covarianceType",
        "maxIter",
        "tol",
        "regCovar",
        "initMode",
        "initTrials",
        "initMaxIter",
        "nInit",
        "seed",
        "initSampleSize",
        "aggregationDepth",
        "blockCache",
        "dtype",
        "handleInvalid",
        "missingValues",
        "initialModel",
        "featuresCol",
        "weightCol",
        "segmentCol",
        "predictionCol",
        "probabilityCol",
        "logLikelihoodCol",
    )
}
BAD_VALUES = {
    "k": (0,),
    "covarianceType": ("ful",),
    "maxIter": (-1,),
    "tol": (-1.0,),
    "regCovar": (float("inf"),),
    "initMode": ("x",),
    "initTrials": (0,),
    "initMaxIter": (0,),
    "nInit": (0,),
    "seed": (2**63,),
    "initSampleSize": (0,),
    "aggregationDepth": (0,),
    "blockCache": ("memory",),
    "dtype": ("float16", "double"),
    "handleInvalid": ("keep",),
    "missingValues": ("impute",),
}
