"""Every Param of :class:`~spark_em.GaussianMixture` and :class:`~spark_em.GaussianMixtureModel`,
declared once in :data:`PARAMS`: its name, default, doc, allowed values or check, and the
flag and TOML table a job takes it from.

Everything else is built from that table: the pyspark ``Param`` objects and their getters
and setters (:func:`declare`), the defaults, the estimator's checks (:func:`check_params`),
the jobs' options (:mod:`spark_em.cli.options`) and the README's parameter list
(:func:`markdown_table`, checked by a test).  Where pyspark.ml has a shared Param
(``pyspark.ml.param.shared``) with spark-em's meaning, it is used as is -- name, doc and
converter -- so that spark-em's stages answer ``isinstance(gm, HasMaxIter)`` as MLlib's do;
three shared Params (``seed``, ``featuresCol``, ``weightCol``) are redefined because spark-em
accepts values pyspark's converters refuse (None, a list of columns).
"""

from __future__ import annotations

from pyspark.ml.param import TypeConverters
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

from .core.covariance import COVARIANCE_TYPES
from .core.initialisation import INIT_MODES
from .core.missing import MISSING_VALUES
from .core.precision import DTYPES
from .core.tuning import POLISH_MAX_ITER, SEARCH_MIN_TOL, SEARCH_TOL_FACTOR
from .data.stores import BLOCK_CACHES
from .param_spec import (
    COLUMNS,
    FLOAT,
    INT,
    MODEL,
    ParamSpec,
    at_least,
    check_params,
    declare,
    features_col,
    identity,
    non_negative,
    optional_int,
    optional_string,
    set_defaults,
    spark_long_or_none,
)

__all__ = [
    "DEFAULT_SEED",
    "PARAMS",
    "ParamSpec",
    "check_params",
    "declare",
    "markdown_table",
    "spec",
]

DEFAULT_SEED = 42
"""The default ``seed``: fits are reproducible unless ``seed=None`` is set explicitly.  A
constant, not pyspark's ``HasSeed`` default (``hash`` of the class name, which Python
randomises in each process unless ``PYTHONHASHSEED`` is set)."""

HANDLE_INVALID = ("error", "skip")


FIT_JOBS = ("fit", "select")

PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "k",
        2,
        "number of components (>= 1)",
        TypeConverters.toInt,
        check=at_least(1),
        flag="k",
        jobs=("fit",),
        kind=INT,
    ),
    ParamSpec(
        "covarianceType",
        "full",
        f"covariance type, one of {COVARIANCE_TYPES}",
        TypeConverters.toString,
        allowed=COVARIANCE_TYPES,
        flag="covariance-type",
        jobs=("fit",),
        on_model=False,
    ),
    ParamSpec(
        "maxIter",
        100,
        shared=HasMaxIter,
        check=at_least(0),
        flag="max-iter",
        jobs=FIT_JOBS,
        kind=INT,
        fingerprint=False,
    ),
    ParamSpec(
        "tol", 1e-3, shared=HasTol, check=non_negative, flag="tol", jobs=FIT_JOBS, kind=FLOAT
    ),
    ParamSpec(
        "regCovar",
        1e-6,
        "non-negative regularisation added to covariance diagonals",
        TypeConverters.toFloat,
        check=non_negative,
        flag="reg-covar",
        jobs=FIT_JOBS,
        kind=FLOAT,
    ),
    ParamSpec(
        "initMode",
        "sample-em",
        f"initialisation, one of {INIT_MODES}: 'sample-em' runs initTrials short EM runs "
        "(k-means and random starts) on the initSampleSize-row sample and starts from the "
        "best, polished on the sample; 'kmeans' is scikit-learn's default, 'random' MLlib's",
        TypeConverters.toString,
        allowed=INIT_MODES,
        flag="init-mode",
        jobs=FIT_JOBS,
    ),
    ParamSpec(
        "initTrials",
        10,
        "starts tried on the sample by initMode='sample-em' (cost: about "
        "0.4 * initTrials * initMaxIter E-steps over the sample's rows, on the driver, "
        f"and at most {POLISH_MAX_ITER} more to polish the best start)",
        TypeConverters.toInt,
        check=at_least(1),
        flag="init-trials",
        jobs=FIT_JOBS,
        kind=INT,
    ),
    ParamSpec(
        "initMaxIter",
        50,
        "EM iterations on the sample for the best starts of initMode='sample-em' (a race "
        "halves the starts after a quarter and after half of them; a start stops earlier "
        f"when its change is below tol / {1 / SEARCH_TOL_FACTOR:g}, at least "
        f"{SEARCH_MIN_TOL:.0e})".replace("e-0", "e-"),
        TypeConverters.toInt,
        check=at_least(1),
        flag="init-max-iter",
        jobs=FIT_JOBS,
        kind=INT,
    ),
    ParamSpec(
        "nInit",
        1,
        "number of initialisations; the best log-likelihood is kept",
        TypeConverters.toInt,
        check=at_least(1),
        flag="n-init",
        jobs=FIT_JOBS,
        kind=INT,
    ),
    ParamSpec(
        "seed",
        DEFAULT_SEED,
        f"random seed (default {DEFAULT_SEED}; None: a different fit each time)",
        optional_int,
        check=spark_long_or_none,
        flag="seed",
        jobs=FIT_JOBS,
        kind=INT,
    ),
    ParamSpec(
        "initSampleSize",
        10_000,
        "rows sampled (with probability proportional to weight) for the initialisation",
        TypeConverters.toInt,
        check=at_least(1),
        flag="init-sample-size",
        jobs=FIT_JOBS,
        kind=INT,
    ),
    ParamSpec(
        "aggregationDepth",
        2,
        shared=HasAggregationDepth,
        check=at_least(1),
        flag="aggregation-depth",
        jobs=FIT_JOBS,
        kind=INT,
        fingerprint=False,
    ),
    ParamSpec(
        "blockCache",
        "auto",
        "where the prepared feature blocks live during a fit: 'auto' (local files in "
        "local mode, the Parquet files of a plain Parquet scan, else Spark's cache), "
        "'local', 'parquet' or 'spark'",
        TypeConverters.toString,
        allowed=BLOCK_CACHES,
        flag="block-cache",
        jobs=FIT_JOBS,
        fingerprint=False,
    ),
    ParamSpec(
        "dtype",
        "float64",
        f"floating-point type of the stored feature blocks and the E-step, one of {DTYPES}: "
        "'float32' halves the blocks' memory and runs the E-step's GEMMs in single "
        "precision (rows centred in float64 first; statistics, M-step and parameters stay "
        "float64)",
        TypeConverters.toString,
        allowed=DTYPES,
        flag="dtype",
        jobs=FIT_JOBS,
    ),
    ParamSpec(
        "handleInvalid",
        "error",
        shared=HasHandleInvalid,
        allowed=HANDLE_INVALID,
        flag="handle-invalid",
        section="input",
        jobs=FIT_JOBS + ("score",),
        model_setter=True,
    ),
    ParamSpec(
        "missingValues",
        "invalid",
        "NaN and null features: 'invalid' (the row is invalid, see handleInvalid) or "
        "'marginalize' (missing values, integrated out: EM and scoring use each row's "
        "observed features; rows with none are left out)",
        TypeConverters.toString,
        allowed=MISSING_VALUES,
        flag="missing-values",
        section="input",
        jobs=FIT_JOBS + ("score",),
        model_setter=True,
    ),
    ParamSpec(
        "initialModel",
        None,
        "a GaussianMixtureModel to start EM from (warm start)",
        identity,
        kind=MODEL,
        on_model=False,
    ),
    ParamSpec(
        "featuresCol",
        "features",
        "features: a Vector column, an array<double>/array<float> column, or a list of "
        "numeric column names",
        features_col,
        kind=COLUMNS,
        model_setter=True,
    ),
    ParamSpec(
        "weightCol",
        None,
        "optional column of non-negative row weights",
        optional_string,
        model_setter=True,
    ),
    ParamSpec(
        "segmentCol",
        None,
        "optional column naming each row's segment (a date, a day number, a batch id: "
        "string, integer or date): the model keeps each segment's statistics, and "
        "model.update(df) E-steps only the segments in df (incremental EM)",
        optional_string,
        flag="segment-col",
        section="input",
        jobs=("fit",),
    ),
    ParamSpec(
        "predictionCol", "prediction", shared=HasPredictionCol, model_setter=True, fingerprint=False
    ),
    ParamSpec(
        "probabilityCol",
        "probability",
        shared=HasProbabilityCol,
        model_setter=True,
        fingerprint=False,
    ),
    ParamSpec(
        "logLikelihoodCol",
        None,
        "optional output column: per-row log-density log p(x) (double)",
        optional_string,
        flag="log-likelihood-col",
        section="output",
        jobs=("fit", "score"),
        model_setter=True,
        fingerprint=False,
    ),
)

