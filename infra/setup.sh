#!/usr/bin/env bash
# Idempotent setup: a virtualenv in .venv with trackstream and its test dependencies, and the
# Kafka broker's jars resolved from Maven Central (cached in ~/.m2).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
echo "==> installing trackstream into .venv"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[server,test]'
echo "==> resolving the Kafka broker from Maven Central"
.venv/bin/python -c "from trackstream.infra.kafka_broker import KafkaBroker; from trackstream.config import default_home; KafkaBroker(default_home()).install()"
echo "==> setup done"
