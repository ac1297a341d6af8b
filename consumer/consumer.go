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
// applied anyway); a handler's dependency being unavailable (ErrUnavailable)
// is waited out for UnavailableFor; other errors are retried with backoff
// MaxRetries times; a message that still fails, cannot be decoded or carries
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
	"slices"
	"strconv"
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

// BatchHandler applies several events of one type inside tx, in their
// order, with the effects that applying them one at a time would have, and
// returns the events each caused (caused[i], events[i]'s, in the order they
// were recorded): the group appends them, each under its cause's metadata.
// It exists to read what all the events need in one round trip. events
// holds no duplicates of an event, but may hold two events of one
// aggregate.
type BatchHandler func(ctx context.Context, tx *store.Tx, events []outbox.Envelope) (caused [][]domain.Event, err error)

// One is the Handler of a BatchHandler: it applies one event as a batch of
// one and appends what it caused.
func One(h BatchHandler) Handler {
	return func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
		caused, err := h(ctx, tx, []outbox.Envelope{e})
		if err != nil {
			return err
		}
		if err := causedEach(e.Type, caused, 1); err != nil {
			return err
		}
		return tx.Append(caused[0]...)
	}
}

// causedEach checks that a batch handler of typ given n events returned
// what each of them caused.
func causedEach(typ string, caused [][]domain.Event, n int) error {
	if len(caused) != n {
		return fmt.Errorf("batch handler of %s returned the events of %d events, want %d", typ, len(caused), n)
	}
	return nil
}

