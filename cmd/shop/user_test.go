package main_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/crypto/bcrypt"

	"github.com/shopdev/shop/internal/testenv"
)

// shopStdin runs the binary like shop, with stdin as its standard input.
func shopStdin(t *testing.T, env map[string]string, stdin string, args ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	testenv.NeedServices(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, shopBin, args...)
	cmd.Env = environ(env)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		exitCode = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("run shop %v: %v", args, err)
	}
	return out.String(), errOut.String(), exitCode
}

// migrated returns the environment of a fresh, migrated database, and a
// pool on it.
func migrated(t *testing.T) (map[string]string, *pgxpool.Pool) {
	t.Helper()
	env := map[string]string{"DATABASE_URL": freshDatabaseURL(t)}
	if _, stderr, code := shop(t, env, "migrate"); code != 0 {
		t.Fatalf("migrate: exit %d:\n%s", code, stderr)
	}
	pool, err := pgxpool.New(context.Background(), env["DATABASE_URL"])
	testenv.Must(t, err, "pool")
	t.Cleanup(pool.Close)
	return env, pool
}

// TestUserAddTakesThePasswordFromStdinOrAFile: shop user add reads the
// password from --password-file or the first line of stdin, or, with a
// warning, from --password; it never logs it, and refuses what is not one.
func TestUserAddTakesThePasswordFromStdinOrAFile(t *testing.T) {
	t.Parallel()
	env, pool := migrated(t)
	dir := t.TempDir()
	files := 0
	file := func(content string) string {
		files++
		path := filepath.Join(dir, fmt.Sprintf("password-%d", files))
		testenv.Must(t, os.WriteFile(path, []byte(content), 0o600), "write password file")
		return path
	}
	const secret = "Tr0ub4dor & 3"
	tests := []struct {
		name      string
		stdin     string
		args      []string
		wantCode  int
		wantPW    string // the password the user signs in with
		wantWarn  bool
		wantInErr string
	}{
		{name: "stdin, a line", stdin: secret + "\n", wantPW: secret},
		{name: "stdin, a CRLF line", stdin: secret + "\r\n", wantPW: secret},
		{name: "stdin, no line ending", stdin: secret, wantPW: secret},
		{name: "stdin, the first of two lines", stdin: secret + "\nsomething else\n", wantPW: secret},
		{name: "stdin, spaces kept", stdin: "  " + secret + "  \n", wantPW: "  " + secret + "  "},
		{name: "a password file", args: []string{"--password-file", file(secret + "\n")}, wantPW: secret},
		{name: "a password file and stdin: the file", stdin: "ignored password\n", args: []string{"--password-file", file(secret)}, wantPW: secret},
		{name: "--password, with a warning", args: []string{"--password", secret}, wantPW: secret, wantWarn: true},

		{name: "nothing on stdin", wantCode: 1, wantInErr: "no password"},
		{name: "an empty first line", stdin: "\n" + secret + "\n", wantCode: 1, wantInErr: "no password"},
		{name: "too short on stdin", stdin: "123456789\n", wantCode: 1, wantInErr: "at least 10 bytes"},
		{name: "only spaces in a file", args: []string{"--password-file", file("            \n")}, wantCode: 1, wantInErr: "other than spaces"},
		{name: "too long in a file", args: []string{"--password-file", file(strings.Repeat("p", 5000))}, wantCode: 1, wantInErr: "at most 72 bytes"},
		{name: "a missing file", args: []string{"--password-file", filepath.Join(dir, "missing")}, wantCode: 1, wantInErr: "password file"},
		{name: "both flags", args: []string{"--password", secret, "--password-file", file(secret)}, wantCode: 2, wantInErr: "not both"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			email := "user" + string(rune('a'+i)) + "@example.com"
			args := append([]string{"user", "add", "--email", email}, tt.args...)
			stdout, stderr, code := shopStdin(t, env, tt.stdin, args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q, stderr:\n%s", code, tt.wantCode, stdout, stderr)
			}
			if !strings.Contains(stderr, tt.wantInErr) {
				t.Errorf("stderr does not say %q:\n%s", tt.wantInErr, stderr)
			}
			if strings.Contains(stderr, secret) || strings.Contains(stdout, secret) {
				t.Errorf("the password was printed: stdout %q, stderr:\n%s", stdout, stderr)
			}
			if warned := strings.Contains(stderr, "process"); warned != tt.wantWarn {
				t.Errorf("warned about the process list: %v, want %v; stderr:\n%s", warned, tt.wantWarn, stderr)
			}
			var hash string
			err := pool.QueryRow(context.Background(), `SELECT password_hash FROM users WHERE email = $1`, email).Scan(&hash)
			if tt.wantCode != 0 {
				if err == nil {
					t.Error("a refused user add created the user")
				}
				return
			}
			testenv.Must(t, err, "read the user")
			if bcrypt.CompareHashAndPassword([]byte(hash), []byte(tt.wantPW)) != nil {
				t.Errorf("the stored hash is not of %q", tt.wantPW)
			}
		})
	}
}

