#!/usr/bin/env bash
# Build the artefacts a cluster needs, into ${1:-dist}/:
#   spark_em-<version>-py3-none-any.whl   for pip / Databricks `%pip install` / cluster libraries
#   spark_em-<version>.zip                for `spark-submit --py-files` and `addPyFile`/`addArtifacts`
# The .zip is the same pure-Python wheel under a name Spark puts on executors' sys.path
# (Spark adds .zip/.egg/.jar --py-files to PYTHONPATH, not .whl).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
py="${PYTHON:-.venv/bin/python}"
[ -x "$py" ] || py=python3
mkdir -p "$out"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
"$py" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$out" . >"$log" 2>&1 \
  || { cat "$log" >&2; exit 1; }
whl="$(ls -t "$out"/spark_em-*-py3-none-any.whl | head -1)"
zip="${whl%-py3-none-any.whl}.zip"
cp "$whl" "$zip"
echo "$whl"
echo "$zip"
