package outbox

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Notifier wakes the relays after a transaction that appended events has
// committed: it sends pg_notify(NotifyChannel, "3,7,12") naming the
// partitions written to, on a connection of its own, outside the writers'
// transactions.
//
// A NOTIFY inside the writing transaction would be simpler, but Postgres
// then takes a cluster-wide lock at commit and holds it while the commit is
// flushed: notifying transactions commit one at a time, without group
// commit. A NOTIFY on its own writes no WAL, so it holds that lock for
// microseconds.
//
// At most one notification is in flight per process; partitions marked
// meanwhile are merged into the next. A notification lost to a crash or a
// broken connection only delays the rows until the relays' next poll.
//
// A relay in the same process (`shop run`) is woken directly by Notify
// (WakeLocal), and nothing goes to Postgres: that relay publishes the rows
// (and tries again a partition another replica held, Relay.Wake), so the
// other replicas have nothing to gain from a notification, and each one
// costs a round trip, a wake-up of every listening backend and a read in
// every relay (BENCHMARKS.md, machine U).
type Notifier struct {
	pool  *pgxpool.Pool
	log   *slog.Logger
	wake  chan struct{}
	local *Relay // woken directly; nil when none runs in this process

	mu      sync.Mutex
	pending [Partitions]bool
}

// NewNotifier returns a notifier sending on pool; Run must be running.
func NewNotifier(pool *pgxpool.Pool, log *slog.Logger) *Notifier {
	return &Notifier{pool: pool, log: log, wake: make(chan struct{}, 1)}
}

// WakeLocal makes Notify wake r, a relay of this process, at once. Call it
// before the notifier is used.
func (n *Notifier) WakeLocal(r *Relay) { n.local = r }

// Notify marks partitions as having new rows. It never blocks.
func (n *Notifier) Notify(partitions []int16) {
	if len(partitions) == 0 {
		return
	}
	if n.local != nil {
		n.local.Wake(partitions)
		return
	}
	n.mu.Lock()
	for _, p := range partitions {
		n.pending[p] = true
	}
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Run sends notifications until ctx ends.
func (n *Notifier) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.wake:
		}
		payload := n.take()
		if payload == "" {
			continue
		}
		if _, err := n.pool.Exec(ctx, `SELECT pg_notify('`+NotifyChannel+`', $1)`, payload); err != nil && ctx.Err() == nil {
			n.log.Warn("could not notify the relays; they will poll", "error", err.Error())
		}
	}
}

// take returns the pending partitions as a payload, "3,7,12", and clears
// them.
func (n *Notifier) take() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var b strings.Builder
	for p, marked := range n.pending {
		if marked {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(p))
			n.pending[p] = false
		}
	}
	return b.String()
}
