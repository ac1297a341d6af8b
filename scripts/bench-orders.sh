#!/usr/bin/env bash
# Benchmark: POST /v1/orders at 32 connections (wrk) beside pgbench running
# the equivalent bare transaction (an order row + an outbox row) at 32
# clients, in pgbench's default (simple) and prepared query modes, one after
# the other in the same run, against a fresh database; then POST latency at
# about half of wrk's rate.
# Usage: scripts/bench-orders.sh [seconds]   (needs wrk and pgbench)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
conns=${CONNS:-32}
base=${BENCH_SERVER_URL:-postgres://postgres@127.0.0.1:5432}
db=shop_bench_orders_$$ # this run's own database, dropped at the end
export DATABASE_URL="$base/$db?sslmode=disable"
export SHOP_ENV=dev LOG_LEVEL=${LOG_LEVEL:-warn} HTTP_ADDR=127.0.0.1:${BENCH_PORT:-18080} METRICS_ADDR=127.0.0.1:19080
export RATE_LIMIT=${RATE_LIMIT:-0} # the load comes from one address: measure capacity, not the limiter
# No relay runs here and pgbench's rows land in the same outbox: with the
# brake on, the API would hold and then refuse commands once the outbox
# held OUTBOX_MAX_PENDING rows, and wrk would time the refusals.
export OUTBOX_MAX_PENDING=0
url="http://$HTTP_ADDR"

for tool in wrk pgbench psql; do
  command -v $tool >/dev/null || { echo "bench: $tool is required (apt-get install wrk postgresql-client)"; exit 1; }
done
go build -o bin/shop ./cmd/shop
./bin/shop migrate 2>/dev/null
echo benchpass1 | ./bin/shop user add --email admin@bench.test --admin >/dev/null 2>&1
uid=$(echo benchpass1 | ./bin/shop user add --email buyer@bench.test 2>/dev/null | cut -d' ' -f1)

tmp=$(mktemp -d)
./bin/shop api 2>"$tmp/api.log" & api=$!
trap 'kill $api 2>/dev/null; wait $api 2>/dev/null || true; psql -q "$base/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do curl -fs "$url/healthz" >/dev/null && break; sleep 0.1; done

token() { curl -fs --json "{\"email\":\"$1\",\"password\":\"benchpass1\"}" "$url/v1/tokens" | sed 's/.*"token":"\([^"]*\)".*/\1/'; }
admin=$(token admin@bench.test)
products=""
for i in $(seq 100); do
  id=$(curl -fs -H "Authorization: Bearer $admin" "$url/v1/products" \
    --json "{\"sku\":\"BENCH-$i\",\"name\":\"Bench item $i\",\"price_cents\":$((100 + i)),\"stock\":1000000}" | sed 's/.*"id":"\([^"]*\)".*/\1/')
  products="$products${products:+,}$id"
done
export TOKEN=$(token buyer@bench.test) PRODUCTS=$products

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(psql -At "$base/postgres" -c 'show server_version'); $(date -u +%F)"
sed "s/:uid/'$uid'/" scripts/bench/pgbench-order.sql > "$tmp/order.sql"   # the customer's id as a literal
for mode in simple prepared; do   # simple is pgbench's default
  psql -q "$DATABASE_URL" -c CHECKPOINT
  echo "== pgbench -M $mode: BEGIN; INSERT order; INSERT outbox; END, $conns clients, ${secs}s"
  pgbench -n -M $mode -c "$conns" -j 2 -T "$secs" -f "$tmp/order.sql" "$DATABASE_URL" 2>&1 | grep -E "^tps|latency average"
done
psql -q "$DATABASE_URL" -c CHECKPOINT
echo "== wrk: POST /v1/orders (JWT, price lookup, order + items + outbox + idempotency rows), $conns connections, ${secs}s"
wrk -t2 -c"$conns" -d"${secs}s" --latency -s scripts/bench/orders.lua "$url" > "$tmp/wrk.out"
grep -E "Requests/sec|Latency|50%|75%|90%|99%|requests in|Non-2xx|Socket errors" "$tmp/wrk.out"
if grep -q "Non-2xx" "$tmp/wrk.out"; then
  echo "bench: the API refused or failed some requests (Non-2xx above; $tmp/api.log): these figures are not its capacity" >&2
  exit 1
fi
echo "== rows written: $(psql -At "$DATABASE_URL" -c "select count(*) from orders") orders, $(psql -At "$DATABASE_URL" -c "select count(*) from outbox where routing_key='order.placed'") order.placed outbox rows, $(psql -At "$DATABASE_URL" -c "select count(*) from idempotency_keys") idempotency keys"
# The latency at about half the rate wrk reached: each connection waits
# DELAY_MS after every answer (wrk's delay()), 2 x conns / rate seconds, so
# that the connections ask at half that rate while the API is not
# saturated.
rate=$(awk '/Requests\/sec/ {printf "%d", $2}' "$tmp/wrk.out")
delay=$((2 * conns * 1000 / (rate > 0 ? rate : 1)))
echo "== wrk: POST /v1/orders at about half of that rate ($conns connections, ${delay} ms between a connection's requests), ${secs}s"
DELAY_MS=$delay wrk -t2 -c"$conns" -d"${secs}s" --latency -s scripts/bench/orders.lua "$url" \
  | grep -E "Requests/sec|50%|90%|99%|Non-2xx|Socket errors"