// Config configures a consumer group.
type Config struct {
	// Group is the group: its name (queue shop.<name>) and routing keys.
	// Required.
	Group outbox.Group
	// Handlers maps every routing key of the group to its handler, run in
	// the inbox transaction. A key without a handler is a configuration
	// error. Either Handlers (with UnitOfWork) or Project is required.
	Handlers map[string]Handler
	// BatchHandlers apply, in a batch transaction (Batch over 1), the
	// events of a type several at a time: a run of consecutive events of
	// one type that has a BatchHandler goes to it in one call, instead of
	// to Handlers one by one. Handlers still applies an event alone; for a
	// type in both, they must have the same effects (One(b) is such a
	// Handler). Optional.
	BatchHandlers map[string]BatchHandler
	// Project applies an event outside Postgres, for groups that are
	// idempotent by themselves (the Redis projections guard by aggregate
	// version): no inbox row, no transaction. It reports whether anything
	// changed.
	Project func(ctx context.Context, e outbox.Envelope) (bool, error)
	// ProjectEach applies several events as Project would each, in one
	// round trip, with Batch over 1: it reports for each event whether
	// anything changed, and its error; an event that failed is applied
	// again alone by Project. Optional.
	ProjectEach func(ctx context.Context, events []outbox.Envelope) (changed []bool, errs []error)
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
	// Batch is how many deliveries one transaction of Handlers may apply:
	// the deliveries that arrive while a transaction runs share the next
	// one (one inbox statement, one commit), up to Batch, and at most
	// Concurrency are in hand at once. A batch that fails is applied again
	// one delivery at a time, so a handler with effects outside Postgres
	// (sending an email) would repeat them: such groups keep 1. A Project
	// group batches only with ProjectEach: one round trip to Redis instead
	// of a transaction. Default 1, each delivery in its own transaction.
	Batch int
	// Committers is how many batch transactions may run at once, when
	// Batch is over 1. Default 1: the biggest batches and the least CPU
	// per event, and no two batches of one process lock rows against each
	// other; more may drain a backlog faster (BENCHMARKS.md).
	Committers int
	// MaxRetries is how many times a failing message is retried in-process
	// before it goes to the dead queue. Default 5.
	MaxRetries int
	// MinBackoff and MaxBackoff bound the delay between retries, and
	// between reconnection attempts. Defaults 50ms and 2s.
	MinBackoff, MaxBackoff time.Duration
	// UnavailableFor bounds how long one delivery waits while a handler
	// reports its dependency unavailable (ErrUnavailable: an SMTP server
	// unreachable or answering 4xx): past it, the delivery goes to the dead
	// queue with the reason, so that one message cannot hold a handler slot
	// forever. Postgres being unreachable (store.ErrUnavailable), and
	// Project's ErrUnavailable (Redis, which every event of the group
	// needs), are waited out without bound. Default 5 minutes.
	UnavailableFor time.Duration
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
	case c.ProjectEach != nil && c.Project == nil:
		return errors.New("consumer: ProjectEach needs Project, which applies an event alone")
	}
	for _, key := range c.Group.Keys {
		if c.Project == nil && c.Handlers[key] == nil {
			return fmt.Errorf("consumer %s: no handler for %s", c.Group.Name, key)
		}
	}
	for key := range c.BatchHandlers {
		if c.Handlers[key] == nil {
			return fmt.Errorf("consumer %s: a batch handler for %s, which has no handler", c.Group.Name, key)
		}
	}
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.Prefetch == 0 {
		c.Prefetch = 2
	}
	if c.Batch == 0 {
		c.Batch = 1
	}
	if c.Committers == 0 {
		c.Committers = 1
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
	if c.UnavailableFor == 0 {
		c.UnavailableFor = 5 * time.Minute
	}
	if c.Concurrency < 1 || c.Prefetch < 1 || c.Batch < 1 || c.Committers < 1 || c.MaxRetries < 0 || c.MinBackoff > c.MaxBackoff || c.UnavailableFor < 0 {
		return errors.New("consumer: concurrency must be positive, prefetch must be positive, batch must be positive, committers must be positive, retries and unavailable-for not negative, min backoff <= max backoff")
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
	// A delivery cut short by shutdown is requeued instead.
	poison, err := middleware.PoisonQueueWithFilter(pub, g.cfg.Group.DeadQueue(), func(err error) bool { return !stopping(err) })
	if err != nil {
		return fmt.Errorf("dead-queue middleware: %w", err)
	}
	router.AddMiddleware(
		g.settle,
		poison,
		middleware.Retry{
			MaxRetries: g.cfg.MaxRetries, InitialInterval: g.cfg.MinBackoff, MaxInterval: g.cfg.MaxBackoff,
			Multiplier: 2, RandomizationFactor: 0.3, ResetContextOnRetry: true,
			ShouldRetry: func(p middleware.RetryParams) bool {
				return !errors.Is(p.Err, errPermanent) && !stopping(p.Err)
			},
		}.Middleware,
		middleware.Recoverer,
	)
	var batches *batcher // nil: each delivery in its own transaction
	if g.cfg.Batch > 1 && (g.cfg.Project == nil || g.cfg.ProjectEach != nil) {
		bctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		defer stop() // after the router: no handler runs any more
		batches = newBatcher(bctx, g.cfg.Committers, g.cfg.Batch, g.applyBatch)
	}
	for i := range g.cfg.Concurrency {
		router.AddConsumerHandler(fmt.Sprintf("%s-%d", g.cfg.Group.Name, i), g.cfg.Group.Queue(), sub, g.handler(batches))
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
			Arguments: g.cfg.Group.QueueArgs(), // what outbox.Declare declares
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
// waits and tries again, without counting retries, but for UnavailableFor
// at most; then it goes to the dead queue.
var ErrUnavailable = errors.New("dependency unavailable")

var (
	// errPermanent marks failures that retrying cannot fix.
	errPermanent = errors.New("permanent failure")
	// errStopping marks a delivery interrupted by shutdown.
	errStopping = errors.New("consumer stopping")
)

// stopping reports whether err is a delivery cut short by shutdown: the
// handler's (errStopping) or Retry's, which gives up with the message
// context's error when it ends between attempts.
func stopping(err error) bool {
	return errors.Is(err, errStopping) || errors.Is(err, context.Canceled)
}

// settle logs and counts how a delivery that failed ended, once: in the
// dead queue (the poison middleware inside it published it there and set
// the reason), requeued because the process is stopping, or requeued
// because the dead queue did not confirm it.
func (g *Group) settle(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		reason := msg.Metadata.Get(MetaReason)
		switch {
		case err == nil && reason == "":
			return out, nil
		case err == nil:
			g.cfg.Metrics.Dead.WithLabelValues(g.cfg.Group.Name).Inc()
			attempts, _ := strconv.Atoi(msg.Metadata.Get(MetaAttempts))
			g.deliveryLogger(msg).Error("message to the dead queue", "attempts", attempts, "reason", reason)
			return out, nil
		case stopping(err):
			// The router nacks it without logging (a context.Canceled).
			g.deliveryLogger(msg).Debug("delivery interrupted by shutdown; requeued")
			return nil, err
		default:
			// Nacked here so that the router, seeing no error, does not log
			// it a second time; it is delivered again later.
			g.deliveryLogger(msg).Error("dead queue did not take the message; requeued", "reason", reason, "error", err.Error())
			msg.Nack()
			return nil, nil
		}
	}
}

// deliveryLogger returns the group's logger with the ids of the delivery's
// event, or, for a body that is not an envelope, its message id and type.
func (g *Group) deliveryLogger(msg *message.Message) *slog.Logger {
	if env, err := decode(msg.Payload); err == nil {
		return g.cfg.Logger.With(g.eventAttrs(env)...)
	}
	return g.cfg.Logger.With("group", g.cfg.Group.Name, "message_id", msg.UUID, "event_type", msg.Metadata.Get(metaType))
}

// eventAttrs are the attributes of every log line about env.
func (g *Group) eventAttrs(env outbox.Envelope) []any {
	return []any{"group", g.cfg.Group.Name, "event_id", env.ID.String(), "event_type", env.Type,
		"correlation_id", env.CorrelationID, "causation_id", env.CausationID}
}

type logAttrsKey struct{}

// Logger returns base with the attributes of the event that ctx is applying
// (group, event_id, event_type, correlation_id, causation_id), for a
// handler's own log lines; outside a delivery, base itself.
func Logger(ctx context.Context, base *slog.Logger) *slog.Logger {
	if attrs, ok := ctx.Value(logAttrsKey{}).([]any); ok {
		return base.With(attrs...)
	}
	return base
}

// handler applies one delivery, in a batch of batches unless that is nil.
// Its error goes through Retry and then to the dead queue.
func (g *Group) handler(batches *batcher) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error { return g.handle(msg, batches) }
}

func (g *Group) handle(msg *message.Message, batches *batcher) error {
	// Both kept only if it ends dead.
	msg.Metadata.Set(MetaFailedAt, time.Now().UTC().Format(time.RFC3339Nano))
	attempts, _ := strconv.Atoi(msg.Metadata.Get(MetaAttempts))
	msg.Metadata.Set(MetaAttempts, strconv.Itoa(attempts+1))
	if bad := msg.Metadata.Get(metaUnexpected); bad != "" {
		return fmt.Errorf("%w: unexpected header %q", errPermanent, bad)
	}
	env, err := decode(msg.Payload)
	if err != nil {
		return fmt.Errorf("%w: %w", errPermanent, err)
	}
	_, err = g.applyEvent(msg.Context(), env, batches)
	return err
}

// Apply applies one event as a delivery of it would: the group's handler
// for its type and the inbox row, in one transaction. It reports whether
// the event was applied now (false: applied before, a duplicate). Errors
// that retrying cannot fix (no handler, invalid data, unknown aggregate, a
// dependency unavailable for longer than UnavailableFor) are permanent.
// Errors are returned with context, not logged: the caller decides. Tests
// and tools use it to feed events without RabbitMQ.
func (g *Group) Apply(ctx context.Context, env outbox.Envelope) (bool, error) {
	return g.applyEvent(ctx, env, nil)
}

// applyEvent is Apply, in a batch of batches unless that is nil.
func (g *Group) applyEvent(ctx context.Context, env outbox.Envelope, batches *batcher) (bool, error) {
	group := g.cfg.Group.Name
	h := g.cfg.Handlers[env.Type]
	if !slices.Contains(g.cfg.Group.Keys, env.Type) || (g.cfg.Project == nil && h == nil) {
		return false, fmt.Errorf("%w: group %s has no handler for %q", errPermanent, group, env.Type)
	}
	attrs := g.eventAttrs(env)
	log := g.cfg.Logger.With(attrs...)
	ctx = context.WithValue(ctx, logAttrsKey{}, attrs)
	ctx = outbox.WithMetadata(ctx, causedBy(env))
	start := time.Now()
	var applied bool
	err := errAlone
	if batches != nil {
		j := &job{ctx: ctx, log: log, env: env, h: h}
		batches.do(j)
		applied, err = j.applied, j.err
	}
	if errors.Is(err, errAlone) {
		applied, err = g.apply(ctx, log, h, env)
	}
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
	case errors.Is(err, errPermanent):
		g.handled(env.Type, "failed")
		return false, fmt.Errorf("apply %s: %w", env.Type, err)
	case errors.Is(err, domain.ErrInvalid), errors.Is(err, domain.ErrNotFound):
		g.handled(env.Type, "failed")
		return false, fmt.Errorf("%w: apply %s: %w", errPermanent, env.Type, err)
	default:
		g.handled(env.Type, "failed")
		return false, fmt.Errorf("apply %s: %w", env.Type, err)
	}
}

