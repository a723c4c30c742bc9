#!/usr/bin/env bash
# Create .venv (if missing) and install spark-em with its dev extras into it.
# Needs Python >= 3.10 and Java 17 (PySpark 4.x); nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || { echo "spark-em needs Python >= 3.10 (found: $("$PY" --version 2>&1))" >&2; exit 1; }
command -v java >/dev/null 2>&1 || [ -n "${JAVA_HOME:-}" ] \
  || { echo "spark-em needs Java 17 for PySpark 4 (no 'java' on PATH, JAVA_HOME unset)" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
# Re-install only when pyproject.toml changed since the last install.
stamp=.venv/.spark-em-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || ! .venv/bin/python -c 'import spark_em, pyspark, sklearn, chispa' 2>/dev/null \
    || [ ! -x .venv/bin/ruff ] || [ ! -x .venv/bin/mypy ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
  touch "$stamp"
fi
