"""The Spark session a job runs on, with Spark's own log at ``--spark-log-level`` (default
WARN) before the session prints anything.

* ``--remote sc://...``: a Spark Connect session (Spark's log is the server's).
* An active session in this process (a notebook, the tests): used as it is (``--master``
  does not apply); its log level is left alone, and it is not stopped at the end.
* Under ``spark-submit`` (``PYSPARK_GATEWAY_PORT`` set and no ``--master``): the JVM is
  already running.  Before the SparkContext is created, Spark's logging is initialised and
  its root level set through the gateway, so the context's start-up INFO lines never appear.
  What spark-submit itself printed before the job started cannot be taken back: pass
  ``--driver-java-options -Dlog4j2.configurationFile=conf/log4j2.properties`` for that.
* Otherwise an embedded session (``--master``, default ``local[*]``) whose driver JVM starts
  with a log4j2 configuration at the chosen level.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile

LOG4J2_TEMPLATE = """\
# spark-em: Spark's log on stderr at one level
rootLogger.level = {level}
rootLogger.appenderRef.stderr.ref = stderr
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{{yy/MM/dd HH:mm:ss}} %p %c{{1}}: %m%n%ex
# the loggers Spark consults for a shell's default level: same level, no "Setting default
# log level" banner
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = {level}
logger.submit.name = org.apache.spark.deploy.SparkSubmit
logger.submit.level = {level}
logger.repl.name = org.apache.spark.repl.Main
logger.repl.level = {level}
{quiet}"""

# Spark's loggers that print a Java stack trace for what the job reports in its own one
# line: a missing or globbed input path (FileStreamSink), a failed task and the write or
# read it aborts.  Off unless --verbose or a log level below WARN is asked for.
QUIET_LOGGERS = (
    "org.apache.spark.sql.execution.streaming.sinks.FileStreamSink",
    "org.apache.spark.executor.Executor",
    "org.apache.spark.scheduler.TaskSetManager",
    "org.apache.spark.sql.execution.datasources.FileFormatWriter",
    "org.apache.spark.util.Utils",
    "org.apache.spark.internal.io.SparkHadoopWriter",
    "org.apache.hadoop.mapreduce.lib.output.FileOutputCommitter",
)


def quiet_loggers(settings) -> tuple[str, ...]:
    """The loggers this job turns off (none with ``--verbose`` or a level below WARN)."""
    if settings.get("verbose") or settings["spark-log-level"] in ("ALL", "TRACE", "DEBUG", "INFO"):
        return ()
    return QUIET_LOGGERS


def log4j2_file(level: str, quiet: tuple[str, ...] = ()) -> str:
    """A log4j2 properties file at ``level`` with the ``quiet`` loggers off, removed when
    this process exits."""
    fd, path = tempfile.mkstemp(prefix="spark-em-log4j2-", suffix=".properties")
    lines = "".join(
        f"logger.quiet{i}.name = {name}\nlogger.quiet{i}.level = OFF\n"
        for i, name in enumerate(quiet)
    )
    with os.fdopen(fd, "w") as fh:
        fh.write(LOG4J2_TEMPLATE.format(level=level, quiet=lines))
    atexit.register(lambda: os.path.exists(path) and os.remove(path))
    return path


def _under_spark_submit(master: str | None) -> bool:
    return master is None and "PYSPARK_GATEWAY_PORT" in os.environ


def _quiet_gateway_jvm(level: str, quiet: tuple[str, ...] = ()) -> None:
    """Under spark-submit, before the SparkContext exists: initialise Spark's logging (which
    spark-submit left uninitialised) and set its root level, so that creating the context
    does not reset it to Spark's INFO default; turn the ``quiet`` loggers off."""
    from pyspark import SparkContext

    with contextlib.suppress(Exception):  # internal hooks: a quieter log is all they buy
        SparkContext._ensure_initialized()
        jvm = SparkContext._jvm
        utils = getattr(getattr(jvm.org.apache.spark.util, "Utils$"), "MODULE$")
        utils.initializeLogIfNecessary(False, True)
        jvm.org.apache.spark.util.Utils.setLogLevel(
            jvm.org.apache.logging.log4j.Level.toLevel(level)
        )
        configurator = jvm.org.apache.logging.log4j.core.config.Configurator
        for name in quiet:
            configurator.setLevel(name, jvm.org.apache.logging.log4j.Level.OFF)


@contextlib.contextmanager
def job_session(settings, app_name: str):
    """Yield the job's SparkSession; stop it at the end if this job created it."""
    from pyspark.sql import SparkSession

    level = settings["spark-log-level"]
    remote, master = settings.get("remote"), settings.get("master")
    created = True
    if remote:
        spark = SparkSession.builder.remote(remote).appName(app_name).getOrCreate()
    elif SparkSession.getActiveSession() is not None:
        spark, created = SparkSession.getActiveSession(), False
    elif _under_spark_submit(master):
        _quiet_gateway_jvm(level, quiet_loggers(settings))
        spark = SparkSession.builder.appName(app_name).getOrCreate()
        spark.sparkContext.setLogLevel(level)
    else:
        from ..data.local_session import local_session

        uri = "file:" + log4j2_file(level, quiet_loggers(settings))
        spark = local_session(
            master or "local[*]",
            app_name,
            {
                "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={uri}",
            },
        )
    try:
        yield spark
    finally:
        if created:
            with contextlib.suppress(Exception):
                spark.stop()
