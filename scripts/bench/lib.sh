# Shared by the benchmark scripts that run a whole shop (bench-reads.sh,
# bench-marginal.sh); source it after setting base, url and tmp.

# bench_fresh NAME gives the benchmark a database, a vhost and a Redis prefix
# of this run's own (named after NAME and the script's pid, so that nothing
# of anyone else's is touched), exports DATABASE_URL, AMQP_URL and
# REDIS_PREFIX, and sets db, vhost and prefix; bench_cleanup removes them.
bench_fresh() {
  db=shop_bench_$1_$$ vhost=shop_bench_$1_$$ prefix=shopbench$1$$:
  export DATABASE_URL="$base/$db?sslmode=disable" AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$vhost" REDIS_PREFIX=$prefix
  rabbitmqctl -q add_vhost "$vhost" && rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*'
}

bench_cleanup() {
  psql -q "$base/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
  redis-cli --scan --pattern "$prefix*" | xargs -r redis-cli del >/dev/null || true
}

# bench_wait_api waits until the API at $url answers /healthz.
bench_wait_api() {
  for _ in $(seq 100); do curl -fs "$url/healthz" >/dev/null && return 0; sleep 0.2; done
  echo "bench: the API at $url did not come up" >&2
  return 1
}

# bench_catalogue N SKU: against a running API, adds an admin and a buyer
# (their tokens in $admin and $buyer) and N products with 1,000,000 in
# stock, whose ids go to $tmp/products. With BUYERS=K (default 1), K buyers:
# $buyers holds their tokens, comma-separated, for confirmlatency -token.
bench_catalogue() {
  echo benchpass1 | ./bin/shop user add --email admin@bench.test --admin >/dev/null 2>&1
  echo benchpass1 | ./bin/shop user add --email buyer@bench.test >/dev/null 2>&1
  admin=$(bench_token admin@bench.test) buyer=$(bench_token buyer@bench.test)
  buyers=$buyer
  for i in $(seq 2 "${BUYERS:-1}"); do
    echo benchpass1 | ./bin/shop user add --email "buyer$i@bench.test" >/dev/null 2>&1
    buyers="$buyers,$(bench_token "buyer$i@bench.test")"
  done
  seq "$1" | xargs -P 8 -I{} curl -fs -H "Authorization: Bearer $admin" "$url/v1/products" \
    --json "{\"sku\":\"$2-{}\",\"name\":\"Item $2-{}\",\"price_cents\":250,\"stock\":1000000}" \
    | grep -o '"id":"[^"]*"' | cut -d'"' -f4 > "$tmp/products"
}

bench_token() {
  curl -fs --json "{\"email\":\"$1\",\"password\":\"benchpass1\"}" "$url/v1/tokens" | sed 's/.*"token":"\([^"]*\)".*/\1/'
}

# bench_cpu_ticks prints the CPU ticks (user+system, of exited children
# too) per program name, summed over its processes, for the programs of a
# benchmark.
bench_cpu_ticks() {
  for f in /proc/[0-9]*/stat; do
    line=$(cat "$f" 2>/dev/null) || continue
    comm=${line#*(}; comm=${comm%%)*}; rest=${line##*) }
    # fields after the name: 12 utime, 13 stime, 14 cutime, 15 cstime
    echo "$comm $(echo "$rest" | awk '{print $12+$13+$14+$15}')"
  done | awk '{c[$1]+=$2} END {for (k in c) print k, c[k]}' |
    grep -E '^(shop|postgres|beam.smp|redis-server|confirmlatency|wrk|otlpsink) ' | sort
}

# bench_cpu_per_order BEFORE AFTER ORDERS SECONDS prints each program's CPU
# between two bench_cpu_ticks files per order, the sum, and how busy the
# machine was over SECONDS of wall time.
bench_cpu_per_order() {
  join "$1" "$2" | awk -v n="$3" -v hz="$(getconf CLK_TCK)" -v wall="$4" -v cores="$(nproc)" '
    { ms = ($3 - $2) * 1000 / hz; total += ms; printf "  %-15s %7.3f ms/order\n", $1, ms / n }
    END { printf "  %-15s %7.3f ms/order; machine %.0f%% busy\n", "all", total / n, total / 10 / wall / cores }'
}

# bench_lag BEFORE AFTER prints, from two scrapes of shop's /metrics, the
# mean lag of each hop between them: the relay's (an event's transaction to
# its confirmed publish) and each group's (an event's transaction to its
# effect, so the relay's hop included), and the relay's mean round.
bench_lag() {
  awk '
    FNR == 1 { f++ }
    /^shop_consumer_event_age_seconds_(sum|count)/ { split($1, a, "\""); k = ($1 ~ /_sum/ ? "s" : "c") a[2]; v[f, k] = $2; groups[a[2]] = 1 }
    /^shop_relay_lag_seconds_(sum|count)/ { k = ($1 ~ /_sum/ ? "s" : "c") "relay"; v[f, k] = $2 }
    /^shop_relay_publish_seconds_(sum|count)/ { k = ($1 ~ /_sum/ ? "s" : "c") "round"; v[f, k] = $2 }
    /^shop_relay_round_phase_seconds_(sum|count)/ { split($1, a, "\""); k = ($1 ~ /_sum/ ? "s" : "c") "phase " a[2]; v[f, k] = $2; phases[a[2]] = 1 }
    function mean(g) { n = v[2, "c" g] - v[1, "c" g]; return n > 0 ? 1000 * (v[2, "s" g] - v[1, "s" g]) / n : 0 }
    END {
      printf "  mean lag: relay %.0f ms (rounds of %.1f ms)", mean("relay"), mean("round")
      for (g in groups) printf ", %s %.0f ms", g, mean(g)
      print ""
      if (length(phases) > 0) {
        printf "  relay round phases (mean):"
        n = split("claim send confirm commit", order, " ")
        for (i = 1; i <= n; i++) if (order[i] in phases) printf " %s %.2f ms", order[i], mean("phase " order[i])
        print ""
      }
    }' "$1" "$2"
}
