package consumer

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/outbox"
)

// settle logs and counts how a delivery that failed ended, once: in the
// dead queue (the poison middleware inside it published it there and set
// the reason), requeued because the process is stopping, or requeued
// because the dead queue did not confirm it.
func (g *Runner) settle(h message.HandlerFunc) message.HandlerFunc {
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
			g.deliveryLogger(msg).Debug("delivery interrupted by shutdown or a lost connection; requeued")
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

// DeadMessage is a message in a group's dead queue.
type DeadMessage struct {
	ID       string
	Type     string
	Reason   string
	FailedAt string
	Body     []byte
}

// ListDead returns up to limit (0: all) messages of the dead queue of the
// group's route without removing them: they are read unacknowledged and
// put back when the channel closes.
func ListDead(ctx context.Context, b *outbox.Broker, g outbox.Route, limit int) ([]DeadMessage, error) {
	conn, ch, err := dial(b)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	defer func() { _ = ch.Close() }() // requeues everything read
	var out []DeadMessage
	for limit == 0 || len(out) < limit {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		d, ok, err := ch.Get(g.DeadQueue(), false)
		if err != nil {
			return out, fmt.Errorf("read %s: %w", g.DeadQueue(), err)
		}
		if !ok {
			break
		}
		reason, _ := d.Headers[MetaReason].(string)
		failedAt, _ := d.Headers[MetaFailedAt].(string)
		if reason == "" {
			reason, failedAt = brokerDeath(d.Headers)
		}
		out = append(out, DeadMessage{ID: d.MessageId, Type: d.Type, Reason: reason, FailedAt: failedAt, Body: d.Body})
	}
	return out, nil
}

// brokerDeath reads why and when RabbitMQ itself dead-lettered a message
// (its x-death header: past the queue's delivery limit, say), for the
// messages that did not come through the consumer's dead-queue path.
func brokerDeath(headers amqp.Table) (reason, at string) {
	deaths, _ := headers["x-death"].([]any)
	if len(deaths) == 0 {
		return "", ""
	}
	last, _ := deaths[0].(amqp.Table) // the most recent death comes first
	why, _ := last["reason"].(string)
	queue, _ := last["queue"].(string)
	if when, ok := last["time"].(time.Time); ok {
		at = when.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("dead-lettered by RabbitMQ from %s: %s", queue, why), at
}

// ReplayDead moves up to limit (0: all) of the messages in the group's dead
// queue when it starts back to its queue, with their id, type and body and without the
// failure headers. Each is removed from the dead queue only after RabbitMQ
// confirmed the copy: a crash in between leaves a message in both, which the
// inbox makes harmless.
func ReplayDead(ctx context.Context, b *outbox.Broker, g outbox.Route, limit int) (int, error) {
	conn, ch, err := dial(b)
	if err != nil {
		return 0, err
	}
	defer func() { _ = conn.Close() }()
	defer func() { _ = ch.Close() }()
	if err := ch.Confirm(false); err != nil {
		return 0, fmt.Errorf("confirm mode: %w", err)
	}
	// Only the messages dead now: a replayed message that fails again
	// comes back to the dead queue, and must not be replayed in a loop.
	q, err := ch.QueueDeclarePassive(g.DeadQueue(), true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum})
	if err != nil {
		return 0, fmt.Errorf("inspect %s: %w", g.DeadQueue(), err)
	}
	if limit == 0 || limit > q.Messages {
		limit = q.Messages
	}
	n := 0
	for n < limit {
		d, ok, err := ch.Get(g.DeadQueue(), false)
		if err != nil {
			return n, fmt.Errorf("read %s: %w", g.DeadQueue(), err)
		}
		if !ok {
			return n, nil
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", g.Queue(), true, false, amqp.Publishing{
			ContentType: d.ContentType, DeliveryMode: amqp.Persistent, MessageId: d.MessageId, Type: d.Type,
			Timestamp: d.Timestamp, Body: d.Body,
			Headers: amqp.Table{MetaReplayedAt: time.Now().UTC().Format(time.RFC3339Nano)},
		})
		if err != nil {
			return n, fmt.Errorf("replay %s: %w", d.MessageId, err)
		}
		if ok, err := dc.WaitContext(ctx); err != nil || !ok {
			return n, fmt.Errorf("replay %s: not confirmed (%v)", d.MessageId, err)
		}
		if err := d.Ack(false); err != nil {
			return n, fmt.Errorf("remove %s from %s: %w", d.MessageId, g.DeadQueue(), err)
		}
		n++
	}
	return n, nil
}

func dial(b *outbox.Broker) (*amqp.Connection, *amqp.Channel, error) {
	conn, err := b.Dial()
	if err != nil {
		return nil, nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("open channel: %w", err)
	}
	return conn, ch, nil
}
