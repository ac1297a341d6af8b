package store

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Inbox records which events each consumer has applied.
type Inbox struct{ tx *Tx }

// Claim records that consumer applies event in this transaction and reports
// whether it is the first to: false means the event was applied already (a
// duplicate delivery), and the caller must do nothing. If another
// transaction is applying the same event right now, Claim waits for it to
// end: it then reports false if that one committed.
func (s Inbox) Claim(ctx context.Context, consumer string, event uuid.UUID) (bool, error) {
	var n int
	err := s.tx.read(ctx, func(rows pgx.Rows) error {
		for rows.Next() {
			n++
		}
		return rows.Err()
	}, `INSERT INTO inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1`, consumer, event)
	if err != nil {
		return false, fmt.Errorf("claim inbox %s/%s: %w", consumer, event, err)
	}
	return n == 1, nil
}
