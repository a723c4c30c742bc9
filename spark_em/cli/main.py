"""``spark-em fit|score ...``: the console script, and :func:`run` for the jobs under
``jobs/`` (``jobs/fit.py`` is ``run("fit")``).

A subcommand is a :class:`Command`: its settings (lists of
:class:`~spark_em.cli.options.Option`), a ``check`` of the merged settings that runs
before Spark starts, and ``execute``, which gets the settings and returns an exit code.
:func:`commands` is the registry; a new job (``select``) is one more module with a
``COMMAND`` and one more name in it.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConvergenceWarning
from .config import Settings, parse_settings
from .exit_codes import EXIT_USAGE, classify
from .options import Option


def _nothing_to_resolve(settings: Settings) -> None:
    return None


@dataclass(frozen=True)
class Command:
    """``resolve``: settings that follow from others, before ``--print-config`` shows
    them (the k of an ``--init-model``); ``check``: everything else that can be refused
    before Spark starts."""

    name: str
    help: str
    options: list[Option]
    check: Callable[[Settings], None]
    execute: Callable[[Settings], int]
    resolve: Callable[[Settings], None] = _nothing_to_resolve


def commands() -> dict[str, Command]:
    """The registry of subcommands, in the order ``spark-em --help`` lists them."""
    from .commands import fit, score, select, update

    return {c.name: c for c in (fit.COMMAND, select.COMMAND, score.COMMAND, update.COMMAND)}


@contextlib.contextmanager
def _quiet_pyspark_error_loggers():
    """pyspark logs every AnalysisException with a query context as a JSON line on stderr
    before raising it; the job reports the error in its own one line instead."""
    from pyspark.logger import PySparkLogger

    loggers = [
        PySparkLogger.getLogger(n) for n in ("SQLQueryContextLogger", "DataFrameQueryContextLogger")
    ]
    before = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    try:
        yield
    finally:
        for lg, was in zip(loggers, before):
            lg.disabled = was


def run(name: str, argv: list[str] | None = None) -> int:
    """Run subcommand ``name`` with ``argv``; returns the exit code (never raises for a
    job's failure: one line on stderr, the stack trace only with ``--verbose``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = commands()[name]
    prog = f"spark-em {name}"
    verbose = "--verbose" in argv
    try:
        settings = parse_settings(prog, command.help, command.options, argv)
        verbose = bool(settings.get("verbose"))
        command.resolve(settings)
        if settings.print_config:  # what the job would run with, missing outputs or not
            sys.stdout.write(settings.to_toml())
            return 0
        command.check(settings)
        with _quiet_pyspark_error_loggers(), warnings.catch_warnings():
            # a job says "did not converge" in its own one line (and in the report)
            warnings.simplefilter("ignore", ConvergenceWarning)
            return int(command.execute(settings) or 0)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BaseException as exc:
        code, message = classify(exc)
        if verbose:
            traceback.print_exc()
        print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
        return code


def main(argv: list[str] | None = None) -> int:
    """The ``spark-em`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    table = commands()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: spark-em {" + ",".join(table) + "} [options]\n")
        for c in table.values():
            print(f"  {c.name:8s} {c.help.split(': ', 1)[-1].split('.')[0]}")
        print("\n`spark-em COMMAND --help` lists a command's options.")
        return 0 if argv else EXIT_USAGE
    if argv[0] not in table:
        print(
            f"spark-em: error: unknown command {argv[0]!r}; commands: {', '.join(table)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return run(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main())
