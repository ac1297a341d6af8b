-- +goose Up
-- A rejected order keeps why (inventory's reason), so that its owner can
-- read it back.
ALTER TABLE orders ADD COLUMN reason text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE orders DROP COLUMN reason;
