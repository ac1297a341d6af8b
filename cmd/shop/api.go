package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/handlers/httpapi"
	"github.com/shopdev/shop/internal/ops"
	"github.com/shopdev/shop/limit"
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
	Backlog  backlogSection
	Limits   limitSection
	Token    tokenSection
	Password passwordSection
}

type apiConfig struct {
	API  apiSettings
	Ops  opsSection
	Otel otelSection
	Log  logSection
}

func apiCmd(ctx context.Context, inv invocation) error {
	var cfg apiConfig
	return serveCmd(ctx, inv, "shop-api", &cfg, &cfg.Ops, &cfg.Otel, func(log *slog.Logger, proc process) (func(string), []*part, error) {
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
	authCfg, err := tokenKeys(cfg, log)
	if err != nil {
		return nil, err
	}
	authCfg.TokenTTL, authCfg.PasswordCost = cfg.Token.TTL, cfg.Password.Cost
	a, err := auth.New(authCfg)
	if err != nil {
		return nil, err
	}
	trusted, err := parsePrefixes(cfg.HTTP.TrustedProxies)
	if err != nil {
		return nil, err
	}
	// Short timeouts and no retries: a slow Redis must not slow the API,
	// which falls back to Postgres.
	rdb, err := openRedis(cfg.Redis, 250*time.Millisecond, log)
	if err != nil {
		return nil, err
	}
	pg := proc.postgres()
	pool, err := store.Open(ctx, store.Config{DatabaseURL: cfg.Postgres.URL, MaxConns: int32(cfg.Pool.MaxConns), Tracer: pg.queries()})
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	traceRedis(proc, rdb)
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
	if err := proc.register(ops.DBPool("api", pool), ops.RedisPool("api", rdb)); err != nil {
		release()
		return nil, err
	}
	models, err := projections.New(projections.Config{Client: pipelined, Prefix: cfg.Redis.Prefix})
	if err != nil {
		release()
		return nil, err
	}
	origin := store.NewReads(pool)
	reads, err := projections.NewReader(projections.ReaderConfig{Store: models, Origin: origin,
		CacheMax: cfg.HTTP.ReadCacheMax, CacheTTL: cfg.HTTP.ReadCacheTTL})
	if err != nil {
		release()
		return nil, err
	}
	apiCfg := httpapi.Config{Reads: reads, Users: origin, Auth: a, Logger: log, Registry: proc.reg, Ops: proc.handler(),
		TrustedProxies: trusted, HSTS: cfg.HTTP.HSTS, Tracing: proc.tracing(), CommandBatchMax: cfg.HTTP.CommandBatchMax,
		CommandLanes: cfg.HTTP.CommandLanes, MaxInFlight: cfg.HTTP.MaxInFlight}
	if apiCfg.Limiter, apiCfg.Logins, err = limits(cfg, pipelined); err != nil {
		release()
		return nil, err
	}
	notifier := outbox.NewNotifier(pool, log)
	uow := pg.units(store.NewUnitOfWork(pool, notifier))
	checks := []ops.Check{{Name: "postgres", Ready: uow.Ping}}
	apiCfg.UnitOfWork = uow
	var backlog *outbox.Backlog
	if cfg.Backlog.MaxPending > 0 {
		backlog, err = outbox.NewBacklog(outbox.BacklogConfig{Pool: pool, Max: cfg.Backlog.MaxPending, Wait: cfg.Backlog.Wait,
			Logger: log, Registry: proc.reg})
		if err != nil {
			release()
			return nil, err
		}
		apiCfg.Backlog = backlog
	}
	e, err := httpapi.New(apiCfg)
	if err != nil {
		release()
		return nil, err
	}
	server, err := listen(log, "api", cfg.HTTP.Addr, e, serverLimits{
		read: cfg.HTTP.ReadTimeout, write: cfg.HTTP.WriteTimeout, idle: cfg.HTTP.IdleTimeout, maxConns: cfg.HTTP.MaxConns})
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
			if backlog != nil {
				go backlog.Run(ctx)
			}
			return server.serve(ctx)
		}},
		server:   server,
		notifier: notifier,
	}, nil
}

// limits returns the budgets the API's replicas share in rdb: the rate
// limit and the login throttle, each nil when configured off. rdb is the
// autopipelined client of the reads: a request's budget and its read go in
// the same round trips as those of the requests beside it.
func limits(cfg apiSettings, rdb limit.Client) (*limit.Limiter, *limit.Logins, error) {
	var limiter *limit.Limiter
	var logins *limit.Logins
	var err error
	if cfg.Limits.RateLimit > 0 {
		limiter, err = limit.New(limit.Config{Client: rdb, Prefix: cfg.Redis.Prefix, Rate: cfg.Limits.RateLimit, Burst: cfg.Limits.RateBurst, Grant: cfg.Limits.RateGrant})
		if err != nil {
			return nil, nil, err
		}
	}
	if cfg.Limits.LoginMaxFailures > 0 {
		logins, err = limit.NewLogins(limit.LoginsConfig{Client: rdb, Prefix: cfg.Redis.Prefix,
			MaxFailures: cfg.Limits.LoginMaxFailures, Window: cfg.Limits.LoginWindow})
		if err != nil {
			return nil, nil, err
		}
	}
	return limiter, logins, nil
}

// tokenKeys returns the keys that sign and verify tokens: JWT_KEYS, or
// JWT_SECRET, or, in dev only and only for an API that listens on a
// loopback address, a random secret made up for this process (its tokens
// end with it). A fixed development secret would let anyone who read the
// source mint an admin token for any deployment started in dev mode.
func tokenKeys(cfg apiSettings, log *slog.Logger) (auth.Config, error) {
	keys, err := cfg.Token.keys()
	switch {
	case err != nil:
		return auth.Config{}, err
	case len(keys) > 0:
		return auth.Config{Keys: keys}, nil
	case cfg.Token.Secret != "":
		return auth.Config{Secret: []byte(cfg.Token.Secret)}, nil
	case cfg.Env.Env != "dev":
		return auth.Config{}, errors.New("JWT_SECRET is required (or JWT_KEYS); SHOP_ENV=dev makes up a secret for an API on a loopback address")
	case !loopback(cfg.HTTP.Addr):
		return auth.Config{}, fmt.Errorf("JWT_SECRET is required: the API listens on %s, which is not a loopback address only, and SHOP_ENV=dev makes up a secret only for an API nobody else can reach", cfg.HTTP.Addr)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return auth.Config{}, fmt.Errorf("make up a jwt secret: %w", err)
	}
	log.Warn("JWT_SECRET is not set: signing tokens with a random secret of this process (SHOP_ENV=dev, loopback only); its tokens end when it stops")
	return auth.Config{Secret: secret}, nil
}

// loopback reports whether addr (host:port) binds a loopback address only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
