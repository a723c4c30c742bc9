#!/usr/bin/env bash
# Quick start (a): install, then fit a mixture to generated demo data on an embedded local Spark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/spark-em fit --demo --config conf/demo.toml "$@"
