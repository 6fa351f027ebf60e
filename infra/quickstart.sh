#!/usr/bin/env bash
# One command from a fresh clone: set up, start Kafka and the server (embedded ClickHouse),
# log an example training run and show its metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/setup.sh
.venv/bin/trackstream up
.venv/bin/trackstream demo
echo
echo "Kafka and the server keep running; stop them with: .venv/bin/trackstream down"
