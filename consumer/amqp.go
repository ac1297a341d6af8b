package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
)

// The router's subscriber and dead-queue publisher, on one amqp091
// connection that the runner owns. watermill-amqp's ConnectionWrapper
// reconnects by itself, to one URL, and its reconnect path writes fields
// that its publisher and subscribers read without a lock (a data race the
// race detector reports whenever a connection drops under load); a pooled
// channel it cannot reopen is never returned to its pool, so the next
// dead-queue publish waits forever. Here a lost connection ends the
// router instead, and the runner dials again, through the Broker, the next
// node of the cluster.

// subscriber is a message.Subscriber of one connection: each Subscribe is
// its own channel and consumer on the queue, with prefetch deliveries in
// flight, handed to the router one at a time and acknowledged as the
// router says. Its channels end with the connection.
type subscriber struct {
	conn     *amqp.Connection
	prefetch int

	closing chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

func newSubscriber(conn *amqp.Connection, prefetch int) *subscriber {
	return &subscriber{conn: conn, prefetch: prefetch, closing: make(chan struct{})}
}

// Subscribe consumes queue until ctx ends, the subscriber is closed or the
// channel closes (the connection was lost), then closes the channel it
// returns. A delivery handed out and not yet settled is requeued when the
// subscription ends.
func (s *subscriber) Subscribe(ctx context.Context, queue string) (<-chan *message.Message, error) {
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Qos(s.prefetch, 0, false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("set prefetch: %w", err)
	}
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil) // ended by closing the channel: a concurrent basic.cancel could take its close-ok
	if err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("consume %s: %w", queue, err)
	}
	out := make(chan *message.Message)
	s.wg.Go(func() {
		defer close(out)
		defer func() {
			// amqp091 hands deliveries over one by one, and its reader
			// waits while one is not taken: Close would wait for a
			// close-ok that never comes. What is drained is unacknowledged,
			// so RabbitMQ requeues it when the channel closes.
			go func() {
				for range deliveries {
				}
			}()
			_ = ch.Close()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.closing:
				return
			case d, ok := <-deliveries:
				if !ok {
					return // the channel or the connection closed
				}
				if !s.deliver(ctx, d, out) {
					return
				}
			}
		}
	})
	return out, nil
}

// deliver hands d to the router and settles it as the router says; false
// when the subscription ended meanwhile (d is then requeued, if the
// channel still can).
func (s *subscriber) deliver(ctx context.Context, d amqp.Delivery, out chan<- *message.Message) bool {
	msg, _ := marshaler{}.Unmarshal(d) // never fails
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msg.SetContext(mctx)
	select {
	case out <- msg:
	case <-ctx.Done():
		_ = d.Nack(false, true)
		return false
	case <-s.closing:
		_ = d.Nack(false, true)
		return false
	}
	select {
	case <-msg.Acked():
		_ = d.Ack(false)
		return true
	case <-msg.Nacked():
		_ = d.Nack(false, true)
		return true
	case <-s.closing:
		_ = d.Nack(false, true)
		return false
	}
}

// Close ends every subscription and waits for their goroutines.
func (s *subscriber) Close() error {
	s.once.Do(func() { close(s.closing) })
	s.wg.Wait()
	return nil
}

// deadPublisher publishes failed messages to a dead queue, through the
// default exchange, on a channel of its own per call in confirm mode: a
// publish fails at once when the connection is gone, and succeeds only
// once RabbitMQ confirmed it and did not return it as unroutable.
type deadPublisher struct {
	conn    *amqp.Connection
	timeout time.Duration // how long one publish may wait for its confirm
}

// Publish publishes msgs to the queue named topic.
func (p deadPublisher) Publish(topic string, msgs ...*message.Message) error {
	ch, err := p.conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer func() { _ = ch.Close() }()
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("enable publisher confirms: %w", err)
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, len(msgs)))
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	for _, msg := range msgs {
		pub, err := marshaler{}.Marshal(msg)
		if err != nil {
			return err
		}
		confirm, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", topic, true, false, pub)
		if err != nil {
			return fmt.Errorf("publish to %s: %w", topic, err)
		}
		acked, err := confirm.WaitContext(ctx)
		switch {
		case err != nil:
			return fmt.Errorf("publish to %s: no confirm: %w", topic, err)
		case !acked:
			return fmt.Errorf("publish to %s: rabbitmq refused it", topic)
		}
	}
	select { // a return comes before its confirm
	case r := <-returns:
		return fmt.Errorf("publish to %s: returned: %s", topic, r.ReplyText)
	default:
		return nil
	}
}

// Close does nothing: the connection is the runner's.
func (deadPublisher) Close() error { return nil }

var errConnectionLost = errors.New("rabbitmq connection lost")
