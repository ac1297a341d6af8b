// Package consumer runs a consumer group: Watermill's router over
// watermill-amqp subscriptions to the group's queue shop.<group>, several
// deliveries at a time, each applied by the group's handler for its event
// type inside ONE Postgres transaction with the inbox row (consumer, event
// id), so a duplicate delivery is acknowledged and does nothing.
//
// Around the library's known pitfalls: the marshaler never fails (a body
// that is not an envelope, or a header that is not expected, is reported to
// the handler, which sends it to the dead queue instead of requeueing it
// forever); one Subscribe handles one delivery at a time, so the router gets
// Concurrency handlers on the same queue, each with its own channel; the
// first connection is retried; deduplication is the inbox in Postgres, not
// the library's per-process memory.
//
// Failures: Postgres being unreachable is waited out (nothing can be
// applied anyway); other errors are retried with backoff MaxRetries times;
// a message that still fails, cannot be decoded or carries headers it
// should not goes to shop.<group>.dead with the reason in its headers and is
// acknowledged. Nothing is ever requeued in a loop.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// Handler applies one event inside tx, the transaction that also holds the
// event's inbox row. An error rolls both back. Handlers append the events
// they cause to the outbox with tx.Append.
type Handler func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error

// Config configures a consumer group.
type Config struct {
	// Group is the group: its name (queue shop.<name>) and routing keys.
	// Required.
	Group outbox.Group
	// Handlers maps every routing key of the group to its handler, run in
	// the inbox transaction. A key without a handler is a configuration
	// error. Either Handlers (with UnitOfWork) or Project is required.
	Handlers map[string]Handler
	// Project applies an event outside Postgres, for groups that are
	// idempotent by themselves (the Redis projections guard by aggregate
	// version): no inbox row, no transaction. It reports whether anything
	// changed.
	Project func(ctx context.Context, e outbox.Envelope) (bool, error)
	// AMQPURL is the RabbitMQ URL. Required.
	AMQPURL string
	// UnitOfWork runs the transactions of Handlers.
	UnitOfWork *store.UnitOfWork
	// Logger receives the group's logs. Required.
	Logger *slog.Logger
	// Metrics counts what the group did; default none.
	Metrics *Metrics
	// Concurrency is how many deliveries are handled at once, each
	// subscription on its own channel. Default 4.
	Concurrency int
	// Prefetch is how many unacknowledged deliveries each subscription may
	// hold. Default 2.
	Prefetch int
	// MaxRetries is how many times a failing message is retried in-process
	// before it goes to the dead queue. Default 5.
	MaxRetries int
	// MinBackoff and MaxBackoff bound the delay between retries, and
	// between reconnection attempts. Defaults 50ms and 2s.
	MinBackoff, MaxBackoff time.Duration
}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Group.Name == "":
		return errors.New("consumer: group is required")
	case c.AMQPURL == "":
		return errors.New("consumer: amqp url is required")
	case (c.Project == nil) == (c.Handlers == nil):
		return errors.New("consumer: either handlers or a projector is required")
	case c.Handlers != nil && c.UnitOfWork == nil:
		return errors.New("consumer: handlers need a unit of work")
	case c.Logger == nil:
		return errors.New("consumer: logger is required")
	}
	for _, key := range c.Group.Keys {
		if c.Project == nil && c.Handlers[key] == nil {
			return fmt.Errorf("consumer %s: no handler for %s", c.Group.Name, key)
		}
	}
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.Prefetch == 0 {
		c.Prefetch = 2
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 5
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 50 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 2 * time.Second
	}
	if c.Concurrency < 1 || c.Prefetch < 1 || c.MaxRetries < 0 || c.MinBackoff > c.MaxBackoff {
		return errors.New("consumer: concurrency and prefetch must be positive, retries not negative, min backoff <= max backoff")
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	return nil
}

// Group is a running consumer group.
type Group struct {
	cfg  Config
	conn atomic.Pointer[wamqp.ConnectionWrapper] // the current connection, once made
}

// New returns a consumer group for cfg.
func New(cfg Config) (*Group, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Group{cfg: cfg}, nil
}

// Connected reports whether the group holds an open RabbitMQ connection.
func (g *Group) Connected() bool {
	c := g.conn.Load()
	return c != nil && c.IsConnected()
}

// Run consumes until ctx ends, then lets the deliveries in flight finish and
// returns nil. RabbitMQ being down, at start or later, is not an error: it
// reconnects.
func (g *Group) Run(ctx context.Context) error {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		err := g.runOnce(ctx, func() { attempt = 0 })
		if ctx.Err() != nil {
			return nil
		}
		wait := g.backoff(attempt)
		g.cfg.Logger.Warn("consumer stopped; reconnecting", "group", g.cfg.Group.Name, "error", err.Error(), "retry_in", wait)
		sleep(ctx, wait)
	}
	return nil
}

