#!/usr/bin/env bash
# Marginal CPU per order: sets up 50 products, then runs the given shop
# subcommands, each as its own process, and places orders at RATE/s for
# SECS s (scripts/bench/confirmlatency); prints every program's CPU per
# order (including the 5 s after the last order) and the relay's and the
# consumers' counters. Adding one process at a time shows what each costs:
#   scripts/bench-marginal.sh api relay "consume inventory"
# (needs psql, redis-cli, rabbitmqctl, curl)
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${SECS:-10}
base=postgres://postgres@127.0.0.1:5432
db=shop_marg vhost=shop_marg prefix=shopmarg:
export DATABASE_URL="$base/$db?sslmode=disable" AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$vhost"
export REDIS_PREFIX=$prefix SHOP_ENV=dev LOG_LEVEL=warn HTTP_ADDR=127.0.0.1:18083 BCRYPT_COST=4 CONSUMER_CONCURRENCY=${CONSUMER_CONCURRENCY:-16}
url="http://$HTTP_ADDR"
tmp=$(mktemp -d)
go build -o bin/shop ./cmd/shop && go build -o "$tmp/confirmlatency" ./scripts/bench/confirmlatency
psql -q "$base/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null
rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1; rabbitmqctl -q add_vhost "$vhost" && rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*'
redis-cli --scan --pattern "$prefix*" | xargs -r redis-cli del >/dev/null
./bin/shop run 2>$tmp/setup.log & run=$!
for _ in $(seq 100); do curl -fs "$url/healthz" >/dev/null && break; sleep 0.2; done
./bin/shop user add --email admin@bench.test --password benchpass --admin >/dev/null 2>&1
./bin/shop user add --email buyer@bench.test --password benchpass >/dev/null 2>&1
token() { curl -fs -X POST "$url/v1/tokens" -d "{\"email\":\"$1\",\"password\":\"benchpass\"}" | sed 's/.*"token":"\([^"]*\)".*/\1/'; }
admin=$(token admin@bench.test) buyer=$(token buyer@bench.test)
seq 50 | xargs -P 8 -I{} curl -fs -X POST "$url/v1/products" -H "Authorization: Bearer $admin" \
  -d '{"sku":"M-{}","name":"M {}","price_cents":250,"stock":1000000}' | grep -o '"id":"[^"]*"' | cut -d'"' -f4 > "$tmp/products"
sleep 2; kill $run; wait $run
pids=()
i=0
for cmd in "$@"; do i=$((i+1)); METRICS_ADDR=127.0.0.1:$((19100+i)) ./bin/shop $cmd 2>>$tmp/procs.log & pids+=($!); done
for _ in $(seq 100); do curl -fs "$url/healthz" >/dev/null && break; sleep 0.2; done
sleep 2
byname() { for f in /proc/[0-9]*/stat; do line=$(cat "$f" 2>/dev/null) || continue; comm=${line#*(}; comm=${comm%%)*}; rest=${line##*) }; echo "$comm $(echo "$rest" | awk '{print $12+$13}')"; done | awk '{c[$1]+=$2} END {for (k in c) print k, c[k]}' | grep -E '^(shop|postgres|beam.smp|redis-server) ' | sort; }
byname > $tmp/b; 
"$tmp/confirmlatency" -url "$url" -token "$buyer" -products "$(paste -sd, $tmp/products)" -rate ${RATE:-300} -for ${secs}s -prefix "$prefix" 2>&1 | grep -v "^$"
byname > $tmp/a
n=$(psql -qtA "$DATABASE_URL" -c "select count(*) from orders")
echo "procs: $* ; orders $n"
join $tmp/b $tmp/a | awk -v n=$n -v hz="$(getconf CLK_TCK)" '{ms=($3-$2)*1000/hz/n; t+=ms; printf "  %-12s %.3f ms/order\n", $1, ms} END {printf "  all %.3f ms/order\n", t}'
for i in $(seq ${#pids[@]}); do curl -s 127.0.0.1:$((19100+i))/metrics | grep -E "^(shop_consumer_messages_total|shop_relay_batch_size_(sum|count)|shop_relay_published_total)" ; done; kill ${pids[@]}; wait
rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1
rm -rf $tmp
