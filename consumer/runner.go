// Package consumer is the runtime of the consumer groups (which package
// handlers lists): Watermill's router over subscriptions to a group's
// queue shop.<group> (amqp091 channels on a connection the runner owns and
// redials, amqp.go), several deliveries at a time, each applied
// by the group's handler for its event type inside ONE Postgres
// transaction with the inbox row (group, event id), so a duplicate
// delivery is acknowledged and does nothing; batches, retries and the dead
// queue.
//
// Around watermill-amqp's known pitfalls, which is why the subscriber is
// ours (amqp.go): the marshaler never fails (a body that is not an
// envelope, or a header that is not expected, is reported to the handler,
// which sends it to the dead queue instead of requeueing it forever);
// Watermill handles one delivery at a time per Subscribe, so the router
// gets Concurrency handlers on the same queue, all sharing one channel and
// consumer, whose acknowledgements of deliveries settled together go out
// as one frame; every connection,
// the first included, is retried, on the next node of a cluster;
// deduplication is the inbox in Postgres, not a per-process memory.
//
// Failures: Postgres being unreachable is waited out (nothing can be
// applied anyway); a handler's dependency being unavailable
// (domain.ErrUnavailable) is waited out for UnavailableFor; other errors
// are retried with backoff MaxRetries times; a message that still fails, cannot be decoded or carries
// headers it should not goes to shop.<group>.dead with the reason in its
// headers and is acknowledged. Nothing is ever requeued in a loop.
//
// Logging: each failure is handled once. Apply returns errors with context
// and logs none; how a delivery ended is logged once, by the outermost
// middleware (settle), with the event's ids: event_id, event_type,
// correlation_id and causation_id are on every line about an event.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopdev/shop/internal/ops"
	"github.com/shopdev/shop/internal/retry"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// Config configures the runner of one consumer group.
type Config struct {
	// Group is what runs: its name, keys and handlers. Required.
	Group Group
	// Broker reaches RabbitMQ: the connection settings and the topology,
	// which every subscription declares. Required.
	Broker *outbox.Broker
	// UnitOfWork runs the transactions of the group's Handlers; required
	// for a group that applies events in Postgres.
	UnitOfWork *store.UnitOfWork
	// Logger receives the group's logs. Required.
	Logger *slog.Logger
	// Metrics counts what the group did; default none.
	Metrics *Metrics
	// Concurrency is how many deliveries are handled at once, on one
	// channel; a group that batches holds at least twice Batch, since a
	// batch is made of the deliveries in hand (see InHand).
	// Default 4.
	Concurrency int
	// Prefetch is how many unacknowledged deliveries the group may hold
	// per delivery handled at once: the channel's prefetch is Concurrency
	// × Prefetch. Default 2.
	Prefetch int
	// Batch is how many deliveries one batch of a group that batches
	// (Group.Batches) may apply: the deliveries that arrive while a batch
	// runs share the next one (one transaction: one inbox statement, one
	// commit; for a Project group, one round trip with ProjectEach). A
	// batch that fails is applied again one delivery at a time. Default 1,
	// each delivery alone.
	Batch int
	// Gather is how long a batch, once no other delivery is waiting, waits
	// for one more before it is applied, again after each that comes, up to
	// Batch. A relay round's deliveries reach the group one by one within
	// about a millisecond: without a wait the first is applied alone and the
	// rest in a second transaction. A delivery that comes alone waits this
	// long. Default 0: no wait.
	Gather time.Duration
	// Committers is how many batches may run at once, when Batch is over
	// 1. Default 1: the biggest batches and the least CPU per event, and no
	// two batches of one process lock rows against each other.
	Committers int
	// MaxRetries is how many times a failing message is retried in-process
	// before it goes to the dead queue; 0: none (CONSUMER_MAX_RETRIES says
	// shop's default).
	MaxRetries int
	// Backoff paces the retries, the waits for an unavailable dependency
	// and the reconnections. Default 50ms doubling to 2s.
	Backoff retry.Backoff
	// UnavailableFor bounds how long one delivery waits while a handler
	// reports a dependency unavailable (domain.ErrUnavailable: an SMTP
	// server unreachable or answering 4xx): past it, the delivery goes to
	// the dead queue with the reason, so that one message cannot hold a
	// handler slot forever. Postgres being unreachable
	// (store.ErrUnavailable), and a Project group's store (Redis, which
	// every event of the group needs), are waited out without bound.
	// Default 5 minutes.
	UnavailableFor time.Duration
	// Tracing records a span per delivery, batch and transaction (trace.go).
	// nil: none, at no cost.
	Tracing trace.TracerProvider
}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	if err := c.Group.Validate(); err != nil {
		return err
	}
	switch {
	case c.Broker == nil:
		return errors.New("consumer: broker is required")
	case c.Group.InPostgres() && c.UnitOfWork == nil:
		return errors.New("consumer: handlers need a unit of work")
	case c.Logger == nil:
		return errors.New("consumer: logger is required")
	}
	if _, ok := c.Broker.Topology().Route(c.Group.Name); !ok {
		return fmt.Errorf("consumer %s: the topology has no queue for the group", c.Group.Name)
	}
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.Prefetch == 0 {
		c.Prefetch = 2
	}
	if c.Batch == 0 || !c.Group.Batches {
		c.Batch = 1
	}
	if c.Committers == 0 {
		c.Committers = 1
	}
	if c.Backoff == (retry.Backoff{}) {
		c.Backoff = retry.Backoff{Min: 50 * time.Millisecond, Max: 2 * time.Second}
	}
	if c.UnavailableFor == 0 {
		c.UnavailableFor = 5 * time.Minute
	}
	if c.Concurrency < 1 || c.Prefetch < 1 || c.Batch < 1 || c.Committers < 1 || c.MaxRetries < 0 || c.Backoff.Min > c.Backoff.Max || c.UnavailableFor < 0 || c.Gather < 0 {
		return errors.New("consumer: concurrency, prefetch, batch and committers must be positive, retries, unavailable-for and gather not negative, min backoff <= max backoff")
	}
	c.Concurrency = InHand(c.Group, c.Concurrency, c.Batch)
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	return nil
}

