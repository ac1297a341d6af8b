package outbox_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

func TestBacklogConfigValidate(t *testing.T) {
	t.Parallel()
	pool := &pgxpool.Pool{}
	tests := []struct {
		name    string
		cfg     outbox.BacklogConfig
		wantErr bool
	}{
		{"defaults", outbox.BacklogConfig{Pool: pool, Max: 1}, false},
		{"no pool", outbox.BacklogConfig{Max: 1}, true},
		{"no bound", outbox.BacklogConfig{Pool: pool}, true},
		{"a negative bound", outbox.BacklogConfig{Pool: pool, Max: -5}, true},
		{"a poll under a millisecond", outbox.BacklogConfig{Pool: pool, Max: 1, Poll: time.Microsecond}, true},
		{"a negative wait", outbox.BacklogConfig{Pool: pool, Max: 1, Wait: -time.Second}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			err := cfg.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, want an error: %v", err, tt.wantErr)
			}
			if err == nil && (cfg.Poll <= 0 || cfg.Wait <= 0 || cfg.Logger == nil) {
				t.Errorf("defaults not filled: %+v", cfg)
			}
		})
	}
}

// startBacklog runs a Backlog bounded at max rows on pool until t ends.
func startBacklog(t *testing.T, pool *pgxpool.Pool, max int, wait time.Duration) *outbox.Backlog {
	t.Helper()
	b, err := outbox.NewBacklog(outbox.BacklogConfig{Pool: pool, Max: max, Poll: 10 * time.Millisecond, Wait: wait,
		Logger: slog.New(slog.DiscardHandler)})
	testenv.Must(t, err, "backlog")
	testenv.Run(t, func(ctx context.Context) error { b.Run(ctx); return nil })
	return b
}

// appendN commits n events, one transaction.
func appendN(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	events := make([]domain.Event, n)
	for i := range events {
		events[i] = domain.NewEvent("order.placed", "order", uuid.New(), 1, time.Now(), struct{}{})
	}
	err := store.NewUnitOfWork(pool, nil).Do(context.Background(), func(_ context.Context, tx *store.Tx) error { return tx.Append(events...) })
	testenv.Must(t, err, "append events")
}

// admitted reports what Admit returns within d (errStillWaiting when it
// does not return).
func admitted(b *outbox.Backlog, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err := b.Admit(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return errStillWaiting
	}
	return err
}

var errStillWaiting = errors.New("still waiting")

// eventually waits up to 5 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 5 s: not %s", what)
		}
	}
}

func TestBacklogHoldsCommandsWhileTheOutboxIsAtItsBound(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	b := startBacklog(t, pool, 10, time.Minute)

	appendN(t, pool, 9)
	if err := admitted(b, 100*time.Millisecond); err != nil {
		t.Fatalf("9 rows under a bound of 10: Admit = %v, want nil", err)
	}

	appendN(t, pool, 1)
	eventually(t, "holding at 10 rows", func() bool { return errors.Is(admitted(b, 20*time.Millisecond), errStillWaiting) })

	// The relay catches up: the waiting command goes on.
	waiting := make(chan error, 1)
	go func() { waiting <- b.Admit(context.Background()) }()
	time.Sleep(30 * time.Millisecond)
	select {
	case err := <-waiting:
		t.Fatalf("Admit returned %v while the outbox was still at its bound", err)
	default:
	}
	_, err := pool.Exec(context.Background(), `DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT 1)`)
	testenv.Must(t, err, "relay one row")
	select {
	case err := <-waiting:
		if err != nil {
			t.Fatalf("Admit after the outbox fell under its bound = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Admit still waits 5 s after the outbox fell under its bound")
	}
	if err := admitted(b, 100*time.Millisecond); err != nil {
		t.Fatalf("9 rows again: Admit = %v, want nil", err)
	}
}

func TestBacklogRefusesAfterItsWait(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	b := startBacklog(t, pool, 3, 50*time.Millisecond)
	appendN(t, pool, 5)
	eventually(t, "refusing at 5 rows of 3", func() bool { return errors.Is(admitted(b, time.Second), outbox.ErrBehind) })
	if err := admitted(b, time.Second); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("Admit = %v, want a domain.ErrUnavailable (answered 503)", err)
	}
}

func TestBacklogCountsUpToItsBound(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	b, err := outbox.NewBacklog(outbox.BacklogConfig{Pool: pool, Max: 4})
	testenv.Must(t, err, "backlog")
	for _, tt := range []struct{ add, want int }{{0, 0}, {3, 3}, {1, 4}, {6, 4}} {
		appendN(t, pool, tt.add)
		n, err := b.Count(context.Background())
		testenv.Must(t, err, "count")
		if n != tt.want {
			t.Errorf("after %d more rows: Count = %d, want %d", tt.add, n, tt.want)
		}
	}
}

func TestBacklogLetsCommandsThroughWhenItCannotCount(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	b := startBacklog(t, pool, 1, time.Minute)
	appendN(t, pool, 2)
	eventually(t, "holding at 2 rows of 1", func() bool { return errors.Is(admitted(b, 20*time.Millisecond), errStillWaiting) })
	_, err := pool.Exec(context.Background(), `ALTER TABLE outbox RENAME TO outbox_gone`)
	testenv.Must(t, err, "break the count")
	eventually(t, "admitting once counting fails", func() bool { return admitted(b, 20*time.Millisecond) == nil })
}
