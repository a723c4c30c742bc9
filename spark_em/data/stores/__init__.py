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


# The driver lists a plain scan's row groups itself (reading every file's footer, one after
# the other) for the local-file store's first pass only up to this many local files; more,
# or files behind a URI (object stores), and that pass reads the input through Spark.
LOCAL_LISTING_MAX_FILES = 512


def parquet_layout(
    env: SparkEnv, block_cache: str, df, features, weight_col, keyed: bool = False
) -> ParquetLayout | None:
    """The row groups of ``df`` when it is a plain Parquet scan whose files the store that
    ``block_cache`` chooses will read itself; None otherwise.

    * The Parquet store (a cluster or Spark Connect): listed by one job on the executors,
      which shows they can open the files.  ``blockCache="parquet"`` on anything else is a
      ValueError saying why.
    * The local-file store (classic Spark, a local master; ``keyed``: a store that keeps
      segments apart, which reads its input through Spark): listed by the driver itself,
      no job, for up to LOCAL_LISTING_MAX_FILES local files; that store's first pass then
      reads the row groups directly (:class:`LocalFileStore`)."""
    if block_cache == "spark":
        return None
    if block_cache == "local" or (block_cache == "auto" and env.local_master):
        if env.connect or not env.local_master or keyed:
            return None  # (choose_store says why the local-file store cannot work here)
        try:
            scan = plain_parquet_scan(df, env)
            if len(scan.files) > LOCAL_LISTING_MAX_FILES or any("://" in f for f in scan.files):
                raise NotPlainScan("its files are many or not local")
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