// InHand is how many deliveries a group holds at once with the given
// concurrency and batch size: the concurrency, and for a group that
// batches at least twice the batch size. A batch is made of the deliveries
// in hand that arrived while the one before it ran; with only a batch's
// worth in hand, two batches in a row hold no more than that between them
// (a full one leaves nothing to gather behind it), so a backlog drains at
// half a batch per transaction. With twice, one full batch is applied
// while the next one gathers. Batches of one are no batches: the
// concurrency.
func InHand(g Group, concurrency, batch int) int {
	if g.Batches && batch > 1 {
		return max(concurrency, 2*batch)
	}
	return concurrency
}

// Conns is how many Postgres connections the runner of g needs with the
// given concurrency (CONSUMER_CONCURRENCY) and committers: none for a group
// that applies nothing there; one per delivery applied alone, concurrency of
// them at once, and one per committer of a group that batches. A group that
// batches holds more deliveries than that (InHand); when a batch fails, its
// deliveries are applied alone, and those beyond the pool wait for a
// connection, holding no row lock meanwhile.
func Conns(g Group, concurrency, committers int) int {
	switch {
	case !g.InPostgres():
		return 0
	case g.Batches:
		return concurrency + committers
	default:
		return concurrency
	}
}

// Runner runs one consumer group.
type Runner struct {
	cfg    Config
	route  outbox.Route
	conn   atomic.Pointer[amqp.Connection] // the current connection, once made
	tracer trace.Tracer                    // nil: tracing off
}

// New returns the runner of cfg.Group.
func New(cfg Config) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	route, _ := cfg.Broker.Topology().Route(cfg.Group.Name)
	g := &Runner{cfg: cfg, route: route}
	if cfg.Tracing != nil {
		g.tracer = cfg.Tracing.Tracer("github.com/shopdev/shop/consumer")
	}
	return g, nil
}

// Connected reports whether the group holds an open RabbitMQ connection.
func (g *Runner) Connected() bool {
	c := g.conn.Load()
	return c != nil && !c.IsClosed()
}

// Checks are what the group needs to apply events, for readiness: its
// RabbitMQ connection and the group's own Checks. Postgres, which every
// group that applies events there shares, is the process's to check.
func (g *Runner) Checks() []ops.Check {
	connected := ops.Check{Name: "rabbitmq (" + g.cfg.Group.Name + ")", Ready: func(context.Context) error {
		if !g.Connected() {
			return errors.New("not connected")
		}
		return nil
	}}
	return append([]ops.Check{connected}, g.cfg.Group.Checks...)
}

// Run consumes until ctx ends, then lets the deliveries in flight finish and
// returns nil. RabbitMQ being down, at start or later, is not an error: it
// reconnects.
func (g *Runner) Run(ctx context.Context) error {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		err := g.runOnce(ctx, func() { attempt = 0 })
		if ctx.Err() != nil {
			return nil
		}
		wait := g.cfg.Backoff.Delay(attempt)
		g.cfg.Logger.Warn("consumer stopped; reconnecting", "group", g.cfg.Group.Name, "error", err.Error(), "retry_in", wait)
		retry.Sleep(ctx, wait)
	}
	return nil
}

