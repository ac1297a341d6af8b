package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ErrKeyTaken means a reply is already stored under the Idempotency-Key:
// by an earlier request, or by a concurrent one that committed first.
var ErrKeyTaken = errors.New("idempotency key already used")

// Response is a command's first response, kept under its Idempotency-Key.
type Response struct {
	RequestHash []byte
	Status      int
	Location    string
	Body        []byte
}

// IdempotencyKeys stores first responses in a transaction.
type IdempotencyKeys struct{ tx *Tx }

// Find returns the response stored under (scope, key), if any.
func (s IdempotencyKeys) Find(ctx context.Context, scope, key string) (Response, bool, error) {
	var r Response
	err := s.tx.read(ctx, func(rows pgx.Rows) (err error) {
		r, err = pgx.CollectExactlyOneRow(rows, func(row pgx.CollectableRow) (Response, error) {
			var r Response
			err := row.Scan(&r.RequestHash, &r.Status, &r.Location, &r.Body)
			return r, err
		})
		return err
	}, `SELECT request_hash, status, location, body FROM idempotency_keys WHERE scope = $1 AND key = $2`, scope, key)
	if errors.Is(err, pgx.ErrNoRows) {
		return Response{}, false, nil
	}
	if err != nil {
		return Response{}, false, fmt.Errorf("find idempotency key: %w", err)
	}
	return r, true, nil
}

// Save queues the insert of a response. The write fails with ErrKeyTaken if
// the key is stored already; if another transaction is storing it right now,
// this one waits for it to end first.
func (s IdempotencyKeys) Save(scope, key string, r Response) {
	s.tx.queue(`INSERT INTO idempotency_keys (scope, key, request_hash, status, location, body)
		VALUES ($1, $2, $3, $4, $5, $6)`, scope, key, r.RequestHash, r.Status, r.Location, r.Body)
}
