#!/usr/bin/env bash
# RabbitMQ's CPU per message on a quorum queue: publish with confirms, then
# consume with one ack per message against one ack (multiple) per 16, with 1
# and 16 consuming channels. Runs in a vhost of its own, deleted at the end.
# Usage: scripts/bench-ackcost.sh   (needs rabbitmqctl and the broker on this machine)
set -euo pipefail
cd "$(dirname "$0")/.."
vhost=shop_bench_ackcost
beam=$(pgrep -o beam.smp) || { echo "bench: no RabbitMQ (beam.smp) running here"; exit 1; }
tmp=$(mktemp -d)
trap 'rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/ackcost" ./scripts/bench/ackcost
rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
rabbitmqctl -q add_vhost "$vhost" && rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*'
for every in 1 16; do
  for consumers in 1 16; do
    "$tmp/ackcost" -url "amqp://guest:guest@127.0.0.1:5672/$vhost" -beam "$beam" -ack-every "$every" -consumers "$consumers"
  done
done
