#!/usr/bin/env bash
# What each shop process uses under load, for the Kubernetes requests and
# limits (issue 17): the API, the relay and each consumer group run as
# separate processes, as they do in a cluster; then
#  1. `shop loadtest` at RATE (500) requests/s of the default mix (about 40 %
#     orders, each followed to its decision) for SECONDS (30);
#  2. GET /v1/products/{id} at 64 connections (wrk) for SECONDS.
# For each phase and process it prints the CPU used (% of one core, over the
# phase) and the peak resident memory since the process started (VmHWM).
# Usage: scripts/bench-resources.sh [seconds]   (needs wrk, psql, redis-cli, rabbitmqctl)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
base=${BENCH_SERVER_URL:-postgres://postgres@127.0.0.1:5432}
export SHOP_ENV=dev LOG_LEVEL=warn HTTP_ADDR=127.0.0.1:18083 BCRYPT_COST=4 RATE_LIMIT=0
url="http://$HTTP_ADDR"
for tool in wrk psql redis-cli rabbitmqctl curl; do
  command -v $tool >/dev/null || { echo "bench: $tool is required (apt-get install wrk postgresql-client redis-tools curl)"; exit 1; }
done
tmp=$(mktemp -d)
go build -o bin/shop ./cmd/shop
source scripts/bench/lib.sh
bench_fresh resources
./bin/shop migrate 2>/dev/null

declare -A pids
start() { # NAME METRICS_PORT ARGS...
  local name=$1 port=$2; shift 2
  METRICS_ADDR=127.0.0.1:$port ./bin/shop "$@" 2>>"$tmp/$name.log" &
  pids[$name]=$!
}
start api 19083 api
start relay 19084 relay
start orders 19085 consume orders
start inventory 19086 consume inventory
start emails 19087 consume emails
start projections 19088 consume projections
trap 'kill ${pids[*]} 2>/dev/null; wait 2>/dev/null || true; bench_cleanup; rm -rf "$tmp"' EXIT
bench_wait_api
bench_catalogue 50 RES
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F)"

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hwm() { awk '/VmHWM/{printf "%.0f", $2/1024}' "/proc/$1/status"; }
snapshot() { for n in "${!pids[@]}"; do echo "$n $(ticks "${pids[$n]}")"; done | sort; }
report() { # BEFORE AFTER SECONDS
  join "$1" "$2" | while read -r name before after; do
    printf "  %-12s %5.1f%% of a core   peak RSS %4s MiB\n" "$name" \
      "$(echo "($after - $before) * 100 / $(getconf CLK_TCK) / $3" | bc -l)" "$(hwm "${pids[$name]}")"
  done
}

echo "== shop loadtest: ${RATE:-500} requests/s of the default mix for ${secs}s"
snapshot > "$tmp/before"; t0=$(date +%s.%N)
./bin/shop loadtest --url "$url" --rate "${RATE:-500}" --duration "${secs}s" --products 50 \
  --admin-email admin@bench.test --admin-password benchpass1 2>/dev/null | grep -E "POST /v1/orders  |all requests|decided|ok:|FAILED" || true
snapshot > "$tmp/after"; t1=$(date +%s.%N)
report "$tmp/before" "$tmp/after" "$(echo "$t1 - $t0" | bc)"

echo "== GET /v1/products/{id}, 64 connections, ${secs}s"
snapshot > "$tmp/before"; t0=$(date +%s.%N)
PRODUCTS_FILE="$tmp/products" wrk -t2 -c64 -d"${secs}s" -s scripts/bench/products.lua "$url" | grep -E "Requests/sec"
snapshot > "$tmp/after"; t1=$(date +%s.%N)
report "$tmp/before" "$tmp/after" "$(echo "$t1 - $t0" | bc)"
