package relaybench_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/outbox"
)

// inFlight is how many unconfirmed publishes the bare publisher allows.
const inFlight = 500

// bare is the ceiling: no Postgres, amqp091-go publishing persistent
// messages to shop.events with asynchronous confirms, inFlight at a time.
// Its "commit" is the publish, recorded once confirmed; its drain is
// publishing the backlog, every message confirmed and received.
type bare struct {
	cfg     config
	amqpURL string
	conn    *amqp.Connection
	ids     []uuid.UUID
	msgs    [][]byte
	done    chan error
	stopp   sync.WaitGroup
}

func openBare(b *testing.B, cfg config, amqpURL string) system {
	b.Helper()
	p, closeWriters, err := bareWriters(context.Background(), cfg, "", amqpURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(closeWriters)
	return p
}

// bareWriters connects to RabbitMQ: what bare's writers (and its drain)
// need, which is all the writers apart attach to.
func bareWriters(_ context.Context, cfg config, _, amqpURL string) (*bare, func(), error) {
	conn, err := amqp.DialConfig(amqpURL, amqp.Config{Properties: amqp.Table{"connection_name": "relaybench bare"}})
	if err != nil {
		return nil, nil, fmt.Errorf("connect: %w", err)
	}
	return &bare{cfg: cfg, amqpURL: amqpURL, conn: conn, done: make(chan error, 1)}, func() { _ = conn.Close() }, nil
}

func (p *bare) endpoints() (dbURL, amqpURL string) { return "", p.amqpURL }

// backlog prepares n messages (untimed), which start publishes.
func (p *bare) backlog(_ context.Context, n int) error {
	for range n {
		e := newEvent()
		p.ids = append(p.ids, e.ID)
		p.msgs = append(p.msgs, envelope(e))
	}
	return nil
}

func (p *bare) start(ctx context.Context) (func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	if len(p.msgs) > 0 {
		ch, err := p.confirmChannel()
		if err != nil {
			cancel()
			return nil, err
		}
		p.stopp.Go(func() {
			defer func() { _ = ch.Close() }()
			p.done <- p.publishAll(ctx, ch)
		})
	}
	return func() { cancel(); p.stopp.Wait() }, nil
}

func (p *bare) drained() <-chan error { return p.done }

func (p *bare) confirmChannel() (*amqp.Channel, error) {
	ch, err := p.conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, err
	}
	return ch, nil
}

func (p *bare) publishAll(ctx context.Context, ch *amqp.Channel) error {
	pending := make([]*amqp.DeferredConfirmation, 0, inFlight)
	wait := func(dc *amqp.DeferredConfirmation) error {
		ok, err := dc.WaitContext(ctx)
		if err == nil && !ok {
			err = errors.New("nacked")
		}
		return err
	}
	for i, body := range p.msgs {
		if len(pending) == inFlight {
			if err := wait(pending[0]); err != nil {
				return err
			}
			pending = pending[1:]
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, outbox.Exchange, routingKey, false, false, publishing(p.ids[i], body))
		if err != nil {
			return err
		}
		pending = append(pending, dc)
	}
	for _, dc := range pending {
		if err := wait(dc); err != nil {
			return err
		}
	}
	return nil
}

func publishing(id uuid.UUID, body []byte) amqp.Publishing {
	return amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    id.String(),
		Type:         routingKey,
		Body:         body,
	}
}

func (p *bare) newWriter(_ context.Context, rec *recorder) (writer, error) {
	ch, err := p.confirmChannel()
	if err != nil {
		return nil, err
	}
	return &bareWriter{ch: ch, rec: rec, window: max(1, inFlight/p.cfg.writers)}, nil
}

// bareWriter publishes one message per commit on a channel of its own,
// with up to window unconfirmed; a message counts as committed at the time
// it was published, once it is confirmed.
type bareWriter struct {
	ch      *amqp.Channel
	rec     *recorder
	window  int
	pending []bareSent
}

type bareSent struct {
	dc *amqp.DeferredConfirmation
	id uuid.UUID
	at time.Time
}

func (w *bareWriter) commit(ctx context.Context) error {
	// Record what has been confirmed meanwhile, in order.
	for len(w.pending) > 0 {
		select {
		case <-w.pending[0].dc.Done():
			if err := w.settle(ctx); err != nil {
				return err
			}
			continue
		default:
		}
		break
	}
	if len(w.pending) >= w.window {
		if err := w.settle(ctx); err != nil {
			return err
		}
	}
	e := newEvent()
	body := envelope(e)
	at := time.Now()
	dc, err := w.ch.PublishWithDeferredConfirmWithContext(ctx, outbox.Exchange, routingKey, false, false, publishing(e.ID, body))
	if err != nil {
		return err
	}
	w.pending = append(w.pending, bareSent{dc: dc, id: e.ID, at: at})
	return nil
}

// settle waits for the oldest publish's confirm and records it.
func (w *bareWriter) settle(ctx context.Context) error {
	s := w.pending[0]
	w.pending = w.pending[1:]
	ok, err := s.dc.WaitContext(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("publish %s nacked", s.id)
	}
	w.rec.add(s.id, s.at)
	return nil
}

func (w *bareWriter) close(ctx context.Context) error {
	defer func() { _ = w.ch.Close() }()
	for len(w.pending) > 0 {
		if err := w.settle(ctx); err != nil {
			return err
		}
	}
	return nil
}
