"""Block stores: where one fit's validated feature blocks live.

* :class:`LocalFileStore` -- local block files (classic ``local[...]``/``local-cluster``);
* :class:`ParquetStore` -- plain Parquet scans: tasks read their own row groups;
* :class:`SparkCacheStore` -- Spark's cache (clusters, Spark Connect, any DataFrame).

:func:`choose_store` picks one from the session's :class:`~spark_em.data.env.SparkEnv` and the
``blockCache`` Param, once per fit.
"""

from __future__ import annotations

import logging

from ..env import SparkEnv
from .base import BlockStore, StoreInput
from .local_files import LocalFileStore
from .parquet import (
    ParquetLayout,
    ParquetStore,
    ParquetUnavailable,
    column_spec,
    list_row_groups,
    list_row_groups_here,
)
from .parquet_scan import NotPlainScan, plain_parquet_scan
from .spark_cache import SparkCacheStore

__all__ = [
    "BLOCK_CACHES",
    "BlockStore",
    "LocalFileStore",
    "ParquetStore",
    "SparkCacheStore",
    "StoreInput",
    "choose_store",
    "parquet_layout",
]

log = logging.getLogger("spark_em")

BLOCK_CACHES = ("auto", "local", "spark", "parquet")
STORES = {s.name: s for s in (LocalFileStore, ParquetStore, SparkCacheStore)}


def parquet_layout(
    env: SparkEnv, block_cache: str, df, features, weight_col
) -> ParquetLayout | None:
    """The row groups the Parquet store would read (one listing job on the executors), when
    ``block_cache`` may choose that store and ``df`` is a plain Parquet scan the executors
    can read; None otherwise.  ``blockCache="parquet"`` on anything else is a ValueError
    saying why.

    Where the local-file store is chosen (classic Spark, local master), the row groups of a
    plain Parquet scan are listed by the driver itself, no job: that store's first pass
    then reads the files directly too (:class:`LocalFileStore`)."""
    if block_cache == "spark":
        return None
    if block_cache == "local" or (block_cache == "auto" and env.local_master):
        if env.connect or not env.local_master:
            return None  # choose_store says why the local-file store cannot work here
        try:
            scan = plain_parquet_scan(df, env)
            return list_row_groups_here(scan, column_spec(df, features, weight_col))
        except (NotPlainScan, ParquetUnavailable) as exc:
            log.info("spark-em: the first pass reads the input through Spark (%s)", exc)
            return None
    try:
        scan = plain_parquet_scan(df, env)
        return list_row_groups(df.sparkSession, env, scan, column_spec(df, features, weight_col))
    except NotPlainScan as exc:
        if block_cache == "parquet":
            raise ValueError(
                "blockCache='parquet' needs the DataFrame to be a plain Parquet scan "
                f"(spark.read.parquet(...), optionally .select(columns)); {exc}"
            ) from None
        log.info("spark-em: blocks in Spark's cache (the input is not read from files: %s)", exc)
    except ParquetUnavailable as exc:
        if block_cache == "parquet":
            raise ValueError(f"blockCache='parquet': {exc}") from None
        log.warning("spark-em: blocks in Spark's cache, not read from the Parquet files: %s", exc)
    return None


def choose_store(block_cache: str, source: StoreInput) -> BlockStore:
    """The store of one fit (not yet opened): local block files on a local master; else
    the files themselves when ``source`` has their layout (:func:`parquet_layout`); else
    Spark's cache.  An explicit ``blockCache`` that cannot work in this session raises
    ValueError naming the reason."""
    env = source.env
    if block_cache == "local" or (block_cache == "auto" and env.local_master):
        if env.connect or not env.local_master:
            raise ValueError(
                "blockCache='local' needs classic Spark with a local master (local[*] or "
                f"local-cluster), where tasks can read this process's files; this session "
                f"is {env.kind} (master {env.master!r}). Use 'auto', 'spark' or 'parquet'."
            )
        return LocalFileStore(source)
    if source.parquet is not None and block_cache in ("auto", "parquet"):
        return ParquetStore(source)
    return SparkCacheStore(source)
