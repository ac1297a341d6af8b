#!/usr/bin/env bash
# Benchmark of the read side (issue 5), in one run:
#  1. GET /v1/products/{id} over 1,000 products at 64 connections (wrk) against `shop run`,
#     then the same wrk command against a bare net/http handler answering a small JSON;
#  2. the time from POST /v1/orders answered 202 to the order confirmed in Redis, at RATE (300)
#     orders/s
#     (scripts/bench/confirmlatency, which listens to the projector's Pub/Sub announcements).
# Usage: scripts/bench-reads.sh [seconds]   (needs wrk, psql, redis-cli, rabbitmqctl)
#   PHASES="reads orders" (default both), RATE=300 (orders/s), BUYERS=1 (the customers
#   whose orders take turns in the orders phase). RATE=half first finds the rate `shop run`
#   sustains (`shop loadtest --find-rate`, orders only, 10 s steps from 100/s, every request's
#   p99 under 100 ms, every order decided) and then measures at half of it.
# During the orders phase it also prints the CPU each program used, per order, the mean
# lag of each hop (the relay, each consumer group), with TIMELINE=1 each second's latency,
# and it saves shop's /metrics at its start and end in /tmp/bench-reads-metrics-before.txt and
# /tmp/bench-reads-metrics.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
base=${BENCH_SERVER_URL:-postgres://postgres@127.0.0.1:5432}
export SHOP_ENV=dev LOG_LEVEL=warn HTTP_ADDR=127.0.0.1:18081 METRICS_ADDR=127.0.0.1:19081 BCRYPT_COST=4
export RATE_LIMIT=${RATE_LIMIT:-0} # the load comes from one address: measure capacity, not the limiter
url="http://$HTTP_ADDR"

for tool in wrk psql redis-cli rabbitmqctl curl bc; do
  command -v $tool >/dev/null || { echo "bench: $tool is required (apt-get install wrk postgresql-client redis-tools curl bc)"; exit 1; }
done
tmp=$(mktemp -d)
go build -o bin/shop ./cmd/shop
go build -o "$tmp/bare" ./scripts/bench/bare
go build -o "$tmp/confirmlatency" ./scripts/bench/confirmlatency
source scripts/bench/lib.sh
bench_fresh reads

./bin/shop run 2>"$tmp/run.log" & run=$!
bare=""
trap 'kill $run $bare 2>/dev/null; wait $run 2>/dev/null || true; bench_cleanup; cp "$tmp/run.log" /tmp/bench-reads-run.log 2>/dev/null; rm -rf "$tmp"' EXIT
bench_wait_api
bench_catalogue 1000 READ
for _ in $(seq 100); do [ "$(redis-cli zcard "${prefix}products")" = 1000 ] && break; sleep 0.2; done
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F); $(wc -l < "$tmp/products") products, $(redis-cli zcard "${prefix}products") in Redis"

phases=${PHASES:-reads orders}

if [[ " $phases " == *" reads "* ]]; then
echo "== wrk: GET /v1/products/{id} against shop run (Redis), 64 connections, ${secs}s"
PRODUCTS_FILE="$tmp/products" wrk -t2 -c64 -d"${secs}s" --latency -s scripts/bench/products.lua "$url" \
  | grep -E "Requests/sec|Latency|50%|75%|90%|99%|requests in|Non-2xx|Socket errors"
"$tmp/bare" 127.0.0.1:18082 & bare=$!
for _ in $(seq 50); do curl -fs 127.0.0.1:18082/v1/products/x >/dev/null && break; sleep 0.1; done
echo "== wrk: the same against a bare net/http handler answering a small JSON"
PRODUCTS_FILE="$tmp/products" wrk -t2 -c64 -d"${secs}s" --latency -s scripts/bench/products.lua http://127.0.0.1:18082 \
  | grep -E "Requests/sec|Latency|50%|75%|90%|99%|requests in|Non-2xx|Socket errors"
kill $bare; wait $bare 2>/dev/null || true; bare=""
fi

if [[ " $phases " == *" orders "* ]]; then
if [[ ${RATE:-} == half ]]; then
  echo "== the rate shop run sustains: shop loadtest --find-rate, orders only (1 to 3 lines), 10 s steps, p99 under 100 ms"
  ./bin/shop loadtest --url "$url" --find-rate --rate 100 --duration 10s --mix place=100 --customers 50 --products 100 \
    --admin-email admin@bench.test --admin-password benchpass1 > "$tmp/find-rate.txt" 2>"$tmp/find-rate.log" || true
  sed -n '/rate\/s/,/^sustained/p' "$tmp/find-rate.txt"
  sustained=$(sed -n 's/^sustained: \([0-9]*\) requests.*/\1/p' "$tmp/find-rate.txt")
  [ -n "$sustained" ] && [ "$sustained" -gt 1 ] || { echo "bench: no sustained rate found"; cat "$tmp/find-rate.txt"; tail -20 "$tmp/find-rate.log"; exit 1; }
  RATE=$(( sustained / 2 ))
  sleep 5 # the last step's backlog drains
fi
echo "== POST /v1/orders at ${RATE:-300}/s for ${secs}s: 202 → confirmed in Redis"
orders_before=$(psql -qtA "$DATABASE_URL" -c "SELECT count(*) FROM orders")
curl -fs "http://$METRICS_ADDR/metrics" > "$tmp/metrics.before" || true
bench_cpu_ticks > "$tmp/cpu.before"; started=$(date +%s.%N)
"$tmp/confirmlatency" -url "$url" -token "$buyers" -products "$(head -50 "$tmp/products" | paste -sd,)" \
  -rate "${RATE:-300}" -for "${secs}s" -prefix "$prefix" ${TIMELINE:+-timeline}
bench_cpu_ticks > "$tmp/cpu.after"; ended=$(date +%s.%N)
orders=$(( $(psql -qtA "$DATABASE_URL" -c "SELECT count(*) FROM orders") - orders_before ))
echo "== CPU per order over the phase ($orders orders, $(nproc) cores; includes the 5 s drain):"
bench_cpu_per_order "$tmp/cpu.before" "$tmp/cpu.after" "$orders" "$(echo "$ended - $started" | bc)"
curl -fs "http://$METRICS_ADDR/metrics" > /tmp/bench-reads-metrics.txt || true
echo "== where an order waits, over the phase (each group's lag includes the relay's hop before it):"
cp "$tmp/metrics.before" /tmp/bench-reads-metrics-before.txt 2>/dev/null || true
bench_lag "$tmp/metrics.before" /tmp/bench-reads-metrics.txt
fi
