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
  if docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
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
    echo "not answering, and no Docker engine with compose to start them with:" >&2
    for s in "${missing[@]}"; do
      echo "  $s (127.0.0.1:${port[$s]}): start it with 'docker compose up -d $s'," \
        "or on Debian: ${native[$s]}" >&2
    done
    exit 1
  fi
fi

export SHOP_ENV=${SHOP_ENV:-dev}
[ -x bin/shop ] || go build -o bin/shop ./cmd/shop
# Migrations, the API (HTTP_ADDR, default :8080), the relay and every consumer group in one
# process; Ctrl-C stops it gracefully.
exec ./bin/shop run
