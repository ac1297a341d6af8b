#!/usr/bin/env bash
# Marginal CPU per order: sets up 50 products, then runs the given shop
# subcommands, each as its own process, and places orders at RATE/s (300)
# for SECS s (10) with scripts/bench/confirmlatency; prints every program's
# CPU per order (including the 5 s after the last order), shop's split by
# process, and the relay's and the consumers' counters. Adding one process
# at a time shows what each costs:
#   scripts/bench-marginal.sh api relay "consume inventory"
# (needs psql, redis-cli, rabbitmqctl, curl)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SECS:-10}
base=${BENCH_SERVER_URL:-postgres://postgres@127.0.0.1:5432}
export SHOP_ENV=dev LOG_LEVEL=warn HTTP_ADDR=127.0.0.1:18083 METRICS_ADDR=127.0.0.1:19083 BCRYPT_COST=4
export JWT_SECRET=bench-marginal-secret-of-at-least-32-bytes # the setup process signs the token the others check
export RATE_LIMIT=${RATE_LIMIT:-0} # the load comes from one address: measure capacity, not the limiter
url="http://$HTTP_ADDR"
[ $# -gt 0 ] || { echo "usage: scripts/bench-marginal.sh COMMAND... (e.g. api relay \"consume inventory\")"; exit 2; }
for tool in psql redis-cli rabbitmqctl curl bc; do
  command -v $tool >/dev/null || { echo "bench: $tool is required (apt-get install postgresql-client redis-tools curl bc)"; exit 1; }
done
tmp=$(mktemp -d)
go build -o bin/shop ./cmd/shop
go build -o "$tmp/confirmlatency" ./scripts/bench/confirmlatency
source scripts/bench/lib.sh
bench_fresh marginal

# The catalogue is made with `shop run`, which then stops: the processes
# measured start on a quiet system.
./bin/shop run 2>"$tmp/setup.log" & run=$!
pids=()
trap 'kill $run "${pids[@]}" 2>/dev/null; wait 2>/dev/null || true; bench_cleanup; rm -rf "$tmp"' EXIT
bench_wait_api
bench_catalogue 50 MARGINAL
sleep 2; kill $run; wait $run || true

i=0
for cmd in "$@"; do
  i=$((i + 1))
  # shellcheck disable=SC2086 # a command and its arguments
  METRICS_ADDR=127.0.0.1:$((19100 + i)) ./bin/shop $cmd 2>>"$tmp/procs.log" & pids+=($!)
done
if [[ " $* " == *" api "* ]]; then bench_wait_api; fi
sleep 2

# pid_ticks prints the CPU ticks (user+system) of each shop process, in
# the order of the commands.
pid_ticks() { for pid in "${pids[@]}"; do awk '{print $14+$15}' "/proc/$pid/stat"; done; }
pid_ticks > "$tmp/pids.before"
bench_cpu_ticks > "$tmp/cpu.before"; started=$(date +%s.%N)
"$tmp/confirmlatency" -url "$url" -token "$buyer" -products "$(paste -sd, "$tmp/products")" \
  -rate "${RATE:-300}" -for "${secs}s" -prefix "$prefix" || true # nothing is decided without every group
bench_cpu_ticks > "$tmp/cpu.after"; ended=$(date +%s.%N)
pid_ticks > "$tmp/pids.after"
orders=$(psql -qtA "$DATABASE_URL" -c "SELECT count(*) FROM orders")
echo "== processes: $*; $orders orders; CPU per order:"
bench_cpu_per_order "$tmp/cpu.before" "$tmp/cpu.after" "$orders" "$(echo "$ended - $started" | bc)"
echo "== shop, by process:"
printf '%s\n' "$@" | paste - "$tmp/pids.before" "$tmp/pids.after" |
  awk -F'\t' -v n="$orders" -v hz="$(getconf CLK_TCK)" '{ printf "  %-22s %7.3f ms/order\n", $1, ($3 - $2) * 1000 / hz / n }'
echo "== counters:"
for n in $(seq ${#pids[@]}); do
  curl -fs "127.0.0.1:$((19100 + n))/metrics" |
    grep -E "^(shop_consumer_messages_total|shop_consumer_batch_events_(sum|count)|shop_consumer_event_age_seconds_(sum|count)|shop_consumer_apply_seconds_(sum|count)|shop_relay_lag_seconds_(sum|count)|shop_relay_publish_seconds_(sum|count)|shop_relay_batch_size_(sum|count)|shop_relay_published_total)" || true
done
