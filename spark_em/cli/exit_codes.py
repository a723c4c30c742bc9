"""What a job's failure looks like to its caller: one line on stderr and an exit code.

* 2 — usage and configuration (a bad flag, a bad TOML file, an output that exists);
* 1 — data (a missing input path, table or column, a non-numeric column, bad rows, a model
  directory that cannot be read);
* 3 — ``--require-convergence`` and the fit stopped at ``max-iter`` without converging;
* 4 — ``spark-em update --max-drift X`` and the new rows score more than X nats/row below
  the model's window: nothing is written but the report.

:func:`classify` turns any exception into ``(exit code, one-line message)``: the library's
own errors carry their message; Spark's ``AnalysisException`` is recognised by its error
class; anything else is an unexpected failure (exit 1, first line of the message).
"""

from __future__ import annotations

import re

EXIT_DATA = 1
EXIT_USAGE = 2
EXIT_NOT_CONVERGED = 3
EXIT_DRIFT = 4


class JobError(Exception):
    """A failure the job reports in one line; ``exit_code`` says which kind."""

    exit_code = EXIT_DATA


class UsageError(JobError):
    """A bad flag, configuration value or output target: exit 2."""

    exit_code = EXIT_USAGE


class DataError(JobError):
    """A missing or unreadable input, column or model, or bad rows: exit 1."""

    exit_code = EXIT_DATA


class NotConvergedError(JobError):
    """``--require-convergence`` and the fit did not converge: exit 3."""

    exit_code = EXIT_NOT_CONVERGED


class DriftError(JobError):
    """``spark-em update --max-drift`` and the new rows drifted beyond it: exit 4."""

    exit_code = EXIT_DRIFT


# Spark error classes (AnalysisException.getCondition()) that mean "your data is not there"
_DATA_CONDITIONS = {
    "PATH_NOT_FOUND": "input path not found",
    "TABLE_OR_VIEW_NOT_FOUND": "table not found",
    "UNRESOLVED_COLUMN": "column not found",
    "UNRESOLVED_COLUMN.WITH_SUGGESTION": "column not found",
    "UNRESOLVED_COLUMN.WITHOUT_SUGGESTION": "column not found",
    "DATATYPE_MISMATCH": "wrong column type",
    "UNABLE_TO_INFER_SCHEMA": "no Parquet data found",
}
_USAGE_CONDITIONS = {"PARSE_SYNTAX_ERROR": "cannot parse SQL"}


def _first_line(text: str) -> str:
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


def _spark_condition(exc: BaseException) -> str | None:
    for getter in ("getCondition", "getErrorClass"):
        fn = getattr(exc, getter, None)
        if fn is not None:
            try:
                value = fn()
            except Exception:
                value = None
            if value:
                return str(value)
    return None


def _strip_condition(message: str) -> str:
    """``[PATH_NOT_FOUND] Path does not exist: file:/x. SQLSTATE: 42K03`` -> the sentence."""
    message = re.sub(r"^\[[A-Z_.]+\]\s*", "", message)
    return re.sub(r"\.?\s*SQLSTATE: \w+.*$", "", message).strip()


def _python_worker_error(text: str) -> str | None:
    """The last ``SomethingError: message`` line of a Python worker's traceback, as Spark
    forwards it inside a Py4J or PythonException message."""
    found = re.findall(r"^\s*(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$", text, re.M)
    for name, msg in reversed(found):
        if name not in ("Py4JJavaError", "PythonException", "SparkException"):
            return msg.strip()
    return None


def _java_messages(exc: BaseException) -> list[str]:
    """The first lines of the messages of a Py4J error's Java exception and its causes,
    outermost first ([] when ``exc`` did not come from the JVM)."""
    java = getattr(exc, "java_exception", None)
    lines, seen = [], 0
    while java is not None and seen < 20:
        try:
            text = java.getMessage() or java.toString()
        except Exception:
            break
        if text:
            lines.append(_first_line(str(text)))
        try:
            java = java.getCause()
        except Exception:
            break
        seen += 1
    return lines


def _java_condition(exc: BaseException) -> str | None:
    java = getattr(exc, "java_exception", None)
    try:
        return str(java.getCondition()) if java is not None else None
    except Exception:
        return None


def _java_failure(exc: BaseException) -> tuple[int, str] | None:
    """A failure inside the JVM (``Py4JJavaError: An error occurred while calling
    o55.parquet.``) in words: what failed and, where known, which file and what to do."""
    messages = _java_messages(exc)
    if not messages:
        return None
    condition = _java_condition(exc) or ""
    text = " ".join(messages)
    if condition.startswith("FAILED_READ_FILE") or "is not a Parquet file" in text:
        found = re.search(r"reading file (\S+?)\.?(?:\s|$)", text) or re.search(
            r"(\S+) is not a Parquet file", text
        )
        where = found.group(1) if found else "an input file"
        return EXIT_DATA, (
            f"cannot read {where}: it is not a Parquet file (or a damaged one); the jobs "
            "read Parquet files or directories of them: convert it, or leave it out of --input"
        )
    worker = _python_worker_error("\n".join(messages))
    if worker is not None:
        return EXIT_DATA, worker
    # the innermost cause says what went wrong (Mkdirs failed, Permission denied, ...)
    return EXIT_DATA, _strip_condition(messages[-1])


def classify(exc: BaseException) -> tuple[int, str]:
    """``(exit code, one-line message)`` for any exception a job raises."""
    from ..errors import IllDefinedCovarianceError, InvalidInputError, ModelFormatError

    if isinstance(exc, JobError):
        return exc.exit_code, str(exc)
    if isinstance(exc, (InvalidInputError, ModelFormatError, IllDefinedCovarianceError)):
        return EXIT_DATA, _first_line(str(exc))
    if isinstance(exc, FileExistsError):
        return EXIT_USAGE, _first_line(str(exc))
    java = _java_failure(exc)
    if java is not None:
        return java
    condition = _spark_condition(exc)
    if condition is not None:
        message = _strip_condition(_first_line(str(exc)))
        for table, code in ((_USAGE_CONDITIONS, EXIT_USAGE), (_DATA_CONDITIONS, EXIT_DATA)):
            for prefix, what in table.items():
                if condition == prefix or condition.startswith(prefix + "."):
                    return code, f"{what}: {message}"
    text = str(exc)
    worker = _python_worker_error(text)
    if worker is not None:
        return EXIT_DATA, worker
    line = _first_line(text) or type(exc).__name__
    return EXIT_DATA, f"{type(exc).__name__}: {_strip_condition(line)}"
