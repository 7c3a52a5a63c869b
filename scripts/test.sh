#!/usr/bin/env bash
# Set up (idempotently) and run the whole test suite against a real Kafka broker
# that the tests start and stop themselves on free ports of 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
