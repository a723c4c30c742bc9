"""A job's input DataFrame: Parquet paths or globs (``--input``), a catalog table
(``--table``) or generated demo data (``--demo``, fit only), then ``--where`` and
``--sample-fraction``; and the schema checks that need no Spark job (the features and
weight columns exist and are numeric), so a wrong column fails in a second.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass

from .exit_codes import DataError, UsageError


@dataclass
class Input:
    """The DataFrame to fit or score, the features it is read with and where it came from."""

    df: object
    features: str | list[str]
    weight_col: str | None
    description: str


def check_source(settings, allow_demo: bool = False) -> None:
    """Exactly one of --input, --table (or --demo): before Spark starts."""
    given = [k for k in ("input", "table") if settings.get(k)]
    if allow_demo and settings.get("demo"):
        given.append("demo")
    if len(given) > 1:
        raise UsageError(" and ".join(f"--{k}" for k in given) + " exclude each other: give one")
    if not given:
        alternatives = "--input PATH or --table NAME" + (" (or --demo)" if allow_demo else "")
        raise UsageError(f"no input: give {alternatives}")


def read_input(spark, settings, default_features="features") -> Input:
    """The input DataFrame after --where and --sample-fraction; DataError if it is missing."""
    from pyspark.errors import AnalysisException

    try:
        if settings.get("table"):
            name = settings["table"]
            df, what = spark.table(name), f"table {name}"
        else:
            paths = settings["input"]
            _check_paths(spark, paths)
            df, what = spark.read.parquet(*paths), ", ".join(paths)
    except AnalysisException as exc:
        from .exit_codes import classify

        raise DataError(classify(exc)[1]) from exc
    return _refine(df, what, settings, default_features)


def _check_paths(spark, paths: list[str]) -> None:
    """A missing input path fails here in one line (Spark's reader would first log a WARN
    with a Java stack trace).  On Spark Connect the reader's own error says it."""
    from ..io.filesystem import hadoop_paths

    ops = hadoop_paths(spark)
    if ops is None:
        return
    for path in paths:
        if not ops.matches(path):
            raise DataError(f"input path not found: {path}")


def _refine(df, what: str, settings, default_features) -> Input:
    from ..data.columns import feature_array, weight_column

    if settings.get("where"):
        from pyspark.errors import AnalysisException

        try:
            df = df.where(settings["where"])
            _ = df.schema  # analyse now: a bad column or SQL fails here, not after the fit
        except AnalysisException as exc:
            from .exit_codes import classify

            code, message = classify(exc)
            raise (UsageError if code == 2 else DataError)(f"--where: {message}") from exc
        what += f" where {settings['where']}"
    if settings.get("sample-fraction"):
        df = df.sample(fraction=settings["sample-fraction"], seed=settings.get("seed", 0))
        what += f" (sample {settings['sample-fraction']:g})"
    features = settings.get("features") or default_features
    weight = settings.get("weight-col")
    feature_array(df, features)  # InvalidInputError (exit 1) names a missing/bad column
    weight_column(df, weight)
    return Input(df, features, weight, what)


@contextlib.contextmanager
def demo_input(spark, env, settings):
    """Generated mixture data (``demo-rows`` x ``demo-dim``, ``k`` components): a Parquet
    file in a temporary directory removed afterwards, or an in-memory DataFrame where
    the executors cannot read this machine's files (clusters, Spark Connect)."""
    from ..data.datasets import sample_mixture, to_dataframe, write_parquet

    rows, dim, k = settings["demo-rows"], settings["demo-dim"], settings["k"]
    X, _, truth = sample_mixture(rows, k=k, d=dim, seed=settings["seed"])
    print("demo data: true weights " + ", ".join(f"{w:.3f}" for w in truth["weights"]))
    if env.connect or not env.local_master:
        yield _refine(
            to_dataframe(spark, X),
            f"demo data ({rows} rows, d={dim}, k={k}, in memory)",
            settings,
            "features",
        )
        return
    tmpdir = tempfile.mkdtemp(prefix="spark-em-demo-")
    try:
        path = os.path.join(tmpdir, "demo.parquet")
        write_parquet(X, path)
        yield _refine(
            spark.read.parquet(path),
            f"demo data ({rows} rows, d={dim}, k={k})",
            settings,
            "features",
        )
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def load_model(path: str, flag: str):
    """A saved GaussianMixtureModel; DataError naming the flag and path if it cannot be
    read."""
    from .. import GaussianMixtureModel
    from .exit_codes import classify

    try:
        return GaussianMixtureModel.load(path)
    except Exception as exc:
        _, message = classify(exc)
        if "not found" in message or "does not exist" in message.lower():
            message = "no saved model there (path not found)"
        raise DataError(f"--{flag} {path}: cannot load a spark-em model: {message}") from exc
