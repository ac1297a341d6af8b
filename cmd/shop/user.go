package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/store"
)

// The user commands: how the first admin exists, and how an operator ends
// a user's tokens or changes a role. Each acts as app.Operator, which the
// audit log names "cli".

type userConfig struct {
	Postgres postgresSection
	Password passwordSection
	Log      logSection
}

// userAdminConfig is the configuration of shop user revoke and role.
type userAdminConfig struct {
	Postgres postgresSection
	Log      logSection
}

// userInput is what shop user add is told.
type userInput struct {
	email, password, passwordFile, name string
	admin                               bool
}

// passwordHelp says what a password must be.
var passwordHelp = fmt.Sprintf("%d to %d bytes, not only spaces", user.MinPasswordLength, user.MaxPasswordLength)

// userFlags declares the flags of shop user add into in.
func userFlags(in *userInput) func(*flag.FlagSet) {
	return func(fs *flag.FlagSet) {
		fs.StringVar(&in.email, "email", "", "email address (required)")
		fs.StringVar(&in.passwordFile, "password-file", "", "read the password ("+passwordHelp+") from the first line of this file;\n"+
			"without it or --password, from the first line of stdin")
		fs.StringVar(&in.password, "password", "", "the password itself: anyone who can list this machine's processes sees it")
		fs.StringVar(&in.name, "name", "", "display name (default: the part of the email before @)")
		fs.BoolVar(&in.admin, "admin", false, "make the user an administrator")
	}
}

// userAddCmd is shop user add: it registers a user, as POST /v1/users does
// (the welcome email included), with the role asked for, and records it in
// the audit log.
func userAddCmd(ctx context.Context, inv invocation) error {
	var in userInput
	if err := parseFlags(inv, "user add", userFlags(&in)); err != nil {
		return err
	}
	if in.password != "" && in.passwordFile != "" {
		return fmt.Errorf("%w: give --password or --password-file, not both", errUsage)
	}
	var cfg userConfig
	log, err := inv.load(&cfg)
	if err != nil {
		return err
	}
	password := in.password
	switch {
	case in.passwordFile != "":
		password, err = readPasswordFile(in.passwordFile)
	case in.password != "":
		log.Warn("--password shows the password to anyone who can list this machine's processes; use --password-file or stdin")
	default:
		password, err = readPasswordStdin(inv.stdin)
	}
	if err != nil {
		return err
	}
	if in.name == "" {
		in.name, _, _ = strings.Cut(in.email, "@")
	}
	role := user.RoleCustomer
	if in.admin {
		role = user.RoleAdmin
	}
	a, err := auth.New(auth.Config{Secret: make([]byte, 32), PasswordCost: cfg.Password.Cost}) // hashing only
	if err != nil {
		return err
	}
	reg, err := app.NewRegistration(a, in.email, in.name, password, role)
	if err != nil {
		return err
	}
	var u *user.User
	err = inTransaction(ctx, cfg.Postgres.URL, func(ctx context.Context, tx *store.Tx) (err error) {
		u, err = app.AddUser(ctx, tx, app.Operator, reg, time.Now())
		return err
	})
	if err != nil {
		return fmt.Errorf("add user: %w", err)
	}
	log.Info("user added", "id", u.ID(), "role", u.Role())
	fmt.Fprintf(inv.stdout, "%s %s %s\n", u.ID(), u.Email(), u.Role())
	return nil
}

// maxPasswordInput bounds what is read for a password: enough to see that
// a too long one is too long.
const maxPasswordInput = 1024

// readPasswordFile returns the first line of the file at path.
func readPasswordFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	defer f.Close()
	pw, err := passwordLine(f)
	if err != nil {
		return "", fmt.Errorf("password file %s: %w", path, err)
	}
	return pw, nil
}

// readPasswordStdin returns the first line of stdin. A terminal is refused
// rather than prompted: what is typed there shows on the screen.
func readPasswordStdin(stdin io.Reader) (string, error) {
	if f, ok := stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return "", fmt.Errorf("%w: no password: pipe it into stdin or give --password-file F (a terminal would show it)", errUsage)
		}
	}
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	pw, err := passwordLine(stdin)
	if err != nil {
		return "", fmt.Errorf("password on stdin: %w", err)
	}
	return pw, nil
}

