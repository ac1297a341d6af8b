package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Inbox records which events each consumer has applied.
type Inbox struct{ tx *Tx }

// Claim is a consumer's claim of events, queued in a transaction: it
// travels with the transaction's next round trip (its first read, or
// Tx.Flush), so that a consumer's claim and its handlers' reads cost one.
type Claim struct {
	what    string
	events  []uuid.UUID
	claimed map[uuid.UUID]bool // nil until the claim was answered
}

// Queue queues the claim by consumer of every event of events, in one
// statement. Once it has been sent, First reports for each event whether
// this transaction is the first to apply it: false means it was applied
// already (a duplicate delivery), and the caller must do nothing for it.
// An id that appears twice is claimed by its first appearance only. If
// another transaction is applying one of the events right now, the claim
// waits for it to end, and reports false if that one committed.
func (s Inbox) Queue(consumer string, events ...uuid.UUID) *Claim {
	c := &Claim{what: fmt.Sprintf("%d inbox rows of %s", len(events), consumer), events: events}
	s.tx.queueRead(func(rows pgx.Rows) error {
		claimed := make(map[uuid.UUID]bool, len(events))
		for rows.Next() {
			var id uuid.UUID
			if err := rows.Scan(&id); err != nil {
				return err
			}
			claimed[id] = true
		}
		if err := rows.Err(); err != nil {
			return err
		}
		c.claimed = claimed
		return nil
	}, `INSERT INTO inbox (consumer, event_id) SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING RETURNING event_id`, consumer, events)
	return c
}

// Release queues the removal of consumer's claims of events made earlier
// in this transaction, for events a batch took out after claiming them:
// they commit unclaimed, to be applied again on their own.
func (s Inbox) Release(consumer string, events ...uuid.UUID) {
	s.tx.queue(`DELETE FROM inbox WHERE consumer = $1 AND event_id = ANY($2::uuid[])`, consumer, events)
}

// errUnsent is First asked before the claim's round trip.
var errUnsent = errors.New("the claim has not been sent yet")

// First reports, for each event of the claim in order, whether this
// transaction is the first to apply it. It fails until the claim has been
// sent and answered.
func (c *Claim) First() ([]bool, error) {
	if c.claimed == nil {
		return nil, fmt.Errorf("claim %s: %w", c.what, errUnsent)
	}
	first := make([]bool, len(c.events))
	seen := make(map[uuid.UUID]bool, len(c.events))
	for i, id := range c.events {
		first[i] = c.claimed[id] && !seen[id] // a second appearance is a duplicate
		seen[id] = true
	}
	return first, nil
}

// Claim claims one event now, in a round trip of its own unless reads are
// queued with it, and reports whether this transaction is the first to
// apply it (Queue says what that means).
func (s Inbox) Claim(ctx context.Context, consumer string, event uuid.UUID) (bool, error) {
	first, err := s.ClaimEach(ctx, consumer, []uuid.UUID{event})
	if err != nil {
		return false, err
	}
	return first[0], nil
}

// ClaimEach claims every event of events now, as Queue and First do.
func (s Inbox) ClaimEach(ctx context.Context, consumer string, events []uuid.UUID) ([]bool, error) {
	c := s.Queue(consumer, events...)
	if err := s.tx.Flush(ctx); err != nil {
		return nil, fmt.Errorf("claim %s: %w", c.what, err)
	}
	return c.First()
}
