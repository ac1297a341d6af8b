package testenv

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// MultiHostURL returns dbURL with a host that refuses every connection in
// front of its own, and target_session_attrs=read-write.
func MultiHostURL(t testing.TB, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	Must(t, err, "parse database url")
	u.Host = RefusedAddr(t) + "," + u.Host
	q := u.Query()
	q.Set("target_session_attrs", "read-write")
	u.RawQuery = q.Encode()
	return u.String()
}

// SetNoPrimary takes away (down) or gives back (!down) the primary of the
// database of dbURL (a one-host URL), for that database alone: down, every
// new session of it is read-only (default_transaction_read_only, which
// `SHOW transaction_read_only` reports, as on a standby) and every session
// that may not be is ended, so that no server satisfies
// target_session_attrs=read-write; up, new sessions may write again.
// Whatever happens, the primary is back when t ends.
func SetNoPrimary(t testing.TB, dbURL string, down bool) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dbURL)
	Must(t, err, "parse database url")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, ServerURL()) // the maintenance database, never read-only
	Must(t, err, "connect to the server")
	defer admin.Close(context.Background())
	db := pgx.Identifier{cfg.Database}.Sanitize()
	if !down {
		_, err := admin.Exec(ctx, "ALTER DATABASE "+db+" RESET default_transaction_read_only")
		Must(t, err, "reset default_transaction_read_only")
		return
	}
	t.Cleanup(func() {
		if c, err := pgx.Connect(context.Background(), ServerURL()); err == nil {
			_, _ = c.Exec(context.Background(), "ALTER DATABASE "+db+" RESET default_transaction_read_only")
			_ = c.Close(context.Background())
		}
	})
	_, err = admin.Exec(ctx, "ALTER DATABASE "+db+" SET default_transaction_read_only = on")
	Must(t, err, "set default_transaction_read_only")
	var altered time.Time
	Must(t, admin.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&altered), "read the time")
	// A session forked after the change reads it as it starts: read-only.
	// Any forked before may not have: end them, until none is left (one
	// still starting up shows up a moment later).
	time.Sleep(100 * time.Millisecond)
	Eventually(t, 10*time.Second, func() error {
		var ended int
		err := admin.QueryRow(ctx, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_start <= $2) t`, cfg.Database, altered).Scan(&ended)
		switch {
		case err != nil:
			return err
		case ended > 0:
			return fmt.Errorf("ended %d sessions that may write", ended)
		}
		return nil
	})
}
