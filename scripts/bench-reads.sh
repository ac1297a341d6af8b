#!/usr/bin/env bash
# Benchmark of the read side (issue 5), in one run:
#  1. GET /v1/products/{id} over 1,000 products at 64 connections (wrk) against `shop run`,
#     then the same wrk command against a bare net/http handler answering a small JSON;
#  2. the time from POST /v1/orders answered 202 to the order confirmed in Redis, at RATE (300)
#     orders/s
#     (scripts/bench/confirmlatency, which listens to the projector's Pub/Sub announcements).
# Usage: scripts/bench-reads.sh [seconds]   (needs wrk, psql, redis-cli, rabbitmqctl)
#   PHASES="reads orders" (default both), RATE=300 (orders/s).
# During the orders phase it also prints the CPU each program used, per order.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
base=${BENCH_SERVER_URL:-postgres://postgres@127.0.0.1:5432}
db=shop_bench_reads vhost=shop_bench_reads prefix=shopbench:
export DATABASE_URL="$base/$db?sslmode=disable" AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$vhost"
export REDIS_PREFIX=$prefix SHOP_ENV=dev LOG_LEVEL=warn HTTP_ADDR=127.0.0.1:18081 BCRYPT_COST=4
url="http://$HTTP_ADDR"

for tool in wrk psql redis-cli rabbitmqctl curl; do
  command -v $tool >/dev/null || { echo "bench: $tool is required"; exit 1; }
done
tmp=$(mktemp -d)
go build -o bin/shop ./cmd/shop
go build -o "$tmp/bare" ./scripts/bench/bare
go build -o "$tmp/confirmlatency" ./scripts/bench/confirmlatency
psql -q "$base/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
rabbitmqctl -q add_vhost "$vhost" && rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*'
redis-cli --scan --pattern "$prefix*" | xargs -r redis-cli del >/dev/null

./bin/shop run 2>"$tmp/run.log" & run=$!
bare=""
trap 'kill $run $bare 2>/dev/null; wait $run 2>/dev/null || true; rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1; cp "$tmp/run.log" /tmp/bench-reads-run.log 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do curl -fs "$url/healthz" >/dev/null && break; sleep 0.2; done
./bin/shop user add --email admin@bench.test --password benchpass --admin >/dev/null 2>&1
./bin/shop user add --email buyer@bench.test --password benchpass >/dev/null 2>&1
token() { curl -fs -X POST "$url/v1/tokens" -d "{\"email\":\"$1\",\"password\":\"benchpass\"}" | sed 's/.*"token":"\([^"]*\)".*/\1/'; }
admin=$(token admin@bench.test) buyer=$(token buyer@bench.test)
seq 1000 | xargs -P 8 -I{} curl -fs -X POST "$url/v1/products" -H "Authorization: Bearer $admin" \
  -d '{"sku":"READ-{}","name":"Read item {}","price_cents":250,"stock":1000000}' \
  | grep -o '"id":"[^"]*"' | cut -d'"' -f4 > "$tmp/products"
for _ in $(seq 100); do [ "$(redis-cli zcard "${prefix}products")" = 1000 ] && break; sleep 0.2; done
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F); $(wc -l < "$tmp/products") products, $(redis-cli zcard "${prefix}products") in Redis"

phases=${PHASES:-reads orders}

# cpu_ticks: CPU ticks (user+system, of exited children too) per program name, summed
# over its processes, for the programs of this benchmark.
cpu_ticks() {
  for f in /proc/[0-9]*/stat; do
    line=$(cat "$f" 2>/dev/null) || continue
    comm=${line#*(}; comm=${comm%%)*}; rest=${line##*) }
    # fields after the name: 12 utime, 13 stime, 14 cutime, 15 cstime
    echo "$comm $(echo "$rest" | awk '{print $12+$13+$14+$15}')"
  done | awk '{c[$1]+=$2} END {for (k in c) print k, c[k]}' |
    grep -E '^(shop|postgres|beam.smp|redis-server|confirmlatency|wrk) ' | sort
}

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
echo "== POST /v1/orders at ${RATE:-300}/s for ${secs}s: 202 → confirmed in Redis"
orders_before=$(psql -qtA "$DATABASE_URL" -c "SELECT count(*) FROM orders")
cpu_ticks > "$tmp/cpu.before"; started=$(date +%s.%N)
"$tmp/confirmlatency" -url "$url" -token "$buyer" -products "$(head -50 "$tmp/products" | paste -sd,)" \
  -rate "${RATE:-300}" -for "${secs}s" -prefix "$prefix"
cpu_ticks > "$tmp/cpu.after"; ended=$(date +%s.%N)
orders=$(( $(psql -qtA "$DATABASE_URL" -c "SELECT count(*) FROM orders") - orders_before ))
echo "== CPU per order over the phase ($orders orders, $(nproc) cores; includes the 5 s drain):"
join "$tmp/cpu.before" "$tmp/cpu.after" | awk -v n="$orders" -v hz="$(getconf CLK_TCK)" \
  -v wall="$(echo "$ended - $started" | bc)" -v cores="$(nproc)" '
  { ms = ($3 - $2) * 1000 / hz; total += ms; printf "  %-15s %7.3f ms/order\n", $1, ms / n }
  END { printf "  %-15s %7.3f ms/order; machine %.0f%% busy\n", "all", total / n, total / 10 / wall / cores }'
fi
