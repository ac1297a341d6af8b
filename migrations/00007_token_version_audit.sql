-- +goose Up
-- A token carries the token_version its user had when it was issued; the API
-- refuses a token whose version is no longer the user's. Revoking a user's
-- tokens, or changing the role they carry, raises it.
ALTER TABLE users ADD COLUMN token_version bigint NOT NULL DEFAULT 1 CHECK (token_version > 0);

-- The admin actions (catalogue changes, users added, tokens revoked, roles
-- changed), each written in the transaction of the command it records, so a
-- command that rolls back leaves no row. GET /v1/admin/audit pages it newest
-- first by id: the primary key's index, scanned backwards, serves it.
-- Every text is bounded; details holds values the domain validated already.
CREATE TABLE audit_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor_id   uuid,                  -- the user who acted; NULL for the command line
    actor      text NOT NULL CHECK (char_length(actor) <= 64),      -- 'user:<id>' or 'cli'
    action     text NOT NULL CHECK (char_length(action) <= 64),     -- e.g. 'product.create'
    target     text NOT NULL CHECK (char_length(target) <= 128),    -- e.g. 'product:<id>'
    request_id text NOT NULL DEFAULT '' CHECK (char_length(request_id) <= 128), -- empty from the command line
    details    jsonb NOT NULL DEFAULT '{}' CHECK (octet_length(details::text) <= 4096)
);

-- +goose Down
DROP TABLE audit_log;
ALTER TABLE users DROP COLUMN token_version;
