-- +goose Up
-- The transactional outbox: every event a command records, written in the
-- command's transaction. The relay publishes rows per partition in id order
-- and deletes them once RabbitMQ confirmed them.
CREATE TABLE outbox (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id          uuid NOT NULL UNIQUE,
    partition         smallint NOT NULL CHECK (partition >= 0),
    routing_key       text NOT NULL,
    aggregate_type    text NOT NULL,
    aggregate_id      uuid NOT NULL,
    aggregate_version bigint NOT NULL,
    payload           json NOT NULL, -- the event envelope, published as is
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_partition_id ON outbox (partition, id);

-- The inbox: one row per event a consumer has applied, written in the same
-- transaction as the effect, so a redelivered event does nothing.
CREATE TABLE inbox (
    consumer     text NOT NULL,
    event_id     uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Idempotency-Key: the first response of a command, stored in the command's
-- transaction. The primary key makes concurrent retries race-free.
CREATE TABLE idempotency_keys (
    scope        text NOT NULL,   -- the caller: a user id, or 'anonymous'
    key          text NOT NULL,
    request_hash bytea NOT NULL,  -- sha256 of method, path and body
    status       int NOT NULL,
    location     text NOT NULL DEFAULT '',
    body         bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Every email the system sent (or logged), at most one per event and kind.
CREATE TABLE emails (
    id         uuid PRIMARY KEY,
    event_id   uuid NOT NULL,
    kind       text NOT NULL,
    user_id    uuid,
    recipient  text NOT NULL,
    subject    text NOT NULL,
    body       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, kind)
);

-- +goose Down
DROP TABLE emails;
DROP TABLE idempotency_keys;
DROP TABLE inbox;
DROP TABLE outbox;
