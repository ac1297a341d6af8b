package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/internal/logctx"
	"github.com/shopdev/shop/internal/retry"
	"github.com/shopdev/shop/internal/telemetry"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// How one delivery is applied: decoded, handed to its handler in a
// transaction with its inbox row (or to the projector), with waits while a
// dependency is unavailable; its error decides, in the router's middleware
// (runOnce), whether it is retried or goes to the dead queue.

var (
	// errPermanent marks failures that retrying cannot fix.
	errPermanent = errors.New("permanent failure")
	// errStopping marks a delivery interrupted by shutdown.
	errStopping = errors.New("consumer stopping")
)

// stopping reports whether err is a delivery cut short by shutdown or by
// the loss of its connection: the handler's (errStopping) or Retry's,
// which gives up with the message context's error (or its cause) when it
// ends between attempts. Such a delivery is requeued, by RabbitMQ when the
// connection is gone.
func stopping(err error) bool {
	return errors.Is(err, errStopping) || errors.Is(err, context.Canceled) || errors.Is(err, errConnectionLost)
}

// deliveryLogger returns the group's logger with the ids of the delivery's
// event, or, for a body that is not an envelope, its message id and type.
func (g *Runner) deliveryLogger(msg *message.Message) *slog.Logger {
	trace := telemetry.LogAttrs(msg.Context())
	if env, err := decode(msg.Payload); err == nil {
		return g.cfg.Logger.With(append(g.eventAttrs(env), trace...)...)
	}
	return g.cfg.Logger.With(append([]any{"group", g.cfg.Group.Name, "message_id", msg.UUID, "event_type", msg.Metadata.Get(metaType)}, trace...)...)
}

// eventAttrs are the attributes of every log line about env.
func (g *Runner) eventAttrs(env outbox.Envelope) []any {
	return []any{"group", g.cfg.Group.Name, "event_id", env.ID.String(), "event_type", env.Type,
		"correlation_id", env.CorrelationID, "causation_id", env.CausationID}
}

// handler applies one delivery, in a batch of batches unless that is nil.
// Its error goes through Retry and then to the dead queue.
func (g *Runner) handler(batches *batcher) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error { return g.handle(msg, batches) }
}

