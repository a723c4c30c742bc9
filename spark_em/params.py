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

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyspark.ml.param import Param, Params, TypeConverters
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
from .data.stores import BLOCK_CACHES

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

# value kinds, shared with the jobs' options (spark_em.cli.options)
INT, FLOAT, STR, COLUMNS, MODEL = "int", "float", "str", "columns", "model"


# ------------------------------------------------------------------------ checks
def at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be >= {low:g}, got {v!r}"


def non_negative(v: float) -> str | None:
    return None if v >= 0 and math.isfinite(v) else f"must be a finite number >= 0, got {v!r}"


def spark_long_or_none(v) -> str | None:
    if v is None or -(2**63) <= v < 2**63:
        return None
    return (
        f"must be None or an integer from -2**63 to 2**63 - 1 (a Spark long, as MLlib's), got {v}"
    )


# ------------------------------------------------------------------------ converters
def _to_features_col(value: Any) -> str | list[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise TypeError(f"featuresCol must be a column name or a list of column names, got {value!r}")


def _to_optional_int(value: Any) -> int | None:
    return None if value is None else TypeConverters.toInt(value)


def _to_optional_string(value: Any) -> str | None:
    # None is a valid value (no weight column, no log-likelihood column); pyspark's own
    # toString rejects it, which broke loading a saved stage whose param was set to None.
    return None if value is None else TypeConverters.toString(value)


def _identity(value: Any) -> Any:
    return value


# ------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class ParamSpec:
    """One Param.

    * ``shared``: the pyspark mixin whose Param is used as is (its doc and converter);
      otherwise ``doc`` and ``converter`` define spark-em's own Param;
    * ``allowed`` / ``check``: the values accepted (``check`` returns what is wrong, or None);
    * ``flag`` / ``section`` / ``jobs``: the jobs' option (``--flag``, TOML table
      ``[section]``) and which jobs take it; ``kind`` its value kind there;
    * ``on_model``: the fitted model carries it; ``model_setter``: settable on the model;
    * ``fingerprint``: a checkpoint of a fit with another value is refused (values that
      change what a fit computes; not columns of outputs, not where blocks live).
    """

    name: str
    default: Any
    doc: str = ""
    converter: Callable | None = None
    shared: type | None = None
    allowed: tuple = ()
    check: Callable[[Any], str | None] | None = None
    flag: str | None = None
    section: str = "model"
    jobs: tuple[str, ...] = ()
    kind: str = STR
    on_model: bool = True
    model_setter: bool = False
    fingerprint: bool = True

    @property
    def description(self) -> str:
        """The doc (a shared Param's is pyspark's)."""
        if self.shared is not None:
            return getattr(self.shared, self.name).doc
        return self.doc

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (of the right type), or None."""
        if self.allowed and value not in self.allowed:
            return f"must be one of {self.allowed}, got {value!r}"
        return self.check(value) if self.check is not None else None


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
        "kmeans",
        f"initialisation, one of {INIT_MODES}",
        TypeConverters.toString,
        allowed=INIT_MODES,
        flag="init-mode",
        jobs=FIT_JOBS,
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
        _to_optional_int,
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
        _identity,
        kind=MODEL,
        on_model=False,
    ),
    ParamSpec(
        "featuresCol",
        "features",
        "features: a Vector column, an array<double>/array<float> column, or a list of "
        "numeric column names",
        _to_features_col,
        kind=COLUMNS,
        model_setter=True,
    ),
    ParamSpec(
        "weightCol",
        None,
        "optional column of non-negative row weights",
        _to_optional_string,
        model_setter=True,
    ),
    ParamSpec(
        "segmentCol",
        None,
        "optional column naming each row's segment (a date, a day number, a batch id: "
        "string, integer or date): the model keeps each segment's statistics, and "
        "model.update(df) E-steps only the segments in df (incremental EM)",
        _to_optional_string,
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
        _to_optional_string,
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


def _capitalised(name: str) -> str:
    return name[0].upper() + name[1:]


def declare(specs, setters: Callable[[ParamSpec], bool] = lambda s: True):
    """Class decorator: the ``Param`` objects of ``specs`` (pyspark's own for shared ones),
    a getter for each and a setter for those ``setters`` accepts, unless the class already
    defines them."""

    def decorate(cls):
        for s in specs:
            if s.shared is None:
                setattr(cls, s.name, Param(Params._dummy(), s.name, s.doc, s.converter))
            cap = _capitalised(s.name)
            if not hasattr(cls, f"get{cap}"):
                setattr(cls, f"get{cap}", _getter(s.name))
            if setters(s) and f"set{cap}" not in cls.__dict__:
                setattr(cls, f"set{cap}", _setter(s.name))
        cls._param_specs = tuple(specs)
        return cls

    return decorate


def _getter(name: str):
    def get(self):
        return self.getOrDefault(name)

    get.__name__ = f"get{_capitalised(name)}"
    get.__doc__ = f"The value of ``{name}`` (its default if unset)."
    return get


def _setter(name: str):
    def set_(self, value):
        return self._set(**{name: value})

    set_.__name__ = f"set{_capitalised(name)}"
    set_.__doc__ = f"Set ``{name}``; returns the stage."
    return set_


def set_defaults(stage: Params) -> None:
    """The table's defaults on ``stage`` (replacing any a pyspark mixin set)."""
    stage._setDefault(**{s.name: s.default for s in type(stage)._param_specs})


def check_params(stage: Params) -> None:
    """ValueError naming the first Param of ``stage`` whose value is not allowed."""
    for s in type(stage)._param_specs:
        problem = s.problem(stage.getOrDefault(s.name))
        if problem:
            raise ValueError(f"{s.name} {problem}")


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
