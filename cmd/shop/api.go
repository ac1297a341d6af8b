package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/handlers/httpapi"
	"github.com/shopdev/shop/internal/ops"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/projections"
	"github.com/shopdev/shop/store"
)

// apiSettings are what the API reads.
type apiSettings struct {
	Env      envSection
	Postgres postgresSection
	Pool     poolSection
	Redis    redisSection
	HTTP     httpSection
	Token    tokenSection
	Password passwordSection
}

type apiConfig struct {
	API apiSettings
	Ops opsSection
	Log logSection
}

func apiCmd(ctx context.Context, inv invocation) error {
	var cfg apiConfig
	return serveCmd(ctx, inv, &cfg, &cfg.Ops, func(log *slog.Logger, proc process) (func(string), []*part, error) {
		api, err := newAPI(ctx, cfg.API, log, proc)
		if err != nil {
			return nil, nil, err
		}
		return func(opsAddr string) {
			log.Info("shop api: serving", "api", urlOf(api.server.addr()), "metrics", urlOf(opsAddr)+"/metrics")
		}, []*part{&api.part}, nil
	})
}

// api is the HTTP API, wired, its address bound.
type api struct {
	part
	server   *httpServer
	notifier *outbox.Notifier // wakes the relays after its commits
}

// newAPI wires the HTTP API; it reports to proc, whose /healthz, /readyz and
// /metrics it also serves on its own port.
func newAPI(ctx context.Context, cfg apiSettings, log *slog.Logger, proc process) (*api, error) {
	secret, err := jwtSecret(cfg, log)
	if err != nil {
		return nil, err
	}
	a, err := auth.New(auth.Config{Secret: secret, TokenTTL: cfg.Token.TTL, PasswordCost: cfg.Password.Cost})
	if err != nil {
		return nil, err
	}
	opts, err := redis.ParseURL(cfg.Redis.URL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	// Short timeouts and no retries: a slow Redis must not slow the API,
	// which falls back to Postgres.
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.MaxRetries = 250*time.Millisecond, 250*time.Millisecond, 250*time.Millisecond, -1
	pool, err := store.Open(ctx, store.Config{DatabaseURL: cfg.Postgres.URL, MaxConns: int32(cfg.Pool.MaxConns)})
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(opts)
	release := func() { _ = rdb.Close(); pool.Close() } // closing the client closes its autopipeliner
	// Reads that arrive together go to Redis together: while one pipeline
	// is in flight the next one fills, so under load one round trip (and
	// the syscalls on both ends) serves many requests; a lone read goes at
	// once.
	pipelined, err := rdb.AutoPipeline()
	if err != nil {
		release()
		return nil, fmt.Errorf("redis autopipeline: %w", err)
	}
	models, err := projections.New(projections.Config{Client: pipelined, Prefix: cfg.Redis.Prefix})
	if err != nil {
		release()
		return nil, err
	}
	reads, err := projections.NewReader(projections.ReaderConfig{Store: models, Origin: store.NewReads(pool)})
	if err != nil {
		release()
		return nil, err
	}
	notifier := outbox.NewNotifier(pool, log)
	uow := store.NewUnitOfWork(pool, notifier)
	checks := []ops.Check{{Name: "postgres", Ready: uow.Ping}}
	handler, err := httpapi.New(httpapi.Config{UnitOfWork: uow, Reads: reads, Auth: a, Logger: log, Registry: proc.reg,
		Ops: proc.handler(), RateLimit: cfg.HTTP.RateLimit, RateBurst: cfg.HTTP.RateBurst})
	if err != nil {
		release()
		return nil, err
	}
	server, err := listen(log, "api", cfg.HTTP.Addr, handler)
	if err != nil {
		release()
		return nil, err
	}
	return &api{
		part: part{name: "api", checks: checks, close: release, run: func(ctx context.Context) error {
			reads.Watch(ctx)
			nctx, stop := context.WithCancel(context.WithoutCancel(ctx))
			defer stop() // after the last request: its commit may still notify
			go func() { _ = notifier.Run(nctx) }()
			return server.serve(ctx)
		}},
		server:   server,
		notifier: notifier,
	}, nil
}

// devJWTSecret signs tokens when SHOP_ENV=dev and no JWT_SECRET is set.
const devJWTSecret = "dev-only-insecure-jwt-secret-change-me!"

// jwtSecret returns the secret that signs tokens: JWT_SECRET, or in dev
// only, a fixed development secret (logged as a warning).
func jwtSecret(cfg apiSettings, log *slog.Logger) ([]byte, error) {
	if s := cfg.Token.Secret; s != "" {
		if len(s) < 32 {
			return nil, errors.New("JWT_SECRET must be at least 32 bytes")
		}
		return []byte(s), nil
	}
	if cfg.Env.Env != "dev" {
		return nil, errors.New("JWT_SECRET is required (set SHOP_ENV=dev to use an insecure development secret)")
	}
	log.Warn("JWT_SECRET is not set: signing tokens with the insecure development secret (SHOP_ENV=dev)")
	return []byte(devJWTSecret), nil
}
