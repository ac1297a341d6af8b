-- +goose Up
-- Inventory's reservations: per order, the units it holds (domain/stock).
-- The row is the state machine that makes order.placed and order.cancelled
-- give the same outcome in either order: a reservation is decided once.
CREATE TABLE reservations (
    order_id   uuid PRIMARY KEY,
    status     text NOT NULL CHECK (status IN ('reserved', 'rejected', 'released', 'cancelled')),
    lines      jsonb NOT NULL,
    reason     text NOT NULL DEFAULT '',
    version    bigint NOT NULL CHECK (version > 0),
    updated_at timestamptz NOT NULL
);

-- The emails consumer says how each email left: 'smtp' or 'log'.
ALTER TABLE emails ADD COLUMN transport text NOT NULL DEFAULT 'log';

-- +goose Down
ALTER TABLE emails DROP COLUMN transport;
DROP TABLE reservations;
