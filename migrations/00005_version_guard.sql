-- +goose Up
-- shop_expect_one raises when a versioned UPDATE did not change exactly one
-- row: the aggregate changed since it was loaded. Raising inside the
-- statement aborts the transaction, so a COMMIT sent in the same round trip
-- behind it cannot commit the rest. SQLSTATE SH409 is the store's
-- ErrConcurrentUpdate.
-- +goose StatementBegin
CREATE FUNCTION shop_expect_one(changed bigint, what text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF changed <> 1 THEN
        RAISE EXCEPTION '% changed concurrently', what USING ERRCODE = 'SH409';
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION shop_expect_one(bigint, text);