# pyspark mixins of the Params redefined here: kept as base classes, so that
# isinstance(gm, HasSeed) holds as for MLlib's stages
REDEFINED_MIXINS = (HasSeed, HasFeaturesCol, HasWeightCol)


def spec(name: str) -> ParamSpec:
    return next(s for s in PARAMS if s.name == name)


def markdown_table() -> str:
    """The README's parameter list, from the table."""
    lines = ["| Param | default | job flag | meaning |", "|---|---|---|---|"]
    for s in PARAMS:
        flag = f"`--{s.flag}` ({', '.join(s.jobs)})" if s.flag else ""
        doc = s.description.replace("|", "\\|")
        lines.append(f"| `{s.name}` | `{s.default!r}` | {flag} | {doc} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------ the classes
_MIXINS = tuple(
    dict.fromkeys([s.shared for s in PARAMS if s.shared is not None] + list(REDEFINED_MIXINS))
)


@declare(tuple(s for s in PARAMS if s.on_model), setters=lambda s: s.model_setter)
class FitParams(*_MIXINS):
    """The Params a fit runs with, which the fitted model carries too (as MLlib's model
    does): every Param of :data:`PARAMS` but ``covarianceType`` (the model has it as the
    plain value ``model.covarianceType``) and ``initialModel``.  On the model only the
    column Params and ``handleInvalid`` have setters.

    ``handleInvalid`` (pyspark.ml's shared Param, as feature transformers have it):
    ``"error"`` (default) raises for rows with null, NaN, infinite or huge features, wrong
    vector lengths or bad weights; ``"skip"`` leaves them out of the fit and of
    ``score``/``bic``/``aic``, and gives them null outputs in ``transform``.  Rows whose
    features are null get null outputs in ``transform`` either way.

    ``tol`` is sklearn's rule, not MLlib's: EM stops when the change in the *mean* weighted
    log-likelihood per row is below ``tol``.  ``aggregationDepth`` may be 1 (no intermediate
    level), although the shared Param's doc says ">= 2" as MLlib requires.
    """

    def __init__(self) -> None:
        super().__init__()  # HasSeed sets its hash default here; the table's replaces it
        set_defaults(self)


@declare(PARAMS)
class GaussianMixtureParams(*_MIXINS):
    """The estimator's Params: every Param of :data:`PARAMS`."""

    def __init__(self) -> None:
        super().__init__()
        set_defaults(self)