// runOnce connects (to the next node of a cluster after a lost
// connection), declares the topology and runs the router until ctx ends or
// the connection is lost.
func (g *Runner) runOnce(ctx context.Context, connected func()) error {
	conn, err := g.cfg.Broker.Dial()
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	g.conn.Store(conn)
	connected()
	lost := conn.NotifyClose(make(chan *amqp.Error, 1))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case e := <-lost:
			if e != nil {
				cancel(fmt.Errorf("%w: %v", errConnectionLost, e))
			} else {
				cancel(errConnectionLost)
			}
		case <-ctx.Done():
		}
	}()

	sub := newSubscriber(conn, g.cfg.Concurrency*g.cfg.Prefetch)
	defer func() { _ = sub.Close() }() // settles what a handler left behind past the router's close timeout
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 15 * time.Second}, g.logger())
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	// A delivery cut short by shutdown is requeued instead.
	poison, err := middleware.PoisonQueueWithFilter(deadPublisher{conn: conn, timeout: 10 * time.Second}, g.route.DeadQueue(),
		func(err error) bool { return !stopping(err) })
	if err != nil {
		return fmt.Errorf("dead-queue middleware: %w", err)
	}
	if g.tracer != nil {
		router.AddMiddleware(g.traceDelivery) // outermost: the span covers every attempt and the dead queue
	}
	router.AddMiddleware(
		g.settle,
		poison,
		middleware.Retry{
			MaxRetries: g.cfg.MaxRetries, InitialInterval: g.cfg.Backoff.Min, MaxInterval: g.cfg.Backoff.Max,
			Multiplier: 2, RandomizationFactor: 0.3, ResetContextOnRetry: true,
			ShouldRetry: func(p middleware.RetryParams) bool {
				return !errors.Is(p.Err, errPermanent) && !stopping(p.Err)
			},
		}.Middleware,
		middleware.Recoverer,
	)
	var batches *batcher // nil: each delivery in its own transaction
	if g.cfg.Batch > 1 && (g.cfg.Group.Project == nil || g.cfg.Group.ProjectEach != nil) {
		bctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		defer stop() // after the router: no handler runs any more
		batches = newBatcher(bctx, g.cfg.Committers, g.cfg.Batch, g.cfg.Gather, g.applyBatch)
	}
	for i := range g.cfg.Concurrency {
		router.AddConsumerHandler(fmt.Sprintf("%s-%d", g.cfg.Group.Name, i), g.route.Queue(), sub, g.handler(batches))
	}
	// The router ends when ctx does (shutdown, or the connection lost), or
	// when a subscription cannot be made.
	if err := router.Run(ctx); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	if cause := context.Cause(ctx); errors.Is(cause, errConnectionLost) {
		return cause
	}
	return errors.New("router stopped")
}

func (g *Runner) logger() watermill.LoggerAdapter {
	return gatedLogger(g.cfg.Logger.With("group", g.cfg.Group.Name))
}

// gatedLogger is the router's logger: watermill's slog adapter, its Info
// (the library's per-subscription chatter) at debug level, behind a check
// of the level. The adapter turns a call's fields into attributes before
// slog looks at the level, and the router logs at trace level for every
// delivery: off, as it is unless LOG_LEVEL asks for it, that cost a
// delivery's goroutine allocations and a stack growth for nothing.
func gatedLogger(log *slog.Logger) watermill.LoggerAdapter {
	return gated{watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{
		slog.LevelInfo: slog.LevelDebug,
	}), log}
}

// gated passes a call on to its adapter only when log logs its level.
type gated struct {
	watermill.LoggerAdapter
	log *slog.Logger
}

func (g gated) on(level slog.Level) bool { return g.log.Enabled(context.Background(), level) }

func (g gated) Info(msg string, fields watermill.LogFields) {
	if g.on(slog.LevelDebug) { // mapped to debug
		g.LoggerAdapter.Info(msg, fields)
	}
}

func (g gated) Debug(msg string, fields watermill.LogFields) {
	if g.on(slog.LevelDebug) {
		g.LoggerAdapter.Debug(msg, fields)
	}
}

func (g gated) Trace(msg string, fields watermill.LogFields) {
	if g.on(watermill.LevelTrace) {
		g.LoggerAdapter.Trace(msg, fields)
	}
}

func (g gated) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return gated{g.LoggerAdapter.With(fields), g.log}
}
