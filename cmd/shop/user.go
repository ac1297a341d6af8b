package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/store"
)

type userConfig struct {
	Postgres postgresSection
	Password passwordSection
	Log      logSection
}

// userInput is what shop user add is told.
type userInput struct {
	email, password, name string
	admin                 bool
}

// userFlags declares the flags of shop user add into in.
func userFlags(in *userInput) func(*flag.FlagSet) {
	return func(fs *flag.FlagSet) {
		fs.StringVar(&in.email, "email", "", "email address (required)")
		fs.StringVar(&in.password, "password", "", "password, at least 8 characters (required)")
		fs.StringVar(&in.name, "name", "", "display name (default: the part of the email before @)")
		fs.BoolVar(&in.admin, "admin", false, "make the user an administrator")
	}
}

// userAddCmd is shop user add: it registers a user, as POST /v1/users does
// (the welcome email included), with the role asked for.
func userAddCmd(ctx context.Context, inv invocation) error {
	var in userInput
	fs := flag.NewFlagSet("user add", flag.ContinueOnError)
	fs.SetOutput(inv.stderr)
	userFlags(&in)(fs)
	if err := fs.Parse(inv.args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: shop user add takes flags only, not %q", errUsage, fs.Args())
	}
	var cfg userConfig
	log, err := inv.load(&cfg)
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
	reg, err := app.NewRegistration(a, in.email, in.name, in.password, role)
	if err != nil {
		return err
	}
	pool, err := store.Open(ctx, store.Config{DatabaseURL: cfg.Postgres.URL, MaxConns: 1})
	if err != nil {
		return err
	}
	defer pool.Close()
	var u *user.User
	err = store.NewUnitOfWork(pool, nil).Do(ctx, func(ctx context.Context, tx *store.Tx) (err error) {
		u, err = app.Register(ctx, tx, reg, time.Now())
		return err
	})
	if err != nil {
		return fmt.Errorf("add user: %w", err)
	}
	log.Info("user added", "id", u.ID(), "role", u.Role())
	fmt.Fprintf(inv.stdout, "%s %s %s\n", u.ID(), u.Email(), u.Role())
	return nil
}
