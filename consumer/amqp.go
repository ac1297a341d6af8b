package consumer

import (
	"context"
	"errors"
	"fmt"
	"runtime"
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

// subscriber is a message.Subscriber of one connection. The router
// subscribes once per handler; all the subscriptions of one queue share
// one channel and one consumer, with inFlight deliveries unacknowledged at
// most, handed to whichever handler is free. Sharing the channel lets the
// acknowledgements of deliveries settled together go out as one frame
// (acker). Its channels end with the connection.
type subscriber struct {
	conn     *amqp.Connection
	inFlight int

	mu     sync.Mutex
	queues map[string]*consumption

	closing chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// consumption is the one consumer of a queue that its subscriptions share.
type consumption struct {
	out  chan *message.Message
	refs int                // subscriptions whose context has not ended
	end  context.CancelFunc // ends the consumption
}

func newSubscriber(conn *amqp.Connection, inFlight int) *subscriber {
	return &subscriber{conn: conn, inFlight: inFlight, queues: map[string]*consumption{}, closing: make(chan struct{})}
}

// Subscribe returns the deliveries of queue, shared with the other
// subscriptions to it. The consumer is started by the first subscription
// and runs until the contexts of all of them end, the subscriber is closed
// or the channel closes (the connection was lost); then the channel it
// returns is closed. A delivery handed out and not yet settled is requeued
// when the consumer ends.
func (s *subscriber) Subscribe(ctx context.Context, queue string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.queues[queue]
	if !ok {
		var err error
		if c, err = s.consume(ctx, queue); err != nil {
			return nil, err
		}
		s.queues[queue] = c
	}
	c.refs++
	s.wg.Go(func() {
		select {
		case <-ctx.Done():
		case <-s.closing:
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if c.refs--; c.refs == 0 {
			c.end()
		}
	})
	return c.out, nil
}

// consume starts the consumer of queue; its deliveries' contexts carry
// the values of ctx.
func (s *subscriber) consume(ctx context.Context, queue string) (*consumption, error) {
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Qos(s.inFlight, 0, false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("set prefetch: %w", err)
	}
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil) // ended by closing the channel: a concurrent basic.cancel could take its close-ok
	if err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("consume %s: %w", queue, err)
	}
	ctx, end := context.WithCancel(context.WithoutCancel(ctx))
	c := &consumption{out: make(chan *message.Message), end: end}
	acks := newAcker(ch, s.inFlight)
	var settling sync.WaitGroup
	s.wg.Go(func() {
		defer close(c.out)
		defer func() {
			end()
			settling.Wait() // every delivery handed out is settled or abandoned
			acks.stop()
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
			case d, ok := <-deliveries:
				if !ok {
					return // the channel or the connection closed
				}
				msg, _ := marshaler{}.Unmarshal(d) // never fails
				mctx, cancel := context.WithCancel(ctx)
				msg.SetContext(mctx)
				acks.delivered(d.DeliveryTag)
				select {
				case c.out <- msg:
				case <-ctx.Done():
					cancel()
					return
				}
				settling.Go(func() {
					defer cancel()
					select {
					case <-msg.Acked():
						acks.settle(d.DeliveryTag, true)
					case <-msg.Nacked():
						acks.settle(d.DeliveryTag, false)
					case <-s.closing: // left by its handler: requeued when the channel closes
					}
				})
			}
		}
	})
	return c, nil
}

// Close ends every subscription and waits for their goroutines.
func (s *subscriber) Close() error {
	s.once.Do(func() { close(s.closing) })
	s.wg.Wait()
	return nil
}

// acker acknowledges the deliveries of one channel as they are settled,
// in as few frames as it can without waiting (ackLedger decides which).
type acker struct {
	ch      *amqp.Channel
	settled chan settlement
	done    chan struct{}

	mu     sync.Mutex // guards ledger: deliveries are recorded by the consumer's goroutine
	ledger ackLedger
}

func newAcker(ch *amqp.Channel, inFlight int) *acker {
	a := &acker{ch: ch, settled: make(chan settlement, inFlight), done: make(chan struct{})}
	go a.run()
	return a
}

// delivered records that tag was handed out; tags come in increasing order.
func (a *acker) delivered(tag uint64) {
	a.mu.Lock()
	a.ledger.delivered(tag)
	a.mu.Unlock()
}

// settle acknowledges tag (ack), or rejects it to be requeued.
func (a *acker) settle(tag uint64, ack bool) { a.settled <- settlement{tag, ack} }

// stop ends the acker once every settlement given to it is sent.
func (a *acker) stop() {
	close(a.settled)
	<-a.done
}

func (a *acker) run() {
	defer close(a.done)
	var ready []settlement
	for s := range a.settled {
		ready = append(ready[:0], s)
		runtime.Gosched() // the deliveries of a batch are settled together: let them all come
	drain:
		for {
			select {
			case s, ok := <-a.settled:
				if !ok {
					break drain
				}
				ready = append(ready, s)
			default:
				break drain
			}
		}
		a.mu.Lock()
		frames := a.ledger.settle(ready)
		a.mu.Unlock()
		for _, f := range frames { // errors: the channel is closed, and RabbitMQ requeues what it held
			if f.Requeue {
				_ = a.ch.Nack(f.Tag, false, true)
			} else {
				_ = a.ch.Ack(f.Tag, f.Multiple)
			}
		}
	}
}

// settlement is a delivery's outcome: acknowledged, or to be requeued.
type settlement struct {
	tag uint64
	ack bool
}

// ackFrame is one acknowledgement to send: an ack of Tag (and, Multiple,
// of every delivery before it not yet settled), or a nack that requeues it.
type ackFrame struct {
	Tag      uint64
	Multiple bool
	Requeue  bool
}

// ackLedger turns the deliveries of a channel settled together into
// frames: the acks of the oldest deliveries, those before which nothing
// is unsettled, go out as one ack with multiple set; an ack of a delivery
// behind one still being handled goes out alone at once, so that it never
// holds a place of the prefetch; a nack always goes alone. A multiple ack
// names a delivery not yet acknowledged, as RabbitMQ requires.
type ackLedger struct {
	pending []uint64        // tags handed out, oldest first, past the front run of settled ones
	sent    map[uint64]bool // settled tags in pending; true once their frame is out
}

func (l *ackLedger) delivered(tag uint64) { l.pending = append(l.pending, tag) }

// settle records ready and returns the frames that settle it.
func (l *ackLedger) settle(ready []settlement) []ackFrame {
	if l.sent == nil {
		l.sent = map[uint64]bool{}
	}
	var frames []ackFrame
	for _, s := range ready {
		if !s.ack {
			frames = append(frames, ackFrame{Tag: s.tag, Requeue: true})
		}
		l.sent[s.tag] = !s.ack
	}
	run, last := 0, uint64(0) // the settled run at the front, and its last ack not yet sent
	for _, tag := range l.pending {
		sent, settled := l.sent[tag]
		if !settled {
			break
		}
		if !sent {
			last = tag
		}
		delete(l.sent, tag)
		run++
	}
	l.pending = l.pending[run:]
	if last != 0 {
		frames = append(frames, ackFrame{Tag: last, Multiple: true})
	}
	for _, tag := range l.pending {
		if sent, settled := l.sent[tag]; settled && !sent { // behind a delivery still being handled
			frames = append(frames, ackFrame{Tag: tag})
			l.sent[tag] = true
		}
	}
	return frames
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
