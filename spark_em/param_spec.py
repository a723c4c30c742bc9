"""The machinery of the Param table (:data:`spark_em.params.PARAMS`): what one row says
(:class:`ParamSpec`), the checks and converters rows use, and what is built from rows --
pyspark ``Param`` objects with getters and setters (:func:`declare`), defaults
(:func:`set_defaults`) and the estimator's checks (:func:`check_params`).  The rows
themselves live in :mod:`spark_em.params`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyspark.ml.param import Param, Params, TypeConverters

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
def features_col(value: Any) -> str | list[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise TypeError(f"featuresCol must be a column name or a list of column names, got {value!r}")


def optional_int(value: Any) -> int | None:
    return None if value is None else TypeConverters.toInt(value)


def optional_string(value: Any) -> str | None:
    # None is a valid value (no weight column, no log-likelihood column); pyspark's own
    # toString rejects it, which broke loading a saved stage whose param was set to None.
    return None if value is None else TypeConverters.toString(value)


def identity(value: Any) -> Any:
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
