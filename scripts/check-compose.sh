#!/usr/bin/env bash
# Validates docker-compose.yml when docker compose is installed.
# Needs no Docker engine. Not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker compose version >/dev/null 2>&1; then
  echo "docker compose not installed; skipping"
  exit 0
fi
docker compose config -q
echo "docker-compose.yml: ok"
