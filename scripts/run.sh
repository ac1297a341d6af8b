#!/usr/bin/env bash
# What `make run`, `make up` and `make down` call.
#   scripts/run.sh               check Postgres, Redis and RabbitMQ (starting the missing ones
#                                with docker compose when a Docker engine is there), then run
#                                `bin/shop run` in this terminal; Ctrl-C stops it
#   scripts/run.sh --background  the same, in the background: returns once shop is ready
#   scripts/run.sh --stop        stops the one --background started
# The variables of `shop run` (shop run --help) apply; SHOP_ENV defaults to dev.
set -euo pipefail
cd "$(dirname "$0")/.."

pidfile=bin/shop-run.pid logfile=bin/shop-run.log
mode=${1:-}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

if [ "$mode" = --stop ]; then
  if running; then
    pid=$(cat "$pidfile")
    kill -TERM "$pid"
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    echo "shop stopped"
  else
    echo "shop is not running in the background"
  fi
  rm -f "$pidfile"
  exit 0
fi

declare -A port=([postgres]=5432 [redis]=6379 [rabbitmq]=5672)
services=(postgres redis rabbitmq)
answers() { timeout 1 bash -c "</dev/tcp/127.0.0.1/${port[$1]}" 2>/dev/null; }

missing=()
for s in "${services[@]}"; do answers "$s" || missing+=("$s"); done

if ((${#missing[@]})); then
  if docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    echo "starting with docker compose: ${missing[*]}"
    # deploy/compose/ports.yml publishes them on 127.0.0.1, where shop looks for them by
    # default; --wait uses their healthchecks.
    # Only the dependencies start here, not shop's services, which alone read JWT_SECRET (compose
    # requires it of the whole file).
    JWT_SECRET=${JWT_SECRET:-unused-by-postgres-redis-and-rabbitmq} \
      docker compose -f docker-compose.yml -f deploy/compose/ports.yml up -d --wait --wait-timeout 90 "${missing[@]}"
  else
    pgver=$(ls /etc/postgresql 2>/dev/null | head -n1); pgver=${pgver:-15}
    declare -A native=(
      [postgres]="pg_ctlcluster $pgver main start"
      [redis]="redis-server --daemonize yes"
      [rabbitmq]="rabbitmq-server -detached"
    )
    echo "not answering, and no Docker engine with compose to start them with:" >&2
    for s in "${missing[@]}"; do
      echo "  $s (127.0.0.1:${port[$s]}): start it with 'JWT_SECRET=unused docker compose -f docker-compose.yml" \
        "-f deploy/compose/ports.yml up -d $s', or on Debian: ${native[$s]}" >&2
    done
    exit 1
  fi
fi

export SHOP_ENV=${SHOP_ENV:-dev}
[ -x bin/shop ] || go build -o bin/shop ./cmd/shop

if [ "$mode" != --background ]; then
  exec ./bin/shop run
fi

if running; then
  echo "shop is running already (pid $(cat "$pidfile")); make down stops it"
  exit 0
fi
metrics=${METRICS_ADDR:-:9090}
[[ $metrics == :* ]] && metrics=127.0.0.1$metrics
LOG_FORMAT=${LOG_FORMAT:-text} nohup ./bin/shop run >"$logfile" 2>&1 &
echo $! >"$pidfile"
for _ in $(seq 600); do
  if curl -fs "http://$metrics/readyz" >/dev/null 2>&1; then
    grep -m1 'serving' "$logfile" | sed 's/^.*msg=//'
    echo "shop is ready (log: $logfile); make down stops it"
    exit 0
  fi
  if ! running; then
    echo "shop stopped before it was ready; its log ($logfile) ends with:" >&2
    tail -n 20 "$logfile" >&2
    rm -f "$pidfile"
    exit 1
  fi
  sleep 0.1
done
echo "shop is not ready after 60 s; its log ($logfile) ends with:" >&2
tail -n 20 "$logfile" >&2
exit 1
