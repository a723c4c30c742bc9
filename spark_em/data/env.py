"""What kind of Spark session a fit runs on, found once per fit.

This is the only module (with the block stores in :mod:`spark_em.data.stores`) that asks whether
a session is Spark Connect or looks at the master URL; everything else reads a
:class:`SparkEnv`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import SparkSession


def _is_connect(spark: SparkSession) -> bool:
    return type(spark).__module__.startswith("pyspark.sql.connect")


@dataclass(frozen=True)
class SparkEnv:
    """The session's kind, computed once (:meth:`of`).

    * ``connect``: a Spark Connect session (no SparkContext, no JVM on this side, no
      broadcast variables; parameters travel in closures).
    * ``local_master``: classic Spark whose executors run on this machine (``local[...]``
      or ``local-cluster[...]``), so tasks can read files this process writes.
    * ``master``: the master URL where it can be read (``None`` on Connect when the server
      does not tell).
    * ``default_parallelism``: task slots (classic), else the server's
      ``spark.default.parallelism`` or 2.
    * ``local_dir``: Spark's own per-application local directory on this machine (classic
      only): removed by Spark when the application shuts down.
    * ``app_id``: the Spark application id where known.
    """

    connect: bool
    local_master: bool
    master: str | None
    default_parallelism: int
    local_dir: str | None
    app_id: str | None

    @property
    def has_spark_context(self) -> bool:
        """A SparkContext on the driver, hence broadcast variables and RDD jobs (not on
        Spark Connect)."""
        return not self.connect

    @property
    def kind(self) -> str:
        """``connect``, ``local`` or ``cluster``: for messages and reports."""
        if self.connect:
            return "connect"
        return "local" if self.local_master else "cluster"

    @classmethod
    def of(cls, spark: SparkSession) -> SparkEnv:
        if _is_connect(spark):
            master = _conf(spark, "spark.master")
            parallelism = _conf(spark, "spark.default.parallelism")
            return cls(
                connect=True,
                local_master=False,
                master=master,
                default_parallelism=int(parallelism) if parallelism else 2,
                local_dir=None,
                app_id=_conf(spark, "spark.app.id"),
            )
        sc = spark.sparkContext
        master = sc.master
        return cls(
            connect=False,
            local_master=master.startswith("local"),
            master=master,
            default_parallelism=int(sc.defaultParallelism),
            local_dir=_app_local_dir(sc),
            app_id=sc.applicationId,
        )


def _conf(spark: SparkSession, key: str) -> str | None:
    try:
        return spark.conf.get(key, None)
    except Exception:  # a managed server may refuse to show a key
        return None


def _app_local_dir(sc) -> str | None:
    """Spark's per-application local directory (``<spark.local.dir>/spark-<uuid>``, made by
    ``Utils.getLocalDir`` and deleted by Spark's shutdown hook), or None."""
    try:
        return str(sc._jvm.org.apache.spark.util.Utils.getLocalDir(sc._jsc.sc().conf()))
    except Exception:
        return None