// passwordLine returns the first line of r without its line ending.
func passwordLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, maxPasswordInput)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", errors.New("no password: the first line is empty")
	}
	return line, nil
}

// userRevokeFlags declares the flags of shop user revoke into email.
func userRevokeFlags(email *string) func(*flag.FlagSet) {
	return func(fs *flag.FlagSet) {
		fs.StringVar(email, "email", "", "the user's email address (required)")
	}
}

// userRevokeCmd is shop user revoke: every token issued to the user so far
// stops working (its token version goes up); the user signs in again.
func userRevokeCmd(ctx context.Context, inv invocation) error {
	var email string
	if err := parseFlags(inv, "user revoke", userRevokeFlags(&email)); err != nil {
		return err
	}
	if email == "" {
		return fmt.Errorf("%w: shop user revoke needs --email", errUsage)
	}
	var cfg userAdminConfig
	log, err := inv.load(&cfg)
	if err != nil {
		return err
	}
	var u *user.User
	err = inTransaction(ctx, cfg.Postgres.URL, func(ctx context.Context, tx *store.Tx) (err error) {
		u, err = app.RevokeTokens(ctx, tx, app.Operator, email, time.Now())
		return err
	})
	if err != nil {
		return fmt.Errorf("revoke tokens: %w", err)
	}
	log.Info("tokens revoked", "id", u.ID(), "token_version", u.TokenVersion())
	fmt.Fprintf(inv.stdout, "%s %s token_version=%d\n", u.ID(), u.Email(), u.TokenVersion())
	return nil
}

// userRoleInput is what shop user role is told.
type userRoleInput struct{ email, role string }

// userRoleFlags declares the flags of shop user role into in.
func userRoleFlags(in *userRoleInput) func(*flag.FlagSet) {
	return func(fs *flag.FlagSet) {
		fs.StringVar(&in.email, "email", "", "the user's email address (required)")
		fs.StringVar(&in.role, "role", "", "customer or admin (required)")
	}
}

// userRoleCmd is shop user role: the user gets the role, and a change ends
// its tokens (they carry the old role).
func userRoleCmd(ctx context.Context, inv invocation) error {
	var in userRoleInput
	if err := parseFlags(inv, "user role", userRoleFlags(&in)); err != nil {
		return err
	}
	if in.email == "" || !user.Role(in.role).Valid() {
		return fmt.Errorf("%w: shop user role needs --email and a --role of customer or admin", errUsage)
	}
	var cfg userAdminConfig
	log, err := inv.load(&cfg)
	if err != nil {
		return err
	}
	var u *user.User
	var changed bool
	err = inTransaction(ctx, cfg.Postgres.URL, func(ctx context.Context, tx *store.Tx) (err error) {
		u, changed, err = app.ChangeRole(ctx, tx, app.Operator, in.email, user.Role(in.role), time.Now())
		return err
	})
	if err != nil {
		return fmt.Errorf("change role: %w", err)
	}
	if changed {
		log.Info("role changed", "id", u.ID(), "role", u.Role(), "token_version", u.TokenVersion())
	} else {
		log.Info("role unchanged: the user has it already", "id", u.ID(), "role", u.Role())
	}
	fmt.Fprintf(inv.stdout, "%s %s %s token_version=%d\n", u.ID(), u.Email(), u.Role(), u.TokenVersion())
	return nil
}

// parseFlags parses the flags of the command name from inv's arguments,
// and refuses anything else.
func parseFlags(inv invocation, name string, declare func(*flag.FlagSet)) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(inv.stderr)
	declare(fs)
	if err := fs.Parse(inv.args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: shop %s takes flags only, not %q", errUsage, name, fs.Args())
	}
	return nil
}

// inTransaction runs fn in one transaction on the database at url, over a
// connection of its own.
func inTransaction(ctx context.Context, url string, fn func(ctx context.Context, tx *store.Tx) error) error {
	pool, err := store.Open(ctx, store.Config{DatabaseURL: url, MaxConns: 1})
	if err != nil {
		return err
	}
	defer pool.Close()
	return store.NewUnitOfWork(pool, nil).Do(ctx, fn)
}
