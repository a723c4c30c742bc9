"""Every setting of every job, declared once: its flag, its TOML table, its type, its default
and its check.  :mod:`spark_em.cli.config` builds the argument parser, validates the TOML
file and merges both from these declarations, so a flag and its file key cannot disagree.

The TOML key of a setting is its flag without the dashes (``--max-iter`` -> ``max-iter``),
inside the table named by ``section``.  Groups of settings shared by several jobs (input,
Spark, MLflow, predictions) are lists that each job's command concatenates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..param_spec import COLUMNS, FLOAT, INT, STR
from ..params import PARAMS

# the value kinds, re-exported for the commands and the config parser
__all__ = ["BOOL", "COLUMNS", "FLOAT", "INT", "PATHS", "STR"]

# value kinds: how a flag string and a TOML value become a setting (besides the Param
# table's int, float, str and columns)
BOOL, PATHS = "bool", "paths"


@dataclass(frozen=True)
class Option:
    """One setting.

    * ``key``: the flag without ``--`` and the TOML key (``max-iter``);
    * ``section``: the TOML table (``input``, ``model``, ``output``, ``run``, ``demo``, ...);
    * ``kind``: ``int``, ``float``, ``str``, ``bool``, ``paths`` (one or more strings) or
      ``columns`` (a column name or a list of them; on the command line comma-separated);
    * ``check``: returns what is wrong with a value of the right kind, or None;
    * ``param``: the ``GaussianMixture`` Param it sets, if any.
    """

    key: str
    section: str
    kind: str
    help: str
    default: Any = None
    choices: tuple = ()
    check: Callable[[Any], str | None] | None = None
    param: str | None = None
    metavar: str | None = None


def at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be >= {low:g}, got {v!r}"


def non_negative_finite(v: float) -> str | None:
    return None if (math.isfinite(v) and v >= 0) else f"must be a finite number >= 0, got {v!r}"


def fraction(v: float) -> str | None:
    return None if 0 < v <= 1 else f"must be in (0, 1], got {v!r}"


def non_empty(v) -> str | None:
    if isinstance(v, str):
        return None if v.strip() else "must not be empty"
    return None if v and all(str(x).strip() for x in v) else "must not be empty"


# --- input: shared by fit, score (and select) --------------------------------------------
INPUT = [
    Option(
        "input",
        "input",
        PATHS,
        "Parquet input: one or more paths or globs (any URI Spark reads)",
        check=non_empty,
        metavar="PATH",
    ),
    Option(
        "base-path",
        "input",
        STR,
        "root of a Hive-style partitioned data set (/lake/features for "
        "/lake/features/day=2026-12-02): its key=value directories become columns; default: "
        "the part of the --input path before its first key=value directory",
        check=non_empty,
        metavar="PATH",
    ),
    Option(
        "table",
        "input",
        STR,
        "catalog table to read instead of --input",
        check=non_empty,
        metavar="NAME",
    ),
    Option(
        "where",
        "input",
        STR,
        "SQL filter applied to the input rows (run with the job's permissions: never build "
        "it from untrusted input)",
        check=non_empty,
        metavar="SQL",
    ),
    Option(
        "sample-fraction",
        "input",
        FLOAT,
        "use a random fraction of the input rows (seeded by --seed)",
        check=fraction,
        metavar="F",
    ),
    Option(
        "features",
        "input",
        COLUMNS,
        "features: a vector or numeric array column, or comma-separated numeric columns",
        check=non_empty,
        metavar="COLS",
    ),
    Option(
        "weight-col",
        "input",
        STR,
        "non-negative row weights column",
        check=non_empty,
        metavar="COL",
    ),
]


# --- the estimator's Params: one option per Param of spark_em.params.PARAMS with a flag ---
def param_options(job: str) -> list[Option]:
    """The options of ``job`` that set a Param, from the Param table (flag, TOML table,
    default, allowed values, check and help are the table's)."""
    return [
        Option(
            p.flag, p.section, p.kind, p.description, p.default, p.allowed, p.check, param=p.name
        )
        for p in PARAMS
        if job in p.jobs
    ]


CHECKPOINT = [
    Option(
        "checkpoint-dir",
        "model",
        STR,
        "checkpoint every EM iteration in this local "
        "directory; run the same job again to resume after the last finished iteration "
        "(a finished fit removes it)",
        check=non_empty,
        metavar="DIR",
    ),
    Option(
        "discard-checkpoint",
        "model",
        BOOL,
        "start afresh, discarding what --checkpoint-dir holds (another fit's state)",
        False,
    ),
]

# --- predictions: fit --predictions-out and score ------------------------------------------
PREDICTIONS = [
    Option(
        "probability-format",
        "output",
        STR,
        "probability column as array<double>, Spark ML vector, or left out",
        "array",
        ("array", "vector", "none"),
    ),
]

# --- outputs of fit, select and update: replaced only with this flag (score: --mode) ------
OVERWRITE = Option(
    "overwrite",
    "output",
    BOOL,
    "replace existing outputs (only ones holding what this job writes)",
    False,
)

# --- the Spark session, logging and MLflow: every job -----------------------------------
LOG_LEVELS = ("ALL", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF")
RUN = [
    Option(
        "master",
        "run",
        STR,
        "Spark master of the embedded session (default local[*]; "
        "under spark-submit, spark-submit's --master)",
        check=non_empty,
        metavar="URL",
    ),
    Option(
        "remote",
        "run",
        STR,
        "Spark Connect URL (sc://host:15002) instead of --master",
        check=non_empty,
        metavar="URL",
    ),
    Option(
        "spark-log-level",
        "run",
        STR,
        "Spark's own log level, set before the session starts",
        "WARN",
        LOG_LEVELS,
    ),
    Option("quiet", "run", BOOL, "no progress lines", False),
    Option("verbose", "run", BOOL, "show the stack trace of an error", False),
]
MLFLOW = [
    Option(
        "mlflow",
        "mlflow",
        BOOL,
        "log parameters, metrics, report and model to MLflow (the mlflow extra)",
        False,
    ),
    Option(
        "mlflow-experiment",
        "mlflow",
        STR,
        "MLflow experiment name",
        "spark-em",
        check=non_empty,
        metavar="NAME",
    ),
    Option(
        "mlflow-tracking-uri",
        "mlflow",
        STR,
        "MLflow tracking URI (default: MLFLOW_TRACKING_URI)",
        check=non_empty,
        metavar="URI",
    ),
    Option("mlflow-run-name", "mlflow", STR, "MLflow run name", check=non_empty, metavar="NAME"),
    Option(
        "mlflow-register",
        "mlflow",
        STR,
        "register the logged model as a new version of this registered model",
        check=non_empty,
        metavar="NAME",
    ),
]
