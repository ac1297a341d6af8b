package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/handlers/emails"
	"github.com/shopdev/shop/handlers/inventory"
	"github.com/shopdev/shop/handlers/orders"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/projections"
	"github.com/shopdev/shop/store"
)

// consumerGroups are the groups `shop consume` runs.
var consumerGroups = []string{"orders", "inventory", "emails", "projections"}

func consumeCmd(ctx context.Context, cfg config, log *slog.Logger, names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("%w: shop consume GROUP... (groups: orders, inventory, emails, projections)", errUsage)
	}
	for _, n := range names {
		if !slices.Contains(consumerGroups, n) {
			return fmt.Errorf("%w: unknown consumer group %q (groups: orders, inventory, emails, projections)", errUsage, n)
		}
	}
	reg := newRegistry()
	p, err := consumeProcess(ctx, cfg, log, reg, names)
	if err != nil {
		return err
	}
	defer p.close()
	return runWithOps(ctx, log, cfg.MetricsAddr, reg, p.ready, p.run)
}

// consumeProcess wires the named consumer groups on one Postgres pool; their
// metrics go to reg.
func consumeProcess(ctx context.Context, cfg config, log *slog.Logger, reg *prometheus.Registry, names []string) (*process, error) {
	conns := 2
	for _, n := range names {
		if n != "projections" { // Redis only
			conns += groupConcurrency(cfg, n)
		}
	}
	pool, err := store.Open(ctx, store.Config{DatabaseURL: cfg.DatabaseURL, MaxConns: int32(conns)})
	if err != nil {
		return nil, err
	}
	var rdb *redis.Client
	release := func() {
		if rdb != nil {
			_ = rdb.Close()
		}
		pool.Close()
	}
	notifier := outbox.NewNotifier(pool, log)
	uow := store.NewUnitOfWork(pool, notifier)
	metrics := consumer.NewMetrics(reg)
	var groups []*consumer.Group
	for _, name := range slices.Compact(slices.Sorted(slices.Values(names))) {
		group, _ := outbox.GroupNamed(name) // an unknown name fails consumer.New: no group
		gc := consumer.Config{
			Group: group, AMQPURL: cfg.AMQPURL, UnitOfWork: uow,
			Logger: log, Metrics: metrics, Concurrency: groupConcurrency(cfg, name), MaxRetries: cfg.ConsumerMaxRetries,
			UnavailableFor: cfg.ConsumerUnavailableFor,
		}
		if name == "projections" {
			if rdb, err = openRedis(cfg); err == nil {
				gc.Project, gc.ProjectEach, err = projector(rdb, cfg.RedisPrefix)
				gc.Batch = cfg.ConsumerBatch
			}
		} else {
			err = groupHandlers(cfg, log, name, &gc)
		}
		var g *consumer.Group
		if err == nil {
			g, err = consumer.New(gc)
		}
		if err != nil {
			release()
			return nil, err
		}
		groups = append(groups, g)
	}
	ready := func(ctx context.Context) error {
		if err := pool.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		if rdb != nil {
			if err := rdb.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("redis: %w", err)
			}
		}
		for _, g := range groups {
			if !g.Connected() {
				return errors.New("rabbitmq: not connected")
			}
		}
		return nil
	}
	run := func(ctx context.Context) error {
		var wg sync.WaitGroup
		nctx, stopNotifier := context.WithCancel(context.WithoutCancel(ctx))
		defer stopNotifier()
		go func() { _ = notifier.Run(nctx) }()
		for _, g := range groups {
			wg.Go(func() { _ = g.Run(ctx) })
		}
		wg.Wait()
		return nil
	}
	return &process{run: run, ready: ready, close: release, notifier: notifier}, nil
}

func openRedis(cfg config) (*redis.Client, error) {
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	return redis.NewClient(opts), nil
}

// projector applies events to the Redis read models, one at a time or
// several in one round trip. Redis being unreachable is waited out without
// bound (consumer.ErrUnavailable from a projector, unlike a handler's, is
// not limited by UnavailableFor); data the projections reject goes to the
// dead queue.
func projector(rdb *redis.Client, prefix string) (
	one func(context.Context, outbox.Envelope) (bool, error),
	each func(context.Context, []outbox.Envelope) ([]bool, []error), err error) {
	store, err := projections.New(projections.Config{Client: rdb, Prefix: prefix})
	if err != nil {
		return nil, nil, err
	}
	each = func(ctx context.Context, envs []outbox.Envelope) ([]bool, []error) {
		events := make([]projections.Event, len(envs))
		for i, e := range envs {
			events[i] = projections.Event{Type: e.Type, AggregateID: e.AggregateID,
				AggregateVersion: e.AggregateVersion, OccurredAt: e.OccurredAt, Data: e.Data}
		}
		changed, errs := store.ApplyEach(ctx, events)
		for i, err := range errs {
			var replied redis.Error
			if err != nil && !errors.Is(err, domain.ErrInvalid) && !errors.As(err, &replied) {
				errs[i] = fmt.Errorf("%w: redis: %w", consumer.ErrUnavailable, err)
			}
		}
		return changed, errs
	}
	one = func(ctx context.Context, e outbox.Envelope) (bool, error) {
		changed, errs := each(ctx, []outbox.Envelope{e})
		return changed[0], errs[0]
	}
	return one, each, nil
}

