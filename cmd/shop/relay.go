package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/shopdev/shop/internal/ops"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// relaySettings are what the relay reads.
type relaySettings struct {
	Postgres postgresSection
	AMQP     amqpSection
	Relay    relaySection
}

type relayConfig struct {
	Relay relaySettings
	Ops   opsSection
	Otel  otelSection
	Log   logSection
}

func relayCmd(ctx context.Context, inv invocation) error {
	var cfg relayConfig
	return serveCmd(ctx, inv, "shop-relay", &cfg, &cfg.Ops, &cfg.Otel, func(log *slog.Logger, proc process) (func(string), []*part, error) {
		relay, err := newRelay(ctx, cfg.Relay, log, proc)
		if err != nil {
			return nil, nil, err
		}
		return func(opsAddr string) {
			log.Info("shop relay: relaying", "rabbitmq", redact(cfg.Relay.AMQP.URL), "metrics", urlOf(opsAddr)+"/metrics")
		}, []*part{&relay.part}, nil
	})
}

// relay is an outbox relay, wired.
type relay struct {
	part
	relay *outbox.Relay
}

// newRelay wires an outbox relay; it reports to proc.
func newRelay(ctx context.Context, cfg relaySettings, log *slog.Logger, proc process) (*relay, error) {
	broker, err := cfg.AMQP.broker("shop relay", log)
	if err != nil {
		return nil, err
	}
	pool, err := store.Open(ctx, store.Config{DatabaseURL: cfg.Postgres.URL, MaxConns: int32(cfg.Relay.Workers) + 4, Tracer: proc.postgres().queries()})
	if err != nil {
		return nil, err
	}
	if err := proc.register(ops.DBPool("relay", pool)); err != nil {
		pool.Close()
		return nil, err
	}
	r, err := outbox.NewRelay(outbox.RelayConfig{
		Pool: pool, Broker: broker, Logger: log, Metrics: outbox.NewMetrics(proc.reg),
		BatchSize: cfg.Relay.BatchSize, Workers: cfg.Relay.Workers, Linger: cfg.Relay.Linger, Tracing: proc.tracing(),
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	uow := store.NewUnitOfWork(pool, nil)
	return &relay{
		part: part{name: "relay", run: r.Run, close: pool.Close, checks: []ops.Check{
			{Name: "postgres", Ready: uow.Ping},
			{Name: "rabbitmq (relay)", Ready: func(context.Context) error {
				if !r.Connected() {
					return errors.New("not connected")
				}
				return nil
			}},
		}},
		relay: r,
	}, nil
}
