package main

import (
	"context"
	"log/slog"
	"strings"

	"github.com/shopdev/shop/handlers"
)

type runConfig struct {
	API     apiSettings
	Relay   relaySettings
	Consume consumeSettings
	Ops     opsSection
	Otel    otelSection
	Log     logSection
}

// runCmd is `shop run`: migrate, then the API, the relay and every consumer
// group in one process, sharing one metrics registry. The first part to
// fail stops the others; SIGINT or SIGTERM stops them all, each draining
// what it has in flight.
func runCmd(ctx context.Context, inv invocation) error {
	inv.getenv = withDefault(inv.getenv, "SHOP_ENV", "dev") // the one-command default; it says so below
	if inv.getenv("SHOP_ENV") == "dev" {
		// Development listens on loopback only, where a made-up JWT
		// secret is safe (tokenKeys).
		inv.getenv = withDefault(withDefault(inv.getenv, "HTTP_ADDR", "127.0.0.1:8080"), "METRICS_ADDR", "127.0.0.1:9090")
	}
	var cfg runConfig
	return serveCmd(ctx, inv, "shop-run", &cfg, &cfg.Ops, &cfg.Otel, func(log *slog.Logger, proc process) (func(string), []*part, error) {
		if cfg.API.Env.Env == "dev" {
			log.Warn("shop run: SHOP_ENV=dev (development defaults: loopback addresses, a random JWT secret unless JWT_SECRET is set; set SHOP_ENV=prod and JWT_SECRET for production)")
		}
		created, err := migrate(ctx, cfg.API.Postgres.URL, log)
		if err != nil {
			return nil, nil, err
		}
		api, err := newAPI(ctx, cfg.API, log, proc)
		if err != nil {
			return nil, nil, err
		}
		relay, err := newRelay(ctx, cfg.Relay, log, proc)
		if err != nil {
			api.close()
			return nil, nil, err
		}
		groups, err := newConsumers(ctx, cfg.Consume, log, proc, handlers.Names())
		if err != nil {
			api.close()
			relay.close()
			return nil, nil, err
		}
		// Commits wake the relay beside them directly, not through Postgres.
		api.notifier.WakeLocal(relay.relay)
		groups.notifier.WakeLocal(relay.relay)
		return func(opsAddr string) {
			log.Info("shop run: serving; Ctrl-C stops it",
				"api", urlOf(api.server.addr()), "metrics", urlOf(opsAddr)+"/metrics",
				"database", redact(cfg.API.Postgres.URL), "database_created", created,
				"rabbitmq", redact(cfg.Relay.AMQP.URL), "redis", cfg.API.Redis.redacted(), "redis_prefix", cfg.API.Redis.Prefix,
				"groups", strings.Join(handlers.Names(), ","))
		}, []*part{&api.part, &relay.part, &groups.part}, nil
	})
}