// runOnce connects, declares the topology and runs the router until ctx ends
// or the router stops.
func (g *Group) runOnce(ctx context.Context, connected func()) error {
	wcfg := g.amqpConfig()
	conn, err := wamqp.NewConnection(wcfg.Connection, g.logger())
	if err != nil {
		return fmt.Errorf("connect to rabbitmq: %w", err)
	}
	defer func() { _ = conn.Close() }()
	g.conn.Store(conn)
	connected()

	sub, err := wamqp.NewSubscriberWithConnection(wcfg, g.logger(), conn)
	if err != nil {
		return fmt.Errorf("subscriber: %w", err)
	}
	pub, err := wamqp.NewPublisherWithConnection(wcfg, g.logger(), conn)
	if err != nil {
		return fmt.Errorf("dead-queue publisher: %w", err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 15 * time.Second}, g.logger())
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	poison, err := middleware.PoisonQueueWithFilter(pub, g.cfg.Group.DeadQueue(), func(err error) bool {
		if errors.Is(err, errStopping) {
			return false // a delivery cut short by shutdown is requeued instead
		}
		g.cfg.Metrics.Dead.WithLabelValues(g.cfg.Group.Name).Inc()
		g.cfg.Logger.Error("message to the dead queue", "group", g.cfg.Group.Name, "reason", err.Error())
		return true
	})
	if err != nil {
		return fmt.Errorf("dead-queue middleware: %w", err)
	}
	router.AddMiddleware(
		poison,
		middleware.Retry{
			MaxRetries: g.cfg.MaxRetries, InitialInterval: g.cfg.MinBackoff, MaxInterval: g.cfg.MaxBackoff,
			Multiplier: 2, RandomizationFactor: 0.3, ResetContextOnRetry: true,
			ShouldRetry: func(p middleware.RetryParams) bool {
				return !errors.Is(p.Err, errPermanent) && !errors.Is(p.Err, errStopping)
			},
		}.Middleware,
		middleware.Recoverer,
	)
	for i := range g.cfg.Concurrency {
		router.AddConsumerHandler(fmt.Sprintf("%s-%d", g.cfg.Group.Name, i), g.cfg.Group.Queue(), sub, g.handle)
	}
	// The router ends when ctx does, or when a subscription cannot be made
	// (RabbitMQ went away before it started).
	if err := router.Run(ctx); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	return errors.New("router stopped")
}

func (g *Group) amqpConfig() wamqp.Config {
	return wamqp.Config{
		Connection: wamqp.ConnectionConfig{AmqpURI: g.cfg.AMQPURL, Reconnect: &wamqp.ReconnectConfig{
			BackoffInitialInterval: g.cfg.MinBackoff, BackoffMultiplier: 2, BackoffMaxInterval: g.cfg.MaxBackoff,
		}},
		Marshaler: marshaler{},
		// The exchange and the bindings are outbox.Declare's: subscriptions
		// name the queue, and dead messages go through the default exchange
		// straight to shop.<group>.dead.
		Exchange:  wamqp.ExchangeConfig{GenerateName: func(string) string { return "" }},
		QueueBind: wamqp.QueueBindConfig{GenerateRoutingKey: func(string) string { return "" }},
		Queue: wamqp.QueueConfig{
			GenerateName: wamqp.GenerateQueueNameTopicName, Durable: true,
			Arguments: amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum},
		},
		Publish: wamqp.PublishConfig{
			GenerateRoutingKey: func(topic string) string { return topic },
			ConfirmDelivery:    true, Mandatory: true, ChannelPoolSize: 1,
		},
		Consume:         wamqp.ConsumeConfig{Qos: wamqp.QosConfig{PrefetchCount: g.cfg.Prefetch}},
		TopologyBuilder: topology{},
	}
}

func (g *Group) logger() watermill.LoggerAdapter {
	return watermill.NewSlogLoggerWithLevelMapping(g.cfg.Logger.With("group", g.cfg.Group.Name), map[slog.Level]slog.Level{
		slog.LevelInfo: slog.LevelDebug, // the library's per-subscription chatter
	})
}

// topology declares the whole topology of outbox.Declare whenever a
// subscription starts, so a consumer started before any relay has its queue.
type topology struct{}

func (topology) BuildTopology(ch *amqp.Channel, _ wamqp.BuildTopologyParams, _ wamqp.Config, _ watermill.LoggerAdapter) error {
	return outbox.Declare(ch)
}

func (topology) ExchangeDeclare(ch *amqp.Channel, _ string, _ wamqp.Config) error {
	return outbox.Declare(ch)
}

// ErrUnavailable is what a handler wraps when a dependency other than
// Postgres is down (an SMTP server): like Postgres being down, the delivery
// waits and tries again, without counting retries, instead of going to the
// dead queue.
var ErrUnavailable = errors.New("dependency unavailable")