func (g *Runner) handle(msg *message.Message, batches *batcher) error {
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
func (g *Runner) Apply(ctx context.Context, env outbox.Envelope) (bool, error) {
	return g.applyEvent(ctx, env, nil)
}

// ApplyBatch applies events as one batch of deliveries of the group would
// be (one transaction, for a group that batches), without RabbitMQ: it
// reports for each whether it was applied now, and committed false when
// the batch failed, so that nothing of it was committed (the group would
// then apply each delivery alone). Tests use it to feed batches.
func (g *Runner) ApplyBatch(ctx context.Context, events []outbox.Envelope) (applied []bool, committed bool) {
	jobs := make([]*job, len(events))
	for i, env := range events {
		jobs[i] = &job{ctx: outbox.WithMetadata(ctx, causedBy(ctx, env)), log: eventLog{base: g.cfg.Logger}, env: env, h: g.cfg.Group.Handlers[env.Type]}
	}
	g.applyBatch(jobs)
	applied = make([]bool, len(jobs))
	for i, j := range jobs {
		if j.err != nil {
			return nil, false
		}
		applied[i] = j.applied
	}
	return applied, true
}

// applyEvent is Apply, in a batch of batches unless that is nil.
func (g *Runner) applyEvent(ctx context.Context, env outbox.Envelope, batches *batcher) (bool, error) {
	group := g.cfg.Group.Name
	h := g.cfg.Group.Handlers[env.Type]
	if !slices.Contains(g.cfg.Group.Keys, env.Type) || (g.cfg.Group.Project == nil && h == nil) {
		return false, fmt.Errorf("%w: group %s has no handler for %q", errPermanent, group, env.Type)
	}
	attrs := append(g.eventAttrs(env), telemetry.LogAttrs(ctx)...)
	log := eventLog{base: g.cfg.Logger, attrs: attrs}
	ctx = logctx.With(ctx, attrs...) // for the handlers' own lines, such as the logged email
	ctx = outbox.WithMetadata(ctx, causedBy(ctx, env))
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
		g.cfg.Metrics.EventAge.WithLabelValues(group).Observe(max(0, time.Since(env.OccurredAt).Seconds()))
		log.line(ctx, slog.LevelDebug, "event applied")
		return true, nil
	case err == nil:
		g.handled(env.Type, "duplicate")
		log.line(ctx, slog.LevelDebug, "duplicate event skipped")
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
// correlation, with env as their cause, and the trace context of the
// delivery's span (ctx's), or, with tracing off, env's own.
func causedBy(ctx context.Context, env outbox.Envelope) outbox.Metadata {
	md := outbox.Metadata{CorrelationID: env.CorrelationID, CausationID: env.ID.String(), Trace: env.Trace}
	if carrier := telemetry.Carrier(ctx); carrier != nil {
		md.Trace = carrier
	}
	return md
}

// apply runs the handler and the inbox claim in one transaction. While
// Postgres (or another dependency: domain.ErrUnavailable) is unreachable it
// waits between attempts, outside any transaction, without counting
// retries: no message could be applied, and sending them all to the dead
// queue would not help. A handler's unavailable dependency is waited out
// for UnavailableFor at most (one recipient's server refusing it must not
// hold a slot forever); then the error is permanent.
func (g *Runner) apply(ctx context.Context, log eventLog, h Handler, env outbox.Envelope) (bool, error) {
	// A transaction under way finishes even when the process is stopping.
	work := context.WithoutCancel(ctx)
	var since time.Time // when a handler first reported its dependency unavailable
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return false, fmt.Errorf("%w: %w", errStopping, ctx.Err())
		}
		var applied bool
		var err error
		if g.cfg.Group.Project != nil {
			applied, err = g.cfg.Group.Project(work, env)
		} else {
			err = g.cfg.UnitOfWork.Do(work, func(ctx context.Context, tx *store.Tx) error {
				first, err := g.claim(ctx, tx, []*job{{env: env}}, []uuid.UUID{env.ID})
				if err != nil || !first[0] {
					return err
				}
				applied = true
				return h(ctx, tx, env)
			})
		}
		wait := g.cfg.Backoff.Delay(attempt)
		switch {
		case errors.Is(err, store.ErrUnavailable), errors.Is(err, domain.ErrUnavailable) && g.cfg.Group.Project != nil:
			// Postgres, or Redis for the projections: no event of the group
			// can be applied, so it waits without bound.
		case errors.Is(err, domain.ErrUnavailable):
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
		log.line(ctx, slog.LevelWarn, "dependency unavailable; waiting", "error", err.Error(), "retry_in", wait)
		retry.Sleep(ctx, wait)
	}
}

// eventLog writes the lines about one event: the group's logger with the
// event's attributes. It adds them only to a line that is written, since
// slog's With formats them at once, and at the usual levels a delivery
// logs nothing.
type eventLog struct {
	base  *slog.Logger
	attrs []any
}

func (l eventLog) line(ctx context.Context, level slog.Level, msg string, args ...any) {
	if l.base.Enabled(ctx, level) {
		l.base.With(l.attrs...).Log(ctx, level, msg, args...)
	}
}

// handled counts an event; a type outside the group's keys is counted as
// "unknown", so a stray publisher cannot grow the metric without bound.
func (g *Runner) handled(typ, outcome string) {
	if !slices.Contains(g.cfg.Group.Keys, typ) {
		typ = "unknown"
	}
	g.cfg.Metrics.handled(g.cfg.Group.Name, typ, outcome)
}

// newID returns a fresh message id for a delivery that has none.
func newID() string { return uuid.Must(uuid.NewV7()).String() }
