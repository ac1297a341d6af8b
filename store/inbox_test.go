package store_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/store"
)

func TestClaimEachClaimsEveryNewEventOnce(t *testing.T) {
	t.Parallel()
	uow := store.NewUnitOfWork(testenv.Pool(t), nil)
	ctx := context.Background()
	old, a, b := uuid.New(), uuid.New(), uuid.New()
	testenv.Must(t, uow.Do(ctx, func(ctx context.Context, tx *store.Tx) error {
		_, err := tx.Inbox.Claim(ctx, "orders", old)
		return err
	}), "claim one event")

	tests := []struct {
		name   string
		events []uuid.UUID
		want   []bool
	}{
		{"new events", []uuid.UUID{a, b}, []bool{true, true}},
		{"an event applied before", []uuid.UUID{a, old, b}, []bool{true, false, true}},
		{"an event twice in one batch", []uuid.UUID{a, b, a}, []bool{true, true, false}},
		{"one event", []uuid.UUID{b}, []bool{true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []bool
			err := uow.Do(ctx, func(ctx context.Context, tx *store.Tx) (err error) {
				got, err = tx.Inbox.ClaimEach(ctx, "orders", tt.events)
				if err == nil {
					err = errRollback // leave the inbox as it was for the next case
				}
				return err
			})
			if !errors.Is(err, errRollback) {
				t.Fatalf("ClaimEach: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ClaimEach(%d events) = %v, want %v", len(tt.events), got, tt.want)
			}
		})
	}

	// Another consumer's inbox is its own.
	testenv.Must(t, uow.Do(ctx, func(ctx context.Context, tx *store.Tx) error {
		got, err := tx.Inbox.ClaimEach(ctx, "emails", []uuid.UUID{old})
		if err == nil && !slices.Equal(got, []bool{true}) {
			t.Errorf("emails claiming an event orders applied = %v, want [true]", got)
		}
		return err
	}), "claim for another consumer")
}

var errRollback = errors.New("roll back")

func TestLimitLockWaitFailsInsteadOfWaiting(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	uow := store.NewUnitOfWork(pool, nil)
	p := addProduct(t, uow, "LOCKED-1", 100, 5)
	ctx := context.Background()

	holding, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- uow.Do(ctx, func(ctx context.Context, tx *store.Tx) error {
			if _, err := tx.Products.GetForUpdate(ctx, p.ID()); err != nil {
				return err
			}
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding
	err := uow.Do(ctx, func(ctx context.Context, tx *store.Tx) error {
		tx.LimitLockWait(50 * time.Millisecond)
		_, err := tx.Products.GetForUpdate(ctx, p.ID())
		return err
	})
	close(release)
	testenv.Must(t, <-held, "the transaction holding the lock")
	if err == nil || !strings.Contains(err.Error(), "lock timeout") {
		t.Fatalf("reading a row locked longer than the limit: %v, want a lock timeout", err)
	}
	// Without the limit, the same read waits for the lock and succeeds.
	testenv.Must(t, uow.Do(ctx, func(ctx context.Context, tx *store.Tx) error {
		_, err := tx.Products.GetForUpdate(ctx, p.ID())
		return err
	}), "read after the lock is released")
}
