package store

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// QueueBehindTheBack queues a statement in tx that changes rows without the
// stores knowing: how a test makes an aggregate's row move on between its
// load and its write, which nothing in shop does.
func QueueBehindTheBack(tx *Tx, sql string, args ...any) { tx.queue(sql, args...) }

// TxID returns the id of the top-level transaction tx runs in (inside a
// savepoint too): how a test tells whether two commands of a Group shared
// one.
func TxID(ctx context.Context, tx *Tx) (int64, error) {
	var id int64
	err := tx.read(ctx, func(rows pgx.Rows) error {
		var err error
		id, err = pgx.CollectExactlyOneRow(rows, pgx.RowTo[int64])
		return err
	}, "SELECT txid_current()")
	return id, err
}

// Waiting returns how many commands wait for the group's next
// transaction.
func Waiting(g *Group) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.pending)
}

// Sends returns how many round trips tx has made: how a test tells whether
// a command's read was answered from what its group read ahead.
func Sends(tx *Tx) int { return tx.sends }
