#!/usr/bin/env bash
# Idempotent setup: a virtualenv in .venv with trackstream and its test dependencies, the
# Kafka broker's jars resolved from Maven Central (cached in ~/.m2), and Debian's chromium for the
# web UI's browser tests (Playwright drives /usr/bin/chromium; it never downloads a browser of its own).
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
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing Debian's chromium for the web UI tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "==> /usr/bin/chromium is missing (install Debian's chromium as root); the web UI browser tests will skip"
  fi
fi
echo "==> setup done"
