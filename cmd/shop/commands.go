package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/handlers/httpapi"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/projections"
	"github.com/shopdev/shop/store"
)

// shutdownTimeout bounds how long in-flight requests may take after SIGTERM.
const shutdownTimeout = 20 * time.Second

func migrateCmd(ctx context.Context, cfg config, log *slog.Logger) error {
	if err := store.Migrate(ctx, cfg.DatabaseURL, log); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

func newAuth(cfg config, log *slog.Logger) (*auth.Auth, error) {
	secret, err := cfg.jwtSecret(log)
	if err != nil {
		return nil, err
	}
	return auth.New(auth.Config{Secret: secret, TokenTTL: cfg.JWTTTL, PasswordCost: cfg.PasswordCost})
}

func apiCmd(ctx context.Context, cfg config, log *slog.Logger) error {
	p, err := apiProcess(ctx, cfg, log, newRegistry())
	if err != nil {
		return err
	}
	defer p.close()
	return p.run(ctx)
}

// apiProcess wires the HTTP API; its metrics go to reg, served on /metrics.
func apiProcess(ctx context.Context, cfg config, log *slog.Logger, reg *prometheus.Registry) (*process, error) {
	a, err := newAuth(cfg, log)
	if err != nil {
		return nil, err
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	// Short timeouts and no retries: a slow Redis must not slow the API,
	// which falls back to Postgres.
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.MaxRetries = 250*time.Millisecond, 250*time.Millisecond, 250*time.Millisecond, -1
	pool, err := store.Open(ctx, store.Config{DatabaseURL: cfg.DatabaseURL, MaxConns: cfg.DBMaxConns})
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(opts)
	release := func() { _ = rdb.Close(); pool.Close() } // closing the client closes its autopipeliner
	// Reads that arrive together go to Redis together: while one pipeline
	// is in flight the next one fills, so under load a round trip (and the
	// syscalls on both ends) serves many requests; a lone read goes at once.
	reads, err := rdb.AutoPipeline()
	if err != nil {
		release()
		return nil, fmt.Errorf("redis autopipeline: %w", err)
	}
	models, err := projections.New(projections.Config{Client: reads, Prefix: cfg.RedisPrefix})
	if err != nil {
		release()
		return nil, err
	}
	notifier := outbox.NewNotifier(pool, log)
	return &process{
		notifier: notifier,
		run: func(ctx context.Context) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			handler, err := httpapi.New(httpapi.Config{Pool: pool, Auth: a, Logger: log, Notifier: notifier,
				Registry: reg, Redis: models, Watcher: models.Watch(ctx), RateLimit: cfg.RateLimit, RateBurst: cfg.RateBurst})
			if err != nil {
				return err
			}
			go func() { _ = notifier.Run(ctx) }()
			return serve(ctx, log, cfg.HTTPAddr, handler)
		},
		close: release,
	}, nil
}

// serve runs an HTTP server on addr until ctx is cancelled, then drains
// in-flight requests for up to shutdownTimeout.
func serve(ctx context.Context, log *slog.Logger, addr string, handler http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: draining in-flight requests")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

func userCmd(ctx context.Context, cfg config, log *slog.Logger, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "add" {
		return fmt.Errorf("%w: shop user add --email E --password P [--name N] [--admin]", errUsage)
	}
	fs := flag.NewFlagSet("user add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	email := fs.String("email", "", "email address (required)")
	password := fs.String("password", "", "password, at least 8 characters (required)")
	name := fs.String("name", "", "display name (default: the part of the email before @)")
	admin := fs.Bool("admin", false, "make the user an administrator")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if *name == "" {
		*name, _, _ = strings.Cut(*email, "@")
	}
	role := user.RoleCustomer
	if *admin {
		role = user.RoleAdmin
	}
	if err := user.ValidateRegistration(*email, *name, *password); err != nil {
		return err
	}
	a, err := auth.New(auth.Config{Secret: make([]byte, 32), PasswordCost: cfg.PasswordCost}) // hashing only
	if err != nil {
		return err
	}
	hash, err := a.HashPassword(*password)
	if err != nil {
		return err
	}
	pool, err := store.Open(ctx, store.Config{DatabaseURL: cfg.DatabaseURL, MaxConns: 1})
	if err != nil {
		return err
	}
	defer pool.Close()
	var u *user.User
	err = store.NewUnitOfWork(pool, nil).Do(ctx, func(ctx context.Context, tx *store.Tx) error {
		u, err = app.Register(ctx, tx, app.RegisterUser{Email: *email, Name: *name, PasswordHash: hash, Role: role}, time.Now())
		return err
	})
	if err != nil {
		return fmt.Errorf("add user: %w", err)
	}
	log.Info("user added", "id", u.ID(), "role", u.Role())
	fmt.Fprintf(stdout, "%s %s %s\n", u.ID(), u.Email(), u.Role())
	return nil
}
