// Package testenv gives tests their own resources on the real services: a
// fresh, migrated Postgres database per test, dropped when the test ends.
// Tests never share a database, so they run in parallel and repeat.
package testenv

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopdev/shop/store"
)

// ServerURL is the Postgres server the tests use: TEST_DATABASE_URL, by
// default the local server with trust auth.
func ServerURL() string {
	return envOr("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
}

// DatabaseURL creates and migrates a database of its own for t and returns
// its URL. The database is dropped when t ends.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	NeedServices(t)
	u, err := url.Parse(ServerURL())
	if err != nil {
		t.Fatalf("parse TEST_DATABASE_URL: %v", err)
	}
	name := "shop_test_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:16]
	u.Path = "/" + name
	dbURL := u.String()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := store.Migrate(ctx, dbURL, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := store.DropDatabase(ctx, dbURL); err != nil {
			t.Errorf("drop test database: %v", err)
		}
	})
	return dbURL
}

// Pool returns a pool on a fresh database of t's own (see DatabaseURL).
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := store.Open(context.Background(), store.Config{DatabaseURL: DatabaseURL(t), MaxConns: 32})
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Count returns the result of a count(*) query.
func Count(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// Must fails t on err; for setup steps.
func Must(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatal(fmt.Errorf("%s: %w", what, err))
	}
}

// Run runs run in the background until t ends: then its context is
// cancelled and t waits for it to return; an error it returns fails t.
func Run(t testing.TB, run func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run in the background: %v", err)
		}
	})
}
