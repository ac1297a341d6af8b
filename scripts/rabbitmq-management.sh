#!/usr/bin/env bash
# Makes sure RabbitMQ's management API answers on 127.0.0.1:15672, as the tests of the queue-depth
# metrics need (consumer processes read shop_consumer_queue_messages there): when it does not and
# this machine runs RabbitMQ, it enables the plugin, which ships with the server.
set -euo pipefail
up() { curl -sf -m 5 -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null 2>&1; }
up && exit 0
if ! command -v rabbitmq-plugins >/dev/null; then
  echo "RabbitMQ's management API does not answer on 127.0.0.1:15672, and rabbitmq-plugins is not here to enable it:" >&2
  echo "enable it where RabbitMQ runs: rabbitmq-plugins enable rabbitmq_management" >&2
  exit 1
fi
echo "enabling RabbitMQ's management plugin: rabbitmq-plugins enable rabbitmq_management"
rabbitmq-plugins enable rabbitmq_management >/dev/null
for _ in $(seq 60); do up && exit 0; sleep 1; done
echo "RabbitMQ's management API did not answer on 127.0.0.1:15672 within 60 s" >&2
exit 1
