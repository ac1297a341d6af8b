package store_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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

// TestNoConnectionLeftIsUnavailable: when Postgres refuses a connection for
// want of slots (too_many_connections: max_connections reached, or here a
// role's CONNECTION LIMIT), a command fails with ErrUnavailable (503 with
// Retry-After, and a consumer waits), not as an internal error; once a slot
// is free, the same pool serves again.
func TestNoConnectionLeftIsUnavailable(t *testing.T) {
	t.Parallel()
	dbURL := testenv.DatabaseURL(t)
	role := "shop_test_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
	admin, err := pgx.Connect(context.Background(), dbURL)
	testenv.Must(t, err, "connect as the superuser")
	t.Cleanup(func() {
		_, err := admin.Exec(context.Background(), `DROP ROLE `+role)
		testenv.Must(t, err, "drop the role")
		_ = admin.Close(context.Background())
	})
	// A superuser is exempt from connection limits: the pool connects as a
	// role that is not one, and that may connect no more.
	_, err = admin.Exec(context.Background(), `CREATE ROLE `+role+` LOGIN CONNECTION LIMIT 0`)
	testenv.Must(t, err, "create a role")
	u, err := url.Parse(dbURL)
	testenv.Must(t, err, "parse the database URL")
	u.User = url.User(role)

	pool, err := store.Open(context.Background(), store.Config{DatabaseURL: u.String(), MaxConns: 1, ConnectTimeout: 5 * time.Second})
	testenv.Must(t, err, "open")
	t.Cleanup(pool.Close)
	uow := store.NewUnitOfWork(pool, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = uow.Do(ctx, func(ctx context.Context, tx *store.Tx) error {
		_, err := app.Register(ctx, tx, app.RegisterUser{Email: "slot@example.com", Name: "S", PasswordHash: "x", Role: user.RoleCustomer}, now)
		return err
	})
	var pgErr *pgconn.PgError
	if !errors.Is(err, store.ErrUnavailable) || !errors.As(err, &pgErr) || pgErr.Code != "53300" {
		t.Fatalf("a command when Postgres has no connection left = %v, want ErrUnavailable from too_many_connections (53300)", err)
	}
	if err := uow.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Ping when Postgres has no connection left = %v, want ErrUnavailable", err)
	}
	_, err = admin.Exec(context.Background(), `ALTER ROLE `+role+` CONNECTION LIMIT -1`)
	testenv.Must(t, err, "lift the limit")
	if err := uow.Ping(ctx); err != nil {
		t.Fatalf("Ping once a connection is free = %v, want nil", err)
	}
}
