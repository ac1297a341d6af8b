#!/usr/bin/env bash
# Benchmark: what the shared rate limit (in Redis) costs (issue 15). `shop run` adds 1,000
# products (to Redis) and a buyer; then, in turns, `shop api` alone (no consumer competes for
# the CPU) with RATE_LIMIT=0 (off), with a budget no client reaches and the default grant (on),
# and with RATE_LIMIT_GRANT=1 (on, every request asks Redis), TURNS times (3): each turn of the
# reads runs wrk for SECS seconds (10) on GET /v1/products/{id} at 64 connections from one
# client, then from 10,000 clients (X-Forwarded-For from the trusted loopback: a client's
# requests are a few per second, so many ask Redis); then each turn of the orders, on POST
# /v1/orders at 32 connections (one buyer), after a CHECKPOINT. It prints Requests/sec and
# non-2xx answers (there must be none).
# Usage: scripts/bench-limiter.sh [seconds] [turns]   (needs wrk, psql, redis-cli, rabbitmqctl)
#   PHASES="reads orders" (default both).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10} turns=${2:-3}
base=${BENCH_SERVER_URL:-postgres://postgres@127.0.0.1:5432}
export SHOP_ENV=dev LOG_LEVEL=warn HTTP_ADDR=127.0.0.1:18084 METRICS_ADDR=127.0.0.1:19084 BCRYPT_COST=4
export JWT_SECRET=bench-limiter-secret-of-at-least-32-bytes # one secret for every turn's process
export OUTBOX_MAX_PENDING=0 # `shop api` runs alone here, without a relay: no brake, or it would refuse the load
export TRUSTED_PROXIES=127.0.0.1/32 # wrk, naming the clients of the 10,000-client runs
url="http://$HTTP_ADDR"
for tool in wrk psql redis-cli rabbitmqctl curl; do
  command -v $tool >/dev/null || { echo "bench: $tool is required (apt-get install wrk postgresql-client redis-tools curl)"; exit 1; }
done
tmp=$(mktemp -d)
go build -o bin/shop ./cmd/shop
source scripts/bench/lib.sh
bench_fresh limiter
run=""
trap 'kill $run 2>/dev/null; wait $run 2>/dev/null || true; bench_cleanup; rm -rf "$tmp"' EXIT

RATE_LIMIT=0 ./bin/shop run 2>>"$tmp/run.log" & run=$!
bench_wait_api
bench_catalogue 1000 LIM
for _ in $(seq 100); do [ "$(redis-cli zcard "${prefix}products")" = 1000 ] && break; sleep 0.2; done
kill "$run"; wait "$run" 2>/dev/null || true; run=""
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F); $(redis-cli zcard "${prefix}products") products in Redis"

result() { # result LABEL: wrk's output on stdin → one line
  awk -v label="$1" '/Requests\/sec/ {rps=$2} /Non-2xx/ {non2xx=$5} END {printf "%-46s %10s req/s  non-2xx %s\n", label, rps, (non2xx == "" ? 0 : non2xx)}'
}
# mode off|on|on-grant=1: starts shop api so limited.
api() {
  case $1 in
    off) limit=0 grant=0 ;;
    on) limit=1000000 grant=0 ;;
    on-grant=1) limit=1000000 grant=1 ;;
  esac
  RATE_LIMIT=$limit RATE_LIMIT_BURST=2000000 RATE_LIMIT_GRANT=$grant ./bin/shop api 2>>"$tmp/run.log" & run=$!
  bench_wait_api
}
stop() { kill "$run"; wait "$run" 2>/dev/null || true; run=""; }
# The reads first, every turn of them, then the orders: the orders leave Postgres work
# (checkpoints, vacuum) that would slow the reads after them. The modes go in one order on odd
# turns and in the reverse order on even ones, so that a machine that slows down (or speeds
# up) during the run, and the orders tables that grow during it, favour none of them.
modes() { if (( $1 % 2 )); then echo off on on-grant=1; else echo on-grant=1 on off; fi; }
phases=${PHASES:-reads orders}
if [[ " $phases " == *" reads "* ]]; then
for turn in $(seq "$turns"); do
  for mode in $(modes "$turn"); do
    api $mode
    PRODUCTS_FILE="$tmp/products" wrk -t2 -c64 -d"${secs}s" -s scripts/bench/products.lua "$url" | result "turn $turn reads limit=$mode"
    CLIENTS=10000 PRODUCTS_FILE="$tmp/products" wrk -t2 -c64 -d"${secs}s" -s scripts/bench/products.lua "$url" \
      | result "turn $turn reads/10k clients limit=$mode"
    stop
  done
done
fi
if [[ " $phases " == *" orders "* ]]; then
for turn in $(seq "$turns"); do
  for mode in $(modes "$turn"); do
    psql -q "$DATABASE_URL" -c CHECKPOINT
    api $mode
    TOKEN=$buyer PRODUCTS=$(head -100 "$tmp/products" | paste -sd,) wrk -t2 -c32 -d"${secs}s" -s scripts/bench/orders.lua "$url" \
      | result "turn $turn orders limit=$mode"
    stop
  done
done
fi