var (
	// errPermanent marks failures that retrying cannot fix.
	errPermanent = errors.New("permanent failure")
	// errStopping marks a delivery interrupted by shutdown.
	errStopping = errors.New("consumer stopping")
)

// handle applies one delivery. Its error goes through Retry and then to the
// dead queue.
func (g *Group) handle(msg *message.Message) error {
	msg.Metadata.Set(MetaFailedAt, time.Now().UTC().Format(time.RFC3339Nano)) // kept only if it ends dead
	if bad := msg.Metadata.Get(metaUnexpected); bad != "" {
		return fmt.Errorf("%w: unexpected header %q", errPermanent, bad)
	}
	env, err := decode(msg.Payload)
	if err != nil {
		return fmt.Errorf("%w: %w", errPermanent, err)
	}
	_, err = g.Apply(msg.Context(), env)
	return err
}

// Apply applies one event as a delivery of it would: the group's handler
// for its type and the inbox row, in one transaction. It reports whether
// the event was applied now (false: applied before, a duplicate). Errors
// that retrying cannot fix (no handler, invalid data, unknown aggregate)
// are permanent. Tests and tools use it to feed events without RabbitMQ.
func (g *Group) Apply(ctx context.Context, env outbox.Envelope) (bool, error) {
	group := g.cfg.Group.Name
	h := g.cfg.Handlers[env.Type]
	if !slices.Contains(g.cfg.Group.Keys, env.Type) || (g.cfg.Project == nil && h == nil) {
		return false, fmt.Errorf("%w: group %s has no handler for %q", errPermanent, group, env.Type)
	}
	log := g.cfg.Logger.With("group", group, "event_id", env.ID.String(), "event_type", env.Type,
		"correlation_id", env.CorrelationID, "causation_id", env.CausationID)
	ctx = outbox.WithMetadata(ctx, outbox.Metadata{
		CorrelationID: env.CorrelationID, CausationID: env.ID.String(), TraceParent: env.Trace["traceparent"],
	})
	start := time.Now()
	applied, err := g.apply(ctx, log, h, env)
	switch {
	case err == nil && applied:
		g.handled(env.Type, "applied")
		g.cfg.Metrics.Latency.WithLabelValues(group).Observe(time.Since(start).Seconds())
		log.Debug("event applied")
		return true, nil
	case err == nil:
		g.handled(env.Type, "duplicate")
		log.Debug("duplicate event skipped")
		return false, nil
	case errors.Is(err, errStopping):
		return false, err
	case errors.Is(err, errPermanent), errors.Is(err, domain.ErrInvalid), errors.Is(err, domain.ErrNotFound):
		g.handled(env.Type, "failed")
		log.Error("event cannot be applied", "error", err.Error())
		return false, fmt.Errorf("%w: %w", errPermanent, err)
	default:
		g.handled(env.Type, "failed")
		log.Warn("event failed", "error", err.Error())
		return false, err
	}
}

// apply runs the handler and the inbox claim in one transaction. While
// Postgres (or another dependency, ErrUnavailable) is unreachable it waits
// between attempts, outside any transaction, without counting retries: no
// message could be applied, and sending them all to the dead queue would not
// help.
func (g *Group) apply(ctx context.Context, log *slog.Logger, h Handler, env outbox.Envelope) (bool, error) {
	// A transaction under way finishes even when the process is stopping.
	work := context.WithoutCancel(ctx)
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return false, fmt.Errorf("%w: %w", errStopping, ctx.Err())
		}
		var applied bool
		var err error
		if g.cfg.Project != nil {
			applied, err = g.cfg.Project(work, env)
		} else {
			err = g.cfg.UnitOfWork.Do(work, func(ctx context.Context, tx *store.Tx) error {
				first, err := tx.Inbox.Claim(ctx, g.cfg.Group.Name, env.ID)
				if err != nil || !first {
					return err
				}
				applied = true
				return h(ctx, tx, env)
			})
		}
		if !errors.Is(err, store.ErrUnavailable) && !errors.Is(err, ErrUnavailable) {
			return applied && err == nil, err
		}
		wait := g.backoff(attempt)
		log.Warn("dependency unavailable; waiting", "error", err.Error(), "retry_in", wait)
		sleep(ctx, wait)
	}
}

// handled counts an event; a type outside the group's keys is counted as
// "unknown", so a stray publisher cannot grow the metric without bound.
func (g *Group) handled(typ, outcome string) {
	if !slices.Contains(g.cfg.Group.Keys, typ) {
		typ = "unknown"
	}
	g.cfg.Metrics.handled(g.cfg.Group.Name, typ, outcome)
}

func (g *Group) backoff(attempt int) time.Duration {
	d := g.cfg.MinBackoff
	for range attempt {
		if d *= 2; d >= g.cfg.MaxBackoff {
			return g.cfg.MaxBackoff
		}
	}
	return d
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// newID returns a fresh message id for a delivery that has none.
func newID() string { return uuid.Must(uuid.NewV7()).String() }