// TestUserRevokeAndRole: shop user revoke and shop user role change the
// user's token version and role in Postgres, each recorded in the audit
// log as the command line's, with no request id.
func TestUserRevokeAndRole(t *testing.T) {
	t.Parallel()
	env, pool := migrated(t)
	if _, stderr, code := shopStdin(t, env, "ann's password\n", "user", "add", "--email", "ann@example.com"); code != 0 {
		t.Fatalf("user add: exit %d:\n%s", code, stderr)
	}
	tests := []struct {
		name         string
		args         []string
		wantCode     int
		wantOut      string // in stdout, or stderr when the command fails
		wantRole     string
		wantTV       int64
		wantAudit    int    // audit rows so far
		wantLastDone string // the action of the newest audit row
	}{
		{"revoke", []string{"user", "revoke", "--email", "ann@example.com"}, 0, "ann@example.com token_version=2", "customer", 2, 2, "user.revoke"},
		{"revoke again, the email in capitals", []string{"user", "revoke", "--email", "ANN@example.com"}, 0, "token_version=3", "customer", 3, 3, "user.revoke"},
		{"make admin", []string{"user", "role", "--email", "ann@example.com", "--role", "admin"}, 0, "ann@example.com admin token_version=4", "admin", 4, 4, "user.role"},
		{"make admin again: nothing changes", []string{"user", "role", "--email", "ann@example.com", "--role", "admin"}, 0, "admin token_version=4", "admin", 4, 4, "user.role"},
		{"make customer", []string{"user", "role", "--email", "ann@example.com", "--role", "customer"}, 0, "customer token_version=5", "customer", 5, 5, "user.role"},
		{"revoke an unknown email", []string{"user", "revoke", "--email", "nobody@example.com"}, 1, "not found", "customer", 5, 5, "user.role"},
		{"role of an unknown email", []string{"user", "role", "--email", "nobody@example.com", "--role", "admin"}, 1, "not found", "customer", 5, 5, "user.role"},
		{"revoke without an email", []string{"user", "revoke"}, 2, "needs --email", "customer", 5, 5, "user.role"},
		{"an unknown role", []string{"user", "role", "--email", "ann@example.com", "--role", "root"}, 2, "customer or admin", "customer", 5, 5, "user.role"},
		{"role without a role", []string{"user", "role", "--email", "ann@example.com"}, 2, "customer or admin", "customer", 5, 5, "user.role"},
		{"an argument", []string{"user", "revoke", "--email", "ann@example.com", "now"}, 2, "flags only", "customer", 5, 5, "user.role"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := shop(t, env, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q, stderr:\n%s", code, tt.wantCode, stdout, stderr)
			}
			if out := map[bool]string{true: stdout, false: stderr}[code == 0]; !strings.Contains(out, tt.wantOut) {
				t.Errorf("output does not say %q: stdout %q, stderr:\n%s", tt.wantOut, stdout, stderr)
			}
			var role string
			var tv int64
			testenv.Must(t, pool.QueryRow(context.Background(), `SELECT role, token_version FROM users WHERE email = 'ann@example.com'`).Scan(&role, &tv), "read ann")
			if role != tt.wantRole || tv != tt.wantTV {
				t.Errorf("ann is %s at token version %d, want %s at %d", role, tv, tt.wantRole, tt.wantTV)
			}
			var n int
			var actor, action, requestID string
			var hasActorID bool
			testenv.Must(t, pool.QueryRow(context.Background(), `SELECT count(*) OVER (), actor, action, request_id, actor_id IS NOT NULL
				FROM audit_log ORDER BY id DESC LIMIT 1`).Scan(&n, &actor, &action, &requestID, &hasActorID), "read the audit log")
			if n != tt.wantAudit || action != tt.wantLastDone || actor != "cli" || requestID != "" || hasActorID {
				t.Errorf("audit log: %d rows, the newest %s by %s (request id %q, an actor id: %v); want %d, the newest %s by cli, neither id",
					n, action, actor, requestID, hasActorID, tt.wantAudit, tt.wantLastDone)
			}
		})
	}
}
