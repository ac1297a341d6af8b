#!/usr/bin/env bash
# placed → decided latency against the offered rate: `shop run` on a fresh
# database, vhost and Redis prefix, then `shop loadtest` placing orders only,
# at each rate in RATES for SECS seconds; the p50 and p99 of the time from an
# order's 202 to its decision seen through GET ?min_version (the load
# generator's end to end) go to docs/benchmarks/placed-to-decided.svg and,
# as a table, to stdout.
# Usage: scripts/bench-latency-curve.sh [secs] (RATES="100 200 300 400 500 600")
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
rates=${RATES:-100 200 300 400 500 600}
base=${BENCH_SERVER_URL:-postgres://postgres@127.0.0.1:5432}
export SHOP_ENV=dev LOG_LEVEL=warn HTTP_ADDR=127.0.0.1:18083 METRICS_ADDR=127.0.0.1:19083 BCRYPT_COST=4
export RATE_LIMIT=0 # the load comes from one address: measure capacity, not the limiter
url="http://$HTTP_ADDR"
for tool in psql redis-cli rabbitmqctl curl; do
  command -v $tool >/dev/null || { echo "bench: $tool is required"; exit 1; }
done
tmp=$(mktemp -d)
go build -o bin/shop ./cmd/shop
go build -o "$tmp/plotcurve" ./scripts/bench/plotcurve
source scripts/bench/lib.sh
bench_fresh curve
./bin/shop migrate 2>/dev/null
echo benchpass1 | ./bin/shop user add --email admin@bench.test --admin >/dev/null 2>&1
./bin/shop run 2>"$tmp/run.log" & run=$!
trap 'kill $run 2>/dev/null; wait $run 2>/dev/null || true; bench_cleanup; rm -rf "$tmp"' EXIT
bench_wait_api
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F); commit $(git rev-parse --short HEAD)"
for rate in $rates; do
  ./bin/shop loadtest --url "$url" --rate "$rate" --duration "${secs}s" --mix place=100 --customers 50 --products 100 \
    --admin-email admin@bench.test --admin-password benchpass1 --json > "$tmp/rate-$rate.json" 2>/dev/null || true
done
"$tmp/plotcurve" -o docs/benchmarks/placed-to-decided.svg "$tmp"/rate-*.json
