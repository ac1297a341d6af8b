#!/usr/bin/env bash
# How `shop relay`, as its own process, drains a backlog: ROWS (50,000) outbox
# rows of order.placed (a ~600-byte envelope each, spread over the 16
# partitions) committed before it starts, for each RELAY_BATCH_SIZE in SIZES
# ("500 2000"), in TURNS (3) turns. For each run it prints the drain time,
# the CPU per row of the relay (from its start), Postgres (its polling by this
# script included) and RabbitMQ, and the relay's peak resident memory (VmHWM).
# Then, with LOAD=SECS (default 0: none), the same relay under WRITERS (8) pgbench
# clients committing one such row per transaction as fast as they can, for
# SECS: rows committed and forwarded per second, and the backlog every 5 s
# (relaybench's load phase with the relay in a process of its own).
# Usage: scripts/bench-relay-backlog.sh [ROWS] [TURNS]   (needs psql, rabbitmqctl; pgbench with LOAD)
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-50000} turns=${2:-3} sizes=${SIZES:-500 2000} load=${LOAD:-0} writers=${WRITERS:-8}
base=${BENCH_SERVER_URL:-postgres://postgres@127.0.0.1:5432}
export LOG_LEVEL=warn
for n in "$rows" "$turns" "$load" "$writers"; do
  [[ $n =~ ^[0-9]+$ ]] || { echo "bench: ROWS, TURNS, LOAD and WRITERS are whole numbers, got \"$n\""; exit 2; }
done
[ "$rows" -gt 0 ] && [ "$turns" -gt 0 ] || { echo "bench: ROWS and TURNS must be at least 1"; exit 2; }
for tool in psql rabbitmqctl $([ "$load" -gt 0 ] && echo pgbench); do
  command -v $tool >/dev/null || { echo "bench: $tool is required (apt-get install postgresql-client rabbitmq-server)"; exit 1; }
done
go build -o bin/shop ./cmd/shop
source scripts/bench/lib.sh
relay=""
tmp=$(mktemp -d)
trap 'kill $relay 2>/dev/null || true; wait 2>/dev/null || true; bench_cleanup; rm -rf "$tmp"' EXIT
cat > "$tmp/write.sql" <<'SQL'
\set p random(0, 15)
INSERT INTO outbox (event_id, partition, routing_key, aggregate_type, aggregate_id, aggregate_version, payload)
VALUES (gen_random_uuid(), :p, 'order.placed', 'order', gen_random_uuid(), 1,
  '{"id":"0192f4b6-8f3e-7c1a-9d2b-3e4f5a6b7c8d","type":"order.placed","schema_version":1,"aggregate_type":"order","aggregate_id":"5b0e8a64-1c2d-4e3f-8a9b-0c1d2e3f4a5b","aggregate_version":1,"occurred_at":"2026-12-03T07:00:00.000000Z","correlation_id":"0192f4b6-8f3e-7c1a-9d2b-3e4f5a6b7c8d","causation_id":"0192f4b6-8f3e-7c1a-9d2b-3e4f5a6b7c8d","data":{"order_id":"5b0e8a64-1c2d-4e3f-8a9b-0c1d2e3f4a5b","user_id":"7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f","total_cents":2500,"currency":"EUR","lines":[{"product_id":"9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b","sku":"SKU-1","quantity":2,"price_cents":1250}],"placed_at":"2026-12-03T07:00:00.000000Z"}}');
SQL
hz=$(getconf CLK_TCK)
ticks() { # PROGRAM: CPU ticks of its processes, exited children included
  for f in /proc/[0-9]*/stat; do
    line=$(cat "$f" 2>/dev/null) || continue
    comm=${line#*(}; comm=${comm%%)*}; rest=${line##*) }
    if [ "$comm" = "$1" ]; then echo "$rest" | awk '{print $12+$13+$14+$15}'; fi
  done | awk '{s+=$1} END {print s+0}'
}
echo "== $(nproc) cores; $(date -u '+%F %T') UTC; $rows rows; sizes $sizes"
for turn in $(seq "$turns"); do
  for size in $sizes; do
    bench_fresh backlog
    ./bin/shop migrate 2>/dev/null
    # The queues exist before the rows do: the relay's first connection
    # declares the topology, so start it once with nothing to publish.
    RELAY_BATCH_SIZE=$size METRICS_ADDR=127.0.0.1:19089 ./bin/shop relay >/dev/null 2>&1 & relay=$!
    for _ in $(seq 100); do rabbitmqctl -q list_queues -p "$vhost" name 2>/dev/null | grep -q shop.inventory && break; sleep 0.1; done
    kill $relay; wait $relay 2>/dev/null || true
    psql -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "
      INSERT INTO outbox (event_id, partition, routing_key, aggregate_type, aggregate_id, aggregate_version, payload)
      SELECT e, (get_byte(uuid_send(a), 15) % 16), 'order.placed', 'order', a, 1,
        json_build_object('id', e, 'type', 'order.placed', 'schema_version', 1, 'aggregate_type', 'order',
          'aggregate_id', a, 'aggregate_version', 1, 'occurred_at', now(), 'correlation_id', e, 'causation_id', e,
          'data', json_build_object('order_id', a, 'user_id', gen_random_uuid(), 'total_cents', 2500, 'currency', 'EUR',
            'lines', json_build_array(json_build_object('product_id', gen_random_uuid(), 'sku', 'SKU-' || n, 'quantity', 2, 'price_cents', 1250)),
            'placed_at', now()))
      FROM generate_series(1, $rows) AS n, LATERAL (SELECT gen_random_uuid() AS e, gen_random_uuid() AS a, n AS k) AS x" \
      -c "VACUUM ANALYZE outbox"
    pg0=$(ticks postgres) mq0=$(ticks beam.smp) t0=$(date +%s.%N)
    RELAY_BATCH_SIZE=$size METRICS_ADDR=127.0.0.1:19089 ./bin/shop relay >/dev/null 2>&1 & relay=$!
    while [ "$(psql -qtA "$DATABASE_URL" -c 'SELECT EXISTS (SELECT FROM outbox)')" = t ]; do sleep 0.1; done
    t1=$(date +%s.%N)
    hwm=$(awk '/VmHWM/{print $2}' /proc/$relay/status)
    me=$(awk '{print $14+$15}' /proc/$relay/stat)
    pg1=$(ticks postgres) mq1=$(ticks beam.smp)
    kill $relay; wait $relay 2>/dev/null || true; relay=""
    awk -v n="$rows" -v t0="$t0" -v t1="$t1" -v hz="$hz" -v me="$me" -v pg=$((pg1 - pg0)) -v mq=$((mq1 - mq0)) -v hwm="$hwm" \
      -v turn="$turn" -v size="$size" 'BEGIN {
        s = t1 - t0
        us = 1e6 / hz / n
        printf "turn %d, RELAY_BATCH_SIZE=%d: drained %d rows in %.2f s = %.0f rows/s; CPU per row: relay %.1f µs, postgres %.1f µs, rabbitmq %.1f µs; relay peak RSS %.1f MiB\n",
          turn, size, n, s, n / s, me * us, pg * us, mq * us, hwm / 1024 }'
    if [ "$load" -gt 0 ]; then
      RELAY_BATCH_SIZE=$size METRICS_ADDR=127.0.0.1:19089 ./bin/shop relay >/dev/null 2>&1 & relay=$!
      sleep 1
      (for _ in $(seq $((load / 5))); do sleep 5; psql -qtA "$DATABASE_URL" -c 'SELECT count(*) FROM outbox'; done) > "$tmp/samples" &
      committed=$(pgbench -n -c "$writers" -j 2 -T "$load" -f "$tmp/write.sql" "$DATABASE_URL" 2>/dev/null | awk '/actually processed/ {print $NF}' | cut -d/ -f1)
      left=$(psql -qtA "$DATABASE_URL" -c 'SELECT count(*) FROM outbox')
      wait $! 2>/dev/null || true
      kill $relay; wait $relay 2>/dev/null || true; relay=""
      echo "turn $turn, RELAY_BATCH_SIZE=$size, $writers writers for $load s: committed $((committed / load))/s, forwarded $(((committed - left) / load))/s; backlog every 5 s: $(paste -sd, "$tmp/samples"), at the end $left"
    fi
    bench_cleanup
  done
done