// groupConcurrency is how many deliveries a group holds at once:
// CONSUMER_CONCURRENCY, and for the groups that batch (all but emails) at
// least CONSUMER_BATCH, since a batch is made of the deliveries in hand.
func groupConcurrency(cfg config, name string) int {
	if name != "emails" {
		return max(cfg.ConsumerConcurrency, cfg.ConsumerBatch)
	}
	return cfg.ConsumerConcurrency
}

// groupHandlers sets a group's handlers in gc, and how many deliveries one
// of its transactions may apply.
func groupHandlers(cfg config, log *slog.Logger, name string, gc *consumer.Config) error {
	switch name {
	case "orders":
		gc.Handlers, gc.BatchHandlers, gc.Batch = orders.Handlers(time.Now), orders.BatchHandlers(time.Now), cfg.ConsumerBatch
	case "inventory":
		gc.Handlers, gc.BatchHandlers, gc.Batch = inventory.Handlers(time.Now), inventory.BatchHandlers(time.Now), cfg.ConsumerBatch
	default: // emails
		var mailer emails.Mailer = emails.LogMailer{Log: log}
		if cfg.SMTPAddr != "" {
			m, err := emails.NewSMTPMailer(emails.SMTPConfig{Addr: cfg.SMTPAddr, From: cfg.SMTPFrom,
				Username: cfg.SMTPUsername, Password: cfg.SMTPPassword})
			if err != nil {
				return fmt.Errorf("SMTP_ADDR: %w", err)
			}
			mailer = m
		}
		// One at a time: a batch that fails is applied again delivery by
		// delivery, and the mail its handlers sent would go out twice.
		gc.Handlers, gc.Batch = emails.Handlers(mailer), 1
	}
	return nil
}

// deadCmd lists or replays a group's dead messages.
func deadCmd(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	usage := fmt.Errorf("%w: shop dead list GROUP [LIMIT] | shop dead replay GROUP [LIMIT]", errUsage)
	if len(args) < 2 || len(args) > 3 {
		return usage
	}
	g, ok := outbox.GroupNamed(args[1])
	if !ok {
		return fmt.Errorf("%w: unknown consumer group %q", errUsage, args[1])
	}
	limit := 0 // all
	if len(args) == 3 {
		n, err := strconv.Atoi(args[2])
		if err != nil || n < 1 {
			return fmt.Errorf("%w: LIMIT must be a positive integer", errUsage)
		}
		limit = n
	}
	switch args[0] {
	case "list":
		msgs, err := consumer.ListDead(ctx, cfg.AMQPURL, g, limit)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\n", m.ID, m.Type, m.FailedAt, m.Reason)
		}
		fmt.Fprintf(stdout, "%d dead message(s) in %s\n", len(msgs), g.DeadQueue())
		return nil
	case "replay":
		n, err := consumer.ReplayDead(ctx, cfg.AMQPURL, g, limit)
		fmt.Fprintf(stdout, "replayed %d message(s) from %s to %s\n", n, g.DeadQueue(), g.Queue())
		return err
	default:
		return usage
	}
}

// projectionsCmd runs `shop projections rebuild`.
func projectionsCmd(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) != 1 || args[0] != "rebuild" {
		return fmt.Errorf("%w: shop projections rebuild", errUsage)
	}
	pool, err := store.Open(ctx, store.Config{DatabaseURL: cfg.DatabaseURL, MaxConns: 2})
	if err != nil {
		return err
	}
	defer pool.Close()
	rdb, err := openRedis(cfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	models, err := projections.New(projections.Config{Client: rdb, Prefix: cfg.RedisPrefix})
	if err != nil {
		return err
	}
	start := time.Now()
	products, orders, err := models.Rebuild(ctx, store.NewReads(pool))
	fmt.Fprintf(stdout, "rebuilt %d products and %d orders in %s\n", products, orders, time.Since(start).Round(time.Millisecond))
	return err
}
