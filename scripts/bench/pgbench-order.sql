-- The transaction POST /v1/orders is measured against: one order row and
-- one ~300-byte outbox row, committed. bench-orders.sh replaces :uid with
-- the customer's id.
BEGIN;
INSERT INTO orders (id, user_id, status, total_cents, version, created_at, updated_at)
VALUES (gen_random_uuid(), :uid, 'pending', 1234, 1, now(), now());
INSERT INTO outbox (event_id, partition, routing_key, aggregate_type, aggregate_id, aggregate_version, payload)
VALUES (gen_random_uuid(), 3, 'order.placed', 'order', gen_random_uuid(), 1,
 '{"type":"order.placed","schema_version":1,"aggregate_type":"order","aggregate_version":1,"occurred_at":"2026-11-25T10:00:00Z","correlation_id":"bench","causation_id":"bench","data":{"order_id":"00000000-0000-0000-0000-000000000000","user_id":"00000000-0000-0000-0000-000000000000","status":"pending","items":[{"sku":"BENCH-1","quantity":2,"unit_price_cents":617}],"total_cents":1234}}');
END;
