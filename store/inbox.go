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

// ClaimEach claims every event of events at once, in one statement, as Claim
// claims one, and reports for each whether this transaction is the first to
// apply it. An id that appears twice is claimed by its first appearance
// only: the second reports false.
func (s Inbox) ClaimEach(ctx context.Context, consumer string, events []uuid.UUID) ([]bool, error) {
	claimed := make(map[uuid.UUID]bool, len(events))
	err := s.tx.read(ctx, func(rows pgx.Rows) error {
		for rows.Next() {
			var id uuid.UUID
			if err := rows.Scan(&id); err != nil {
				return err
			}
			claimed[id] = true
		}
		return rows.Err()
	}, `INSERT INTO inbox (consumer, event_id) SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING RETURNING event_id`, consumer, events)
	if err != nil {
		return nil, fmt.Errorf("claim %d inbox rows of %s: %w", len(events), consumer, err)
	}
	first := make([]bool, len(events))
	for i, id := range events {
		first[i] = claimed[id]
		delete(claimed, id) // a second appearance is a duplicate
	}
	return first, nil
}
