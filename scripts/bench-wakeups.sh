#!/usr/bin/env bash
# What this machine charges a dependency for each time it is woken, without
# shop: the same work done at a pace against as fast as it goes.
#  1. Postgres: bench-orders.sh's transaction (BEGIN; INSERT order; INSERT outbox;
#     END, four round trips in pgbench's simple mode), 8 clients, paced at
#     RATES transactions/s with pgbench -R, then unpaced; Postgres's CPU (every
#     postgres process, the children it reaped included) per transaction.
#  2. RabbitMQ: one persistent message at a time, published, its confirm
#     awaited, delivered and acked (scripts/bench/ackcost -rate), at RATES
#     messages/s to a quorum and to a classic queue, then ackcost's unpaced
#     run (50 messages per confirm wait); the broker's CPU per message.
# A pipeline whose hops go one event at a time pays the paced figures.
# Usage: scripts/bench-wakeups.sh [seconds per rate]   (needs pgbench, psql,
#   rabbitmqctl, and Postgres and RabbitMQ on this machine) RATES="50 100 300 1000"
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rates=${RATES:-50 100 300 1000}
base=${BENCH_SERVER_URL:-postgres://postgres@127.0.0.1:5432}
for tool in pgbench psql rabbitmqctl; do
  command -v $tool >/dev/null || { echo "bench: $tool is required"; exit 1; }
done
beam=$(pgrep -o beam.smp) || { echo "bench: no RabbitMQ (beam.smp) running here"; exit 1; }
db=shop_bench_wakeups_$$ vhost=shop_bench_wakeups_$$
tmp=$(mktemp -d)
trap 'psql -q "$base/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1; rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/shop" ./cmd/shop
go build -o "$tmp/ackcost" ./scripts/bench/ackcost
psql -q "$base/postgres" -c "CREATE DATABASE $db"
export DATABASE_URL="$base/$db?sslmode=disable" BCRYPT_COST=4
"$tmp/shop" migrate 2>/dev/null
uid=$(echo benchpass1 | "$tmp/shop" user add --email buyer@bench.test 2>/dev/null | cut -d' ' -f1)
sed "s/:uid/'$uid'/" scripts/bench/pgbench-order.sql > "$tmp/order.sql"
rabbitmqctl -q add_vhost "$vhost" && rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*'

# postgres_ticks sums the CPU ticks of every postgres process, with what the
# children each reaped (a backend that ended) had spent.
postgres_ticks() {
  local total=0 p fields
  for p in $(pgrep -x postgres); do
    fields=$(cut -d')' -f2- "/proc/$p/stat" 2>/dev/null) || continue
    set -- $fields
    total=$((total + ${12} + ${13} + ${14} + ${15}))
  done
  echo $total
}

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(psql -At "$base/postgres" -c 'show server_version'); $(date -u +%F)"
echo "== Postgres: bench-orders.sh's transaction, 8 clients, ${secs}s a rate (pgbench -M simple)"
for rate in $rates 0; do
  pace="-R $rate"; label="$rate/s"
  [ "$rate" = 0 ] && pace="" label="unpaced"
  before=$(postgres_ticks)
  out=$(pgbench -n -c 8 -j 2 -T "$secs" $pace -f "$tmp/order.sql" "$DATABASE_URL" 2>&1)
  after=$(postgres_ticks)
  n=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
  tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
  awk -v l="$label" -v n="$n" -v t="$tps" -v d="$((after - before))" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "  %-8s %6d transactions (%.0f tps): Postgres %.3f ms per transaction\n", l, n, t, d * 1000 / hz / n }'
done
echo "== RabbitMQ: one persistent message at a time (publish, confirm, deliver, ack), ${secs}s a rate"
for type in quorum classic; do
  for rate in $rates; do
    "$tmp/ackcost" -url "amqp://guest:guest@127.0.0.1:5672/$vhost" -beam "$beam" -queue-type "$type" \
      -rate "$rate" -n "$((rate * secs))" | sed "s/^/  $type: /"
  done
  "$tmp/ackcost" -url "amqp://guest:guest@127.0.0.1:5672/$vhost" -beam "$beam" -queue-type "$type" | sed "s/^/  $type, unpaced: /"
done
