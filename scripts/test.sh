#!/usr/bin/env bash
# Quick start (b): install, then run the whole test suite (Spark Connect and cluster tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYSPARK_PYTHON="$PWD/.venv/bin/python"
exec .venv/bin/python -m pytest "$@"
