package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/handlers"
	"github.com/shopdev/shop/internal/ops"
	"github.com/shopdev/shop/mailer"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/projections"
	"github.com/shopdev/shop/store"
)

// consumeSettings are what the consumer groups read.
type consumeSettings struct {
	Postgres postgresSection
	Redis    redisSection
	AMQP     amqpSection
	Queues   queueSection
	Consumer consumerSection
	SMTP     smtpSection
}

type consumeConfig struct {
	Consume consumeSettings
	Ops     opsSection
	Otel    otelSection
	Log     logSection
}

func consumeCmd(ctx context.Context, inv invocation) error {
	names := slices.Compact(slices.Sorted(slices.Values(inv.args)))
	if len(names) == 0 {
		return fmt.Errorf("%w: shop consume GROUP... (groups: %s)", errUsage, strings.Join(groupNames(), ", "))
	}
	for _, n := range names {
		if !slices.Contains(groupNames(), n) {
			return fmt.Errorf("%w: unknown consumer group %q (groups: %s)", errUsage, n, strings.Join(groupNames(), ", "))
		}
	}
	var cfg consumeConfig
	return serveCmd(ctx, inv, "shop-consume-"+strings.Join(names, "-"), &cfg, &cfg.Ops, &cfg.Otel, func(log *slog.Logger, proc process) (func(string), []*part, error) {
		groups, err := newConsumers(ctx, cfg.Consume, log, proc, names)
		if err != nil {
			return nil, nil, err
		}
		return func(opsAddr string) {
			log.Info("shop consume: consuming", "groups", strings.Join(names, ","), "metrics", urlOf(opsAddr)+"/metrics")
		}, []*part{&groups.part}, nil
	})
}

// groupNames are the consumer groups of the registry.
func groupNames() []string { return handlers.Names() }

// groupsHelp says what each consumer group does, for shop consume --help.
func groupsHelp() string {
	var b strings.Builder
	b.WriteString("Each group is a queue, shop.GROUP, that its replicas compete on:")
	for _, g := range handlers.Groups(handlers.Deps{}) {
		fmt.Fprintf(&b, "\n  %-12s %s", g.Name, g.About)
	}
	return b.String()
}

// consumers are consumer groups sharing one process, wired.
type consumers struct {
	part
	notifier *outbox.Notifier // wakes the relays after their commits
}

// newConsumers wires the named consumer groups; they report to proc.
func newConsumers(ctx context.Context, cfg consumeSettings, log *slog.Logger, proc process, names []string) (*consumers, error) {
	broker, err := cfg.AMQP.broker("shop consume", log)
	if err != nil {
		return nil, err
	}
	deps, closeDeps, err := groupDeps(cfg, log, proc)
	if err != nil {
		return nil, err
	}
	var groups []consumer.Group
	conns := 2 // the notifier's, and one to spare
	for _, g := range handlers.Groups(deps) {
		if slices.Contains(names, g.Name) {
			groups = append(groups, g)
			conns += consumer.Conns(g, cfg.Consumer.Concurrency, 1) // one committer: consumer.Config's default
		}
	}
	// The projections group rebuilds the read models whenever the Redis it
	// writes to is not the one they were last made whole on: after a
	// failover, which may have lost the last writes the old master
	// acknowledged, a restart (a Redis that keeps nothing on disk comes back
	// empty) or a FLUSHALL (the record goes with the rest). The rebuild
	// reads Postgres on a connection of its own.
	repair := slices.Contains(names, "projections")
	if repair {
		conns++
	}
	pg := proc.postgres()
	pool, err := store.Open(ctx, store.Config{DatabaseURL: cfg.Postgres.URL, MaxConns: int32(conns), Tracer: pg.queries()})
	if err != nil {
		closeDeps()
		return nil, err
	}
	release := func() { closeDeps(); pool.Close() }
	if err := proc.register(ops.DBPool("consumers", pool)); err != nil {
		release()
		return nil, err
	}
	notifier := outbox.NewNotifier(pool, log)
	uow := pg.units(store.NewUnitOfWork(pool, notifier))
	metrics := consumer.NewMetrics(proc.reg)
	// Every consumer process samples every group's queues: a group whose
	// consumers are all down still shows its backlog (take the max by group
	// over the processes).
	depth, err := consumer.NewDepth(consumer.DepthConfig{Broker: broker, Registerer: proc.reg,
		ManagementURL: cfg.Queues.ManagementURL, Interval: cfg.Queues.SampleEvery, Logger: log})
	if err != nil {
		release()
		return nil, err
	}
	var runners []*consumer.Runner
	var checks []ops.Check
	for _, g := range groups {
		r, err := consumer.New(consumer.Config{
			Group: g, Broker: broker, UnitOfWork: uow, Logger: log, Metrics: metrics,
			Concurrency: cfg.Consumer.Concurrency, Batch: cfg.Consumer.Batch, Gather: cfg.Consumer.Gather,
			MaxRetries: cfg.Consumer.MaxRetries, UnavailableFor: cfg.Consumer.UnavailableFor, Tracing: proc.tracing(),
		})
		if err != nil {
			release()
			return nil, err
		}
		if g.InPostgres() && len(checks) == 0 {
			checks = append(checks, ops.Check{Name: "postgres", Ready: uow.Ping})
		}
		runners = append(runners, r)
		checks = append(checks, r.Checks()...)
	}
	run := func(ctx context.Context) error {
		nctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		defer stop() // after the last delivery: its commit may still notify
		go func() { _ = notifier.Run(nctx) }()
		go func() { _ = depth.Run(ctx) }()
		if repair {
			rctx, cancel := context.WithCancel(ctx)
			stopped := make(chan struct{})
			go func() { defer close(stopped); repairAfterFailovers(rctx, log, deps.ReadModels, store.NewReads(pool)) }()
			defer func() { cancel(); <-stopped }() // before the pool and Redis close
		}
		done := make(chan struct{}, len(runners))
		for _, r := range runners {
			go func() { _ = r.Run(ctx); done <- struct{}{} }()
		}
		for range runners {
			<-done
		}
		return nil
	}
	return &consumers{part: part{name: "consumers", run: run, checks: checks, close: release}, notifier: notifier}, nil
}

// groupDeps builds what the groups' handlers use: the clock, the mailer
// (SMTP when SMTP_ADDR is set, else the log) and the Redis read models.
func groupDeps(cfg consumeSettings, log *slog.Logger, proc process) (handlers.Deps, func(), error) {
	var mail app.Mailer = mailer.Log{Logger: log}
	if cfg.SMTP.Addr != "" {
		m, err := mailer.NewSMTP(mailer.Config{Addr: cfg.SMTP.Addr, From: cfg.SMTP.From,
			Username: cfg.SMTP.Username, Password: cfg.SMTP.Password, Tracing: proc.tracing()})
		if err != nil {
			return handlers.Deps{}, nil, fmt.Errorf("SMTP_ADDR: %w", err)
		}
		mail = m
	}
	rdb, err := openRedis(cfg.Redis, 0, log)
	if err != nil {
		return handlers.Deps{}, nil, err
	}
	traceRedis(proc, rdb)
	if err := proc.register(ops.RedisPool("consumers", rdb)); err != nil {
		_ = rdb.Close()
		return handlers.Deps{}, nil, err
	}
	models, err := projections.New(projections.Config{Client: rdb, Prefix: cfg.Redis.Prefix})
	if err != nil {
		_ = rdb.Close()
		return handlers.Deps{}, nil, err
	}
	return handlers.Deps{Now: time.Now, Mailer: mail, ReadModels: models}, func() { _ = rdb.Close() }, nil
}
