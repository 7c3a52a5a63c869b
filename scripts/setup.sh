#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine with Python 3.11 and Java 17:
# system packages (Maven for the Kafka jars, Redis), the .venv with the locked
# Python packages, and the Kafka broker jars in the cache (~/.cache/metricsflow).
# --test also installs the real peers the tests talk to (Prometheus, Alertmanager,
# node-exporter, kcat).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
if [ "${1:-}" = "--test" ]; then
  command -v kcat >/dev/null || need_apt+=(kcat)
  command -v prometheus >/dev/null || need_apt+=(prometheus)
  command -v prometheus-alertmanager >/dev/null || need_apt+=(prometheus-alertmanager)
  command -v prometheus-node-exporter >/dev/null || need_apt+=(prometheus-node-exporter)
fi
command -v mvn >/dev/null || need_apt+=(maven)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
python3.11 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3.11-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${need_apt[*]} with apt-get"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PY"
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.lock.sha
want=$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-64)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages from requirements.lock"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi

echo "setup: Kafka jars"
.venv/bin/python -c 'from metricsflow.stack.kafka import ensure_jars; print("  ", ensure_jars())'
echo "setup: done"
