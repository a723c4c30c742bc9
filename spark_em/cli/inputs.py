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
    """The input DataFrame after --where and --sample-fraction; DataError if it is missing
    or cannot be read (one line in our words: a file that is not Parquet, ...)."""
    from .exit_codes import classify

    try:
        if settings.get("table"):
            name = settings["table"]
            df, what = spark.table(name), f"table {name}"
        else:
            paths = settings["input"]
            base = settings.get("base-path") or hive_base_path(paths)
            reader = spark.read if base is None else spark.read.option("basePath", base)
            df, what = reader.parquet(*_expanded(spark, paths)), ", ".join(paths)
            _ = df.schema
    except DataError:
        raise
    except Exception as exc:  # AnalysisException, or a failed schema inference in the JVM
        raise DataError(classify(exc)[1]) from exc
    return _refine(df, what, settings, default_features)


def hive_base_path(paths: list[str]) -> str | None:
    """The root of a Hive-style partitioned data set that ``paths`` lie in: each path up to
    its first ``key=value`` segment (``/lake/features`` for ``/lake/features/day=*``), so
    that Spark keeps ``day`` as a column when reading a leaf.  None when no path has such a
    segment; UsageError when the paths have different roots."""
    roots = set()
    for path in paths:
        parts = path.split("/")
        for i, part in enumerate(parts):
            key = part.split("=", 1)[0]
            if "=" in part and key and not set("*?[{") & set(key):
                roots.add("/".join(parts[:i]) or "/")
                break
    if len(roots) > 1:
        raise UsageError(
            f"--input paths lie under different partitioned roots ({', '.join(sorted(roots))}): "
            "give --base-path"
        )
    return roots.pop() if roots else None


def _expanded(spark, paths: list[str]) -> list[str]:
    """The paths the globs name, each checked to exist: a missing path or a glob that
    matches nothing fails here in one line (Spark's reader would log a warning with a
    Java stack trace for each).  On Spark Connect the server expands them."""
    from ..io.filesystem import hadoop_paths

    ops = hadoop_paths(spark)
    if ops is None:
        return list(paths)
    out = []
    for path in paths:
        found = ops.expand(path)
        if not found:
            raise DataError(f"input path not found: {path}")
        out += found if set("*?[{") & set(path) else [path]
    return out


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
