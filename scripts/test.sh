#!/usr/bin/env bash
# Quick start (b): install, then lint (ruff), type-check the core (mypy) and run the whole test
# suite (Spark Connect and cluster tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYSPARK_PYTHON="$PWD/.venv/bin/python"
# lint, format and types first (seconds): the style is part of the suite
.venv/bin/ruff check spark_em tests scripts jobs
.venv/bin/ruff format --check --quiet spark_em tests scripts jobs
.venv/bin/mypy
# Spark jobs, JVM and server starts and spark-submit processes keep both cores busy: test
# files run in SPARK_EM_TEST_WORKERS processes (3 by default; 1 runs them in this process)
workers="${SPARK_EM_TEST_WORKERS:-3}"
if [ "$workers" -gt 1 ]; then
  exec .venv/bin/python -m pytest -n "$workers" --dist loadfile "$@"
fi
exec .venv/bin/python -m pytest "$@"
