#!/usr/bin/env bash
# The whole test suite. Starts what the tests need (Kafka via infra/, embedded ClickHouse
# in-process) unless TRACKSTREAM_TEST_KAFKA / TRACKSTREAM_TEST_CLICKHOUSE name running ones.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/setup.sh
exec .venv/bin/python -m pytest "$@"
