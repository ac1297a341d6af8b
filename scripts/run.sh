#!/usr/bin/env bash
# What `make run` calls: make sure Postgres, Redis and RabbitMQ answer (starting them with
# docker compose when a Docker engine is available), migrate, then run shop.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A port=([postgres]=5432 [redis]=6379 [rabbitmq]=5672)
services=(postgres redis rabbitmq)

answers() { timeout 1 bash -c "</dev/tcp/127.0.0.1/${port[$1]}" 2>/dev/null; }

missing=()
for s in "${services[@]}"; do answers "$s" || missing+=("$s"); done

if ((${#missing[@]})); then
  if docker info >/dev/null 2>&1; then
    echo "starting with docker compose: ${missing[*]}"
    # --wait uses the healthchecks: a published port answers as soon as the container starts,
    # before the service inside is ready.
    docker compose up -d --wait --wait-timeout 90 "${missing[@]}"
    for s in "${missing[@]}"; do
      for ((i = 0; i < 90; i++)); do answers "$s" && break; sleep 1; done
      answers "$s" || { echo "$s does not answer on 127.0.0.1:${port[$s]} after 90s" >&2; exit 1; }
    done
  else
    pgver=$(ls /etc/postgresql 2>/dev/null | head -n1); pgver=${pgver:-15}
    declare -A native=(
      [postgres]="pg_ctlcluster $pgver main start"
      [redis]="redis-server --daemonize yes"
      [rabbitmq]="rabbitmq-server -detached"
    )
    echo "not answering, and no Docker engine to start them with:" >&2
    for s in "${missing[@]}"; do
      echo "  $s (127.0.0.1:${port[$s]}): start it with 'docker compose up -d $s'," \
        "or on Debian: ${native[$s]}" >&2
    done
    exit 1
  fi
fi

export SHOP_ENV=${SHOP_ENV:-dev}
[ -x bin/shop ] || go build -o bin/shop ./cmd/shop
./bin/shop migrate

# `shop run` (api + relay + every consumer in one process) once it exists; until then the
# processes that exist, side by side: the relay and the consumers in the background (each
# with its own metrics port), the API in front.
help=$(./bin/shop help 2>&1 || true)
if grep -qE '^[[:space:]]*(shop[[:space:]]+)?run([[:space:]]|$)' <<<"$help"; then
  exec ./bin/shop run
fi
METRICS_ADDR=${RELAY_METRICS_ADDR:-127.0.0.1:9090} ./bin/shop relay & relay=$!
METRICS_ADDR=${CONSUMER_METRICS_ADDR:-127.0.0.1:9091} ./bin/shop consume orders inventory emails projections & consumers=$!
trap 'kill -TERM $relay $consumers 2>/dev/null; wait $relay $consumers' EXIT INT TERM
./bin/shop api
