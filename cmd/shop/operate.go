package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/handlers"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/projections"
	"github.com/shopdev/shop/store"
)

// The operator's commands: migrations, the outbox's backlog, the dead
// queues and the read models.

type migrateConfig struct {
	Postgres postgresSection
	Log      logSection
}

func migrateCmd(ctx context.Context, inv invocation) error {
	var cfg migrateConfig
	log, err := inv.loadAlone("migrate", &cfg)
	if err != nil {
		return err
	}
	_, err = migrate(ctx, cfg.Postgres.URL, log)
	return err
}

// migrate creates the database if it is missing and applies the
// migrations; it reports whether it created the database.
func migrate(ctx context.Context, databaseURL string, log *slog.Logger) (created bool, err error) {
	created, err = store.Migrate(ctx, databaseURL, log)
	if err != nil {
		return created, fmt.Errorf("migrate: %w", err)
	}
	return created, nil
}

type outboxConfig struct {
	Postgres postgresSection
	Log      logSection
}

func outboxStatusCmd(ctx context.Context, inv invocation) error {
	var cfg outboxConfig
	if _, err := inv.loadAlone("outbox status", &cfg); err != nil {
		return err
	}
	pool, err := store.Open(ctx, store.Config{DatabaseURL: cfg.Postgres.URL, MaxConns: 1})
	if err != nil {
		return err
	}
	defer pool.Close()
	status, err := outbox.ReadStatus(ctx, pool)
	if err != nil {
		return err
	}
	var total int64
	w := tabwriter.NewWriter(inv.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "partition\tpending\toldest\t")
	for _, s := range status {
		total += s.Pending
		oldest := "-"
		if s.Pending > 0 {
			oldest = s.OldestAge.Round(time.Millisecond).String()
		}
		fmt.Fprintf(w, "%d\t%d\t%s\t\n", s.Partition, s.Pending, oldest)
	}
	fmt.Fprintf(w, "total\t%d\t\t\n", total)
	return w.Flush()
}

type deadConfig struct {
	AMQP amqpSection
	Log  logSection
}

// deadArgs reads GROUP [N] of shop dead list|replay: the group's route, and
// how many messages (0: all).
func deadArgs(name string, args []string) (outbox.Route, int, error) {
	usage := fmt.Errorf("%w: shop dead %s GROUP [N]", errUsage, name)
	if len(args) < 1 || len(args) > 2 {
		return outbox.Route{}, 0, usage
	}
	route, ok := handlers.Topology().Route(args[0])
	if !ok {
		return outbox.Route{}, 0, fmt.Errorf("%w: unknown consumer group %q", errUsage, args[0])
	}
	limit := 0
	if len(args) == 2 {
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 1 {
			return outbox.Route{}, 0, fmt.Errorf("%w: N must be a positive integer", errUsage)
		}
		limit = n
	}
	return route, limit, nil
}

// deadBroker reaches RabbitMQ for the dead-queue commands.
func deadBroker(inv invocation) (*outbox.Broker, error) {
	var cfg deadConfig
	log, err := inv.load(&cfg)
	if err != nil {
		return nil, err
	}
	return cfg.AMQP.broker("shop dead", log)
}

func deadListCmd(ctx context.Context, inv invocation) error {
	route, limit, err := deadArgs("list", inv.args)
	if err != nil {
		return err
	}
	broker, err := deadBroker(inv)
	if err != nil {
		return err
	}
	msgs, err := consumer.ListDead(ctx, broker, route, limit)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(inv.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tTYPE\tFAILED AT\tREASON")
	for _, m := range msgs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", m.ID, m.Type, m.FailedAt, m.Reason)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(inv.stdout, "%d dead message(s) in %s\n", len(msgs), route.DeadQueue())
	return nil
}

func deadReplayCmd(ctx context.Context, inv invocation) error {
	route, limit, err := deadArgs("replay", inv.args)
	if err != nil {
		return err
	}
	broker, err := deadBroker(inv)
	if err != nil {
		return err
	}
	n, err := consumer.ReplayDead(ctx, broker, route, limit)
	fmt.Fprintf(inv.stdout, "replayed %d message(s) from %s to %s\n", n, route.DeadQueue(), route.Queue())
	return err
}

type rebuildConfig struct {
	Postgres postgresSection
	Redis    redisSection
	Log      logSection
}

// rebuildCmd is shop projections rebuild.
func rebuildCmd(ctx context.Context, inv invocation) error {
	var cfg rebuildConfig
	log, err := inv.loadAlone("projections rebuild", &cfg)
	if err != nil {
		return err
	}
	pool, err := store.Open(ctx, store.Config{DatabaseURL: cfg.Postgres.URL, MaxConns: 2})
	if err != nil {
		return err
	}
	defer pool.Close()
	rdb, err := openRedis(cfg.Redis, 0, log)
	if err != nil {
		return err
	}
	defer rdb.Close()
	models, err := projections.New(projections.Config{Client: rdb, Prefix: cfg.Redis.Prefix})
	if err != nil {
		return err
	}
	start := time.Now()
	products, orders, err := models.Rebuild(ctx, store.NewReads(pool))
	if err != nil {
		return fmt.Errorf("rebuild (after %d products and %d orders): %w", products, orders, err)
	}
	fmt.Fprintf(inv.stdout, "rebuilt %d products and %d orders in %s\n", products, orders, time.Since(start).Round(time.Millisecond))
	return nil
}

type resetConfig struct {
	Env      envSection
	Postgres postgresSection
	Redis    redisSection
	AMQP     amqpSection
	Log      logSection
}

// resetCmd is shop reset: for a development sandbox, it wipes what shop
// keeps (its database, the Redis keys under its prefix, its queues and
// exchange), so that the next shop run starts empty. It refuses to outside
// SHOP_ENV=dev.
func resetCmd(ctx context.Context, inv invocation) error {
	var cfg resetConfig
	log, err := inv.loadAlone("reset", &cfg)
	if err != nil {
		return err
	}
	if cfg.Env.Env != "dev" {
		return errors.New("shop reset wipes every order, user and event: it runs only with SHOP_ENV=dev")
	}
	if err := store.DropDatabase(ctx, cfg.Postgres.URL); err != nil {
		return err
	}
	rdb, err := openRedis(cfg.Redis, 0, log)
	if err != nil {
		return err
	}
	defer rdb.Close()
	keys := 0
	iter := rdb.Scan(ctx, 0, cfg.Redis.Prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		if err := rdb.Del(ctx, iter.Val()).Err(); err != nil {
			return fmt.Errorf("redis: delete %s: %w", iter.Val(), err)
		}
		keys++
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	broker, err := cfg.AMQP.broker("shop reset", log)
	if err != nil {
		return err
	}
	conn, err := broker.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("rabbitmq channel: %w", err)
	}
	for _, r := range handlers.Topology() {
		for _, q := range []string{r.Queue(), r.DeadQueue()} {
			if _, err := ch.QueueDelete(q, false, false, false); err != nil {
				return fmt.Errorf("delete queue %s: %w", q, err)
			}
		}
	}
	if err := ch.ExchangeDelete(outbox.Exchange, false, false); err != nil {
		return fmt.Errorf("delete exchange %s: %w", outbox.Exchange, err)
	}
	log.Info("reset: shop's data is gone", "database", redact(cfg.Postgres.URL), "redis_keys", keys, "rabbitmq", redact(cfg.AMQP.URL))
	return nil
}
