#!/usr/bin/env bash
# Benchmark: what tracing costs (issue 16), tracing off (no OTEL_EXPORTER_OTLP_ENDPOINT) against
# on (OTLP/HTTP to a local receiver, scripts/bench/otlpsink, which decodes every export; the
# default sampler, parent-based always-on, and every order starts a sampled trace), in TURNS
# turns (3), the modes in reverse order on even turns:
#  1. `shop run` (every process in one) at RATE orders/s (150) for SECS seconds (20), with
#     scripts/bench/confirmlatency: 202 → confirmed in Redis, and the CPU per order of every
#     program (Postgres, RabbitMQ, Redis, shop, the receiver);
#  2. `shop api` alone under wrk, POST /v1/orders at 32 connections for SECS, after a CHECKPOINT.
# Usage: scripts/bench-tracing.sh [seconds] [turns]   (needs wrk, psql, redis-cli, rabbitmqctl, curl, bc)
#   PHASES="cpu orders" (default both), RATE=150.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20} turns=${2:-3} rate=${RATE:-150}
base=${BENCH_SERVER_URL:-postgres://postgres@127.0.0.1:5432}
export SHOP_ENV=dev LOG_LEVEL=warn HTTP_ADDR=127.0.0.1:18085 METRICS_ADDR=127.0.0.1:19085 BCRYPT_COST=4 RATE_LIMIT=0
export JWT_SECRET=bench-tracing-secret-of-at-least-32-bytes # one secret for every turn's process
export OUTBOX_MAX_PENDING=0 # `shop api` runs alone here, without a relay: no brake, or it would refuse the load
sink_addr=127.0.0.1:18086
url="http://$HTTP_ADDR"
for tool in wrk psql redis-cli rabbitmqctl curl bc; do
  command -v $tool >/dev/null || { echo "bench: $tool is required (apt-get install wrk postgresql-client redis-tools curl bc)"; exit 1; }
done
tmp=$(mktemp -d)
go build -o bin/shop ./cmd/shop
go build -o "$tmp/confirmlatency" ./scripts/bench/confirmlatency
go build -o "$tmp/otlpsink" ./scripts/bench/otlpsink
source scripts/bench/lib.sh
bench_fresh tracing
run="" sink=""
trap 'kill $run $sink 2>/dev/null; wait $run $sink 2>/dev/null || true; bench_cleanup; rm -rf "$tmp"' EXIT

"$tmp/otlpsink" -addr "$sink_addr" > "$tmp/sink.log" & sink=$!
./bin/shop run 2>>"$tmp/run.log" & run=$!
bench_wait_api
bench_catalogue 100 TRC
kill "$run"; wait "$run" 2>/dev/null || true; run=""
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F); $(git rev-parse --short HEAD)"

# start MODE COMMAND: starts shop COMMAND with tracing off or on.
start() {
  if [ "$1" = on ]; then
    OTEL_EXPORTER_OTLP_ENDPOINT="http://$sink_addr" ./bin/shop "$2" 2>>"$tmp/run.log" & run=$!
  else
    ./bin/shop "$2" 2>>"$tmp/run.log" & run=$!
  fi
  bench_wait_api
  for _ in $(seq 100); do curl -fs "http://$METRICS_ADDR/readyz" >/dev/null && break; sleep 0.2; done
}
stop() { kill "$run"; wait "$run" 2>/dev/null || true; run=""; }
spans() { curl -fs "http://$sink_addr/count"; }
modes() { if (( $1 % 2 )); then echo off on; else echo on off; fi; }
phases=${PHASES:-cpu orders}
products=$(head -50 "$tmp/products" | paste -sd,)
if [[ " $phases " == *" cpu "* ]]; then
for turn in $(seq "$turns"); do
  for mode in $(modes "$turn"); do
    start "$mode" run
    sleep 2
    before_orders=$(psql -qtA "$DATABASE_URL" -c "SELECT count(*) FROM orders") before_spans=$(spans)
    bench_cpu_ticks > "$tmp/cpu.before"; started=$(date +%s.%N)
    latency=$("$tmp/confirmlatency" -url "$url" -token "$buyer" -products "$products" -rate "$rate" -for "${secs}s" -prefix "$prefix" | grep -o 'p50 [^,]*, p90 [^,]*, p99 [^,]*')
    bench_cpu_ticks > "$tmp/cpu.after"; ended=$(date +%s.%N)
    orders=$(( $(psql -qtA "$DATABASE_URL" -c "SELECT count(*) FROM orders") - before_orders ))
    cpu=$(bench_cpu_per_order "$tmp/cpu.before" "$tmp/cpu.after" "$orders" "$(echo "$ended - $started" | bc)")
    printf "turn %s cpu tracing=%-3s %5d orders, %7d spans | %s | all %s | shop %s | otlpsink %s\n" "$turn" "$mode" "$orders" $(( $(spans) - before_spans )) "$latency" \
      "$(echo "$cpu" | awk '$1 == "all" {print $2}')" "$(echo "$cpu" | awk '$1 == "shop" {print $2}')" "$(echo "$cpu" | awk '$1 == "otlpsink" {print $2}')"
    stop
  done
done
fi
if [[ " $phases " == *" orders "* ]]; then
for turn in $(seq "$turns"); do
  for mode in $(modes "$turn"); do
    psql -q "$DATABASE_URL" -c CHECKPOINT
    start "$mode" api
    before_spans=$(spans)
    TOKEN=$buyer PRODUCTS=$(head -100 "$tmp/products" | paste -sd,) wrk -t2 -c32 -d"${secs}s" -s scripts/bench/orders.lua "$url" |
      awk -v label="turn $turn orders tracing=$mode" '/Requests\/sec/ {rps=$2} /Non-2xx/ {non2xx=$5} END {printf "%-30s %10s req/s  non-2xx %s", label, rps, (non2xx == "" ? 0 : non2xx)}'
    sleep 1
    echo "  spans $(( $(spans) - before_spans ))"
    stop
  done
done
fi
