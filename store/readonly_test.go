package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/store"
)

// TestNoPrimaryIsUnavailable: when no server Postgres reaches may write, a
// command fails with ErrUnavailable (503, and a consumer waits), whether
// pgx finds no server that satisfies target_session_attrs=read-write, or a
// URL without it (a pooler's, a managed service's endpoint) leads to a
// read-only server; and once a server may write again, the same pool
// serves commands, without being reset.
func TestNoPrimaryIsUnavailable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		url  func(t *testing.T, dbURL string) string
	}{
		{"target_session_attrs=read-write finds no primary", func(t *testing.T, dbURL string) string { return testenv.MultiHostURL(t, dbURL) }},
		{"a session on a read-only server", func(_ *testing.T, dbURL string) string { return dbURL }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dbURL := testenv.DatabaseURL(t)
			testenv.SetNoPrimary(t, dbURL, true)
			pool, err := store.Open(context.Background(), store.Config{DatabaseURL: tt.url(t, dbURL), MaxConns: 2, ConnectTimeout: 5 * time.Second})
			testenv.Must(t, err, "open")
			t.Cleanup(pool.Close)
			uow := store.NewUnitOfWork(pool, nil)
			register := func(i int) error {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				return uow.Do(ctx, func(ctx context.Context, tx *store.Tx) error {
					_, err := app.Register(ctx, tx, app.RegisterUser{Email: fmt.Sprintf("ro%d@example.com", i), Name: "R",
						PasswordHash: "x", Role: user.RoleCustomer}, now)
					return err
				})
			}
			for i := range 2 {
				if err := register(i); !errors.Is(err, store.ErrUnavailable) {
					t.Fatalf("a command with no server that may write (#%d) = %v, want ErrUnavailable", i+1, err)
				}
			}
			testenv.SetNoPrimary(t, dbURL, false)
			testenv.Eventually(t, 10*time.Second, func() error { return register(3) })
		})
	}
}
