package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopdev/shop/domain"
)

// ErrBehind refuses a command that waited Backlog's whole Wait while the
// outbox held its bound of unsent rows or more: the relays are behind the
// writers, and taking more would only make the events of every command
// later. It is domain.ErrUnavailable, which the API answers 503 with
// Retry-After.
var ErrBehind = fmt.Errorf("%w: the relay is behind, too many events wait in the outbox; retry later", domain.ErrUnavailable)

// BacklogConfig configures a Backlog.
type BacklogConfig struct {
	// Pool is the database whose outbox is watched. Required.
	Pool *pgxpool.Pool
	// Max is the bound: while the outbox holds this many unsent rows or
	// more, Admit waits. Required (1 or more).
	Max int
	// Poll is how often the rows are counted (default 200ms). Between two
	// counts, writers can add what they commit in one Poll above Max.
	Poll time.Duration
	// Wait is how long Admit waits for the outbox to fall under Max before
	// it gives up with ErrBehind (default 2s).
	Wait time.Duration
	// Logger hears when counting fails and when it works again (default:
	// slog.Default()).
	Logger *slog.Logger
	// Registry gets the metrics (none when nil).
	Registry prometheus.Registerer
}

// Validate fills defaults and checks the configuration.
func (c *BacklogConfig) Validate() error {
	if c.Poll == 0 {
		c.Poll = 200 * time.Millisecond
	}
	if c.Wait == 0 {
		c.Wait = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.Pool == nil:
		return errors.New("outbox backlog: a pool is required")
	case c.Max < 1:
		return fmt.Errorf("outbox backlog: the bound must be 1 row or more, not %d", c.Max)
	case c.Poll < time.Millisecond:
		return fmt.Errorf("outbox backlog: poll must be 1ms or more, not %s", c.Poll)
	case c.Wait < 0:
		return fmt.Errorf("outbox backlog: wait must be 0 or more, not %s", c.Wait)
	}
	return nil
}

// Backlog is the write side's brake: it counts the outbox's unsent rows
// every Poll, and while there are Max or more, Admit holds new commands
// until the relays have brought it under Max again. Without it, writers
// faster than the relays (on a machine whose cores they share with
// RabbitMQ) grow the outbox, and the lag of every event, without end; with
// it, the outbox stays near Max and the writers go at the relays' pace.
//
// Counting stops at Max rows, so a count costs at most a scan of Max rows.
// When it fails (Postgres down), the brake is off: commands then fail, or
// not, on their own.
type Backlog struct {
	cfg     BacklogConfig
	full    atomic.Bool
	mu      sync.Mutex
	open    chan struct{} // closed when the outbox falls under Max
	pending prometheus.Gauge
	held    prometheus.Counter
	refused prometheus.Counter
}

// NewBacklog returns a Backlog; Run counts.
func NewBacklog(cfg BacklogConfig) (*Backlog, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Backlog{cfg: cfg, open: make(chan struct{}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shop_outbox_backlog_rows", Help: "Unsent rows in the outbox at the last count of the API's brake, counted up to its bound (OUTBOX_MAX_PENDING).",
		}),
		held: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shop_outbox_backlog_held_total", Help: "Commands that waited because the outbox held its bound of unsent rows (OUTBOX_MAX_PENDING).",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shop_outbox_backlog_refused_total", Help: "Commands refused (503) because the outbox stayed at its bound of unsent rows for OUTBOX_WAIT.",
		}),
	}
	close(b.open)
	if cfg.Registry != nil {
		for _, c := range []prometheus.Collector{b.pending, b.held, b.refused} {
			if err := cfg.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("outbox backlog: register metrics: %w", err)
			}
		}
	}
	return b, nil
}

// Run counts the outbox's rows every Poll until ctx ends.
func (b *Backlog) Run(ctx context.Context) {
	t := time.NewTicker(b.cfg.Poll)
	defer t.Stop()
	failing := false
	for {
		n, err := b.Count(ctx)
		switch {
		case ctx.Err() != nil:
			b.set(false)
			return
		case err != nil:
			if !failing {
				b.cfg.Logger.Warn("outbox backlog: counting failed; commands are not held until it works again", slog.String("error", err.Error()))
			}
			failing = true
			b.set(false)
		default:
			if failing {
				b.cfg.Logger.Info("outbox backlog: counting works again")
			}
			failing = false
			b.pending.Set(float64(n))
			b.set(n >= b.cfg.Max)
		}
		select {
		case <-ctx.Done():
			b.set(false)
			return
		case <-t.C:
		}
	}
}

// Count returns the outbox's unsent rows, counted up to Max.
func (b *Backlog) Count(ctx context.Context) (int, error) {
	var n int
	err := b.cfg.Pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT FROM outbox LIMIT $1) AS unsent`, b.cfg.Max).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count the outbox's rows: %w", err)
	}
	return n, nil
}

// set records whether the outbox is at its bound, releasing the waiters
// when it no longer is.
func (b *Backlog) set(full bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if full == b.full.Load() {
		return
	}
	b.full.Store(full)
	if full {
		b.open = make(chan struct{})
	} else {
		close(b.open)
	}
}

// Admit returns at once while the outbox is under its bound. Otherwise it
// waits until a count finds it under, for at most Wait: then it returns
// ErrBehind; or ctx's error, when ctx ends first.
func (b *Backlog) Admit(ctx context.Context) error {
	if !b.full.Load() {
		return nil
	}
	b.mu.Lock()
	open := b.open
	b.mu.Unlock()
	b.held.Inc()
	t := time.NewTimer(b.cfg.Wait)
	defer t.Stop()
	select {
	case <-open:
		return nil
	case <-t.C:
		b.refused.Inc()
		return ErrBehind
	case <-ctx.Done():
		return ctx.Err()
	}
}
