#!/usr/bin/env bash
# Set up (idempotently) and run the whole test suite against a real Kafka broker
# that the tests start and stop themselves on free ports of 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/python scripts/gen_proto.py --check
.venv/bin/python scripts/gen_vectors.py --check
if command -v go >/dev/null; then
  echo "go: vet and test examples/go-producer against the shared vectors"
  (cd examples/go-producer && test -z "$(gofmt -l .)" && go vet ./... && go test ./...)
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
