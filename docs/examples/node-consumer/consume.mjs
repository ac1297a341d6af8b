// A subscriber of shop's event stream, in Node: a queue of its own bound to
// the shop.events exchange, every event checked against its schema in
// shop's api/asyncapi.yaml, then handled and acknowledged.
//
//   npm install && AMQP_URL=amqp://guest:guest@localhost:5672/ node consume.mjs
//
// Environment:
//   AMQP_URL      the broker (and vhost) shop publishes to
//   ASYNCAPI      path of shop's asyncapi.yaml (default ../../../api/asyncapi.yaml)
//   QUEUE         a durable queue of this subscriber's own; empty: a temporary
//                 exclusive queue (events published while it is down are lost)
//   BINDINGS      routing keys to bind, comma-separated (default "#": every event)
//   STOP_AFTER    stop after the first event with this routing key (for tests)
//   STRICT        1: stop with exit code 1 at the first event that breaks its schema
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import amqp from "amqplib";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import YAML from "yaml";

const env = process.env;
const docPath = env.ASYNCAPI || fileURLToPath(new URL("../../../api/asyncapi.yaml", import.meta.url));
const doc = YAML.parse(readFileSync(docPath, "utf8"));

// One validator per routing key, compiled from the message's payload schema
// in the document itself, so its $refs resolve as the document wrote them.
// The schemas are closed (additionalProperties: false) so that shop's own
// tests catch an undocumented field; a subscriber that must survive shop
// adding a field (which shop may do without a new schema_version) sets
// STRICT only in its tests, as here.
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(doc, "asyncapi");
const resolve = (ref) => ref.slice(2).split("/").reduce((node, key) => node[key.replace(/~1/g, "/").replace(/~0/g, "~")], doc);
const events = new Map();
for (const [name, channel] of Object.entries(doc.channels)) {
  for (const [msgName, msgRef] of Object.entries(channel.messages || {})) {
    let pointer = msgRef.$ref || `#/channels/${name}/messages/${msgName}`;
    const message = resolve(pointer);
    pointer += message.payload?.schemaFormat ? "/payload/schema" : "/payload";
    events.set(channel.address || name, {
      validate: ajv.compile({ $ref: "asyncapi" + pointer }),
      contentType: message.contentType || doc.defaultContentType,
      deliveryMode: message.bindings?.amqp?.deliveryMode,
    });
  }
}

// check returns what is wrong with a delivery, or nothing.
function check(msg) {
  const key = msg.fields.routingKey;
  const event = events.get(key);
  if (!event) return [`no schema for routing key ${key}`];
  const problems = [];
  if (event.contentType && msg.properties.contentType !== event.contentType)
    problems.push(`content type ${msg.properties.contentType}, want ${event.contentType}`);
  if (event.deliveryMode && msg.properties.deliveryMode !== event.deliveryMode)
    problems.push(`delivery mode ${msg.properties.deliveryMode}, want ${event.deliveryMode}`);
  let envelope;
  try {
    envelope = JSON.parse(msg.content.toString("utf8"));
  } catch (err) {
    return [...problems, `not JSON: ${err.message}`];
  }
  if (!event.validate(envelope))
    problems.push(...event.validate.errors.map((e) => `${e.instancePath || "/"} ${e.message}${e.params?.additionalProperty ? ` (${e.params.additionalProperty})` : ""}`));
  if (msg.properties.messageId !== envelope.id) problems.push(`message_id ${msg.properties.messageId}, want the event id ${envelope.id}`);
  if (msg.properties.type !== key) problems.push(`type ${msg.properties.type}, want ${key}`);
  return problems;
}

const conn = await amqp.connect(env.AMQP_URL || "amqp://guest:guest@localhost:5672/");
const ch = await conn.createChannel();
await ch.checkExchange("shop.events"); // shop declares it; a subscriber only checks it is there
const { queue } = env.QUEUE
  ? await ch.assertQueue(env.QUEUE, { durable: true, arguments: { "x-queue-type": "quorum" } })
  : await ch.assertQueue("", { exclusive: true });
for (const key of (env.BINDINGS || "#").split(",")) await ch.bindQueue(queue, "shop.events", key.trim());
await ch.prefetch(50);

let stopping = false;
async function stop(code) {
  if (stopping) return;
  stopping = true;
  await ch.close().catch(() => {});
  await conn.close().catch(() => {});
  process.exit(code);
}
process.on("SIGTERM", () => stop(0));
process.on("SIGINT", () => stop(0));

await ch.consume(queue, (msg) => {
  if (msg === null) return stop(1); // the queue was deleted
  const problems = check(msg);
  const key = msg.fields.routingKey;
  if (problems.length > 0) {
    console.error(JSON.stringify({ routing_key: key, message_id: msg.properties.messageId, problems }));
    ch.nack(msg, false, false); // a broken event is not retried: it would break again
    if (env.STRICT === "1") stop(1);
    return;
  }
  const event = JSON.parse(msg.content.toString("utf8"));
  // Handle the event here; event.id is its idempotency key (it may come twice).
  console.log(JSON.stringify({ routing_key: key, id: event.id, aggregate_id: event.aggregate_id, aggregate_version: event.aggregate_version, data: event.data }));
  ch.ack(msg);
  if (env.STOP_AFTER && key === env.STOP_AFTER) stop(0);
});
console.error(JSON.stringify({ ready: true, queue, events: events.size }));