// causedBy is the metadata of the events that applying env causes: its
// correlation and trace, with env as their cause.
func causedBy(env outbox.Envelope) outbox.Metadata {
	return outbox.Metadata{CorrelationID: env.CorrelationID, CausationID: env.ID.String(), TraceParent: env.Trace["traceparent"]}
}

// apply runs the handler and the inbox claim in one transaction. While
// Postgres (or another dependency, ErrUnavailable) is unreachable it waits
// between attempts, outside any transaction, without counting retries: no
// message could be applied, and sending them all to the dead queue would not
// help. A handler's ErrUnavailable is waited out for UnavailableFor at most
// (one recipient's server refusing it must not hold a slot forever); then
// the error is permanent.
func (g *Group) apply(ctx context.Context, log *slog.Logger, h Handler, env outbox.Envelope) (bool, error) {
	// A transaction under way finishes even when the process is stopping.
	work := context.WithoutCancel(ctx)
	var since time.Time // when a handler first reported its dependency unavailable
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
		wait := g.backoff(attempt)
		switch {
		case errors.Is(err, store.ErrUnavailable), errors.Is(err, ErrUnavailable) && g.cfg.Project != nil:
			// Postgres, or Redis for the projections: no event of the group
			// can be applied, so it waits without bound.
		case errors.Is(err, ErrUnavailable):
			if since.IsZero() {
				since = time.Now()
			}
			waited := time.Since(since)
			if waited >= g.cfg.UnavailableFor {
				return false, fmt.Errorf("%w: dependency unavailable for %s (limit %s): %w",
					errPermanent, waited.Round(time.Millisecond), g.cfg.UnavailableFor, err)
			}
			wait = min(wait, g.cfg.UnavailableFor-waited) // one last attempt at the limit
		default:
			return applied && err == nil, err
		}
		g.handled(env.Type, "unavailable")
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
