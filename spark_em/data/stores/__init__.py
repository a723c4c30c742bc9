"""Block stores: where one fit's validated feature blocks live.

* :class:`LocalFileStore` -- local block files (classic ``local[...]``/``local-cluster``);
* :class:`ParquetStore` -- plain Parquet scans: tasks read their own row groups;
* :class:`SparkCacheStore` -- Spark's cache (clusters, Spark Connect, any DataFrame).

:func:`choose_store` picks one from the session's :class:`~spark_em.data.env.SparkEnv` and the
``blockCache`` Param, once per fit.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame

from ..env import SparkEnv
from .base import BlockStore
from .local_files import LocalFileStore
from .parquet import ParquetStore, ParquetUnavailable, column_spec
from .parquet_scan import plain_parquet_scan
from .spark_cache import SparkCacheStore

__all__ = ["BLOCK_CACHES", "BlockStore", "LocalFileStore", "ParquetStore", "SparkCacheStore",
           "choose_store"]

log = logging.getLogger("spark_em")

BLOCK_CACHES = ("auto", "local", "spark", "parquet")


def check_block_cache(value: str) -> str:
    if value not in BLOCK_CACHES:
        raise ValueError(f"blockCache must be one of {BLOCK_CACHES}, got {value!r}")
    return value


def choose_store(
    env: SparkEnv, block_cache: str, df: DataFrame, selected: DataFrame, features,
    weight_col, dimension, aggregation_depth: int,
) -> BlockStore:
    """The store of one fit (not yet opened).

    ``auto``: local block files on a local master; else the files themselves when ``df`` is
    a plain Parquet scan that the executors can read; else Spark's cache.  An explicit
    value that cannot work in this session raises ValueError naming the reason.
    ``dimension(d=None)`` checks a feature dimension, or finds it with a Spark job.
    """
    spark = df.sparkSession
    check_block_cache(block_cache)
    if isinstance(features, (list, tuple)):  # d is the number of columns: no job needed
        check = dimension

        def dimension(d=None):
            return check(len(features))

    def args():
        return spark, env, dimension(), aggregation_depth

    if block_cache == "local" or (block_cache == "auto" and env.local_master):
        if env.connect or not env.local_master:
            raise ValueError(
                "blockCache='local' needs classic Spark with a local master (local[*] or "
                f"local-cluster), where tasks can read this process's files; this session "
                f"is {env.kind} (master {env.master!r}). Use 'auto', 'spark' or 'parquet'."
            )
        return LocalFileStore(*args(), selected)
    if block_cache == "spark":
        return SparkCacheStore(*args(), selected)
    scan = plain_parquet_scan(df, env)
    spec = column_spec(df, features, weight_col) if not isinstance(scan, str) else scan
    reason = scan if isinstance(scan, str) else (spec if isinstance(spec, str) else None)
    if reason is None:
        try:
            return ParquetStore(spark, env, dimension, aggregation_depth, scan, spec)
        except ParquetUnavailable as exc:
            reason = str(exc)
            if block_cache == "parquet":
                raise ValueError(f"blockCache='parquet': {reason}") from None
            log.warning("spark-em: blocks in Spark's cache, not read from the Parquet files: %s",
                        reason)
            return SparkCacheStore(*args(), selected)
    if block_cache == "parquet":
        raise ValueError(
            "blockCache='parquet' needs the DataFrame to be a plain Parquet scan "
            f"(spark.read.parquet(...), optionally .select(columns)); {reason}"
        )
    log.info("spark-em: blocks in Spark's cache (the input is not read from files: %s)", reason)
    return SparkCacheStore(*args(), selected)
