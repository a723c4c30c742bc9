"""The batch jobs of spark-em (``spark-em fit|score``, ``jobs/*.py``): argument parsing and
I/O over the library.

* :mod:`~spark_em.cli.main`: the console script, the subcommand registry, exit codes;
* :mod:`~spark_em.cli.options`, :mod:`~spark_em.cli.config`: settings declared once, TOML
  file + flags, validated before Spark starts;
* :mod:`~spark_em.cli.spark_session`: the Spark session, Spark's log level;
* :mod:`~spark_em.cli.inputs`, :mod:`~spark_em.cli.outputs`,
  :mod:`~spark_em.cli.predictions`: input DataFrames, outputs written together or not at all;
* :mod:`~spark_em.cli.progress_lines`, :mod:`~spark_em.cli.reports`, :mod:`~spark_em.cli.plots`,
  :mod:`~spark_em.cli.tracking`: what a fit shows and records;
* :mod:`~spark_em.cli.commands.fit`, :mod:`~spark_em.cli.commands.score`: the jobs.
"""
