package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/outbox"
)

// Arrival is an event as a consumer saw it.
type Arrival struct {
	ID        uuid.UUID
	Aggregate uuid.UUID
	Version   int64
}

// Sink is a queue bound to every routing key of shop.events, declared
// before any relay runs, and the events that reached it.
type Sink struct {
	queue    string
	topology outbox.Topology
	mu       sync.Mutex
	arrivals []Arrival
}

// NewSink declares topology and a queue "test.all" bound to every routing
// key, and records what reaches it, reconnecting when its connection is
// lost, until t ends. Declare it before any relay runs.
func NewSink(t testing.TB, amqpURL string, topology outbox.Topology) *Sink {
	t.Helper()
	return newSink(t, amqpURL, topology, "test.all")
}

// NewGroupSink declares topology and records what reaches the queue of one
// of its groups.
func NewGroupSink(t testing.TB, amqpURL string, topology outbox.Topology, queue string) *Sink {
	t.Helper()
	return newSink(t, amqpURL, topology, queue)
}

func newSink(t testing.TB, amqpURL string, topology outbox.Topology, queue string) *Sink {
	t.Helper()
	s := &Sink{queue: queue, topology: topology}
	ready := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			s.consume(ctx, amqpURL, ready) // returns when the connection is lost
		}
	}()
	Must(t, <-ready, "start test consumer")
	return s
}

// consume reads the test queue until the connection is lost or ctx ends,
// acknowledging each message once recorded, so a lost connection loses
// nothing (a message may come twice).
func (s *Sink) consume(ctx context.Context, amqpURL string, ready chan<- error) {
	signal := func(err error) {
		select {
		case ready <- err:
		default:
		}
	}
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		signal(err)
		time.Sleep(50 * time.Millisecond)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err == nil {
		err = s.topology.Declare(ch)
	}
	if err == nil && s.queue == "test.all" {
		_, err = ch.QueueDeclare(s.queue, true, false, false, false, nil)
		if err == nil {
			err = ch.QueueBind(s.queue, "#", outbox.Exchange, false, nil)
		}
	}
	if err == nil {
		err = ch.Qos(1000, 0, false)
	}
	var deliveries <-chan amqp.Delivery
	if err == nil {
		deliveries, err = ch.Consume(s.queue, "", false, false, false, false, nil)
	}
	signal(err)
	if err != nil {
		time.Sleep(50 * time.Millisecond)
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case d, ok := <-deliveries:
			if !ok {
				return
			}
			var env outbox.Envelope
			if err := json.Unmarshal(d.Body, &env); err != nil {
				panic(fmt.Sprintf("undecodable message %q: %v", d.Body, err))
			}
			s.mu.Lock()
			s.arrivals = append(s.arrivals, Arrival{ID: env.ID, Aggregate: env.AggregateID, Version: env.AggregateVersion})
			s.mu.Unlock()
			_ = d.Ack(false)
		}
	}
}

// Arrivals returns what arrived so far, in order.
func (s *Sink) Arrivals() []Arrival {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Arrival(nil), s.arrivals...)
}

// WaitFor waits until every event of want arrived.
func (s *Sink) WaitFor(t testing.TB, want map[uuid.UUID]bool, timeout time.Duration) []Arrival {
	t.Helper()
	var got []Arrival
	Eventually(t, timeout, func() error {
		got = s.Arrivals()
		seen := make(map[uuid.UUID]bool, len(got))
		for _, a := range got {
			seen[a.ID] = true
		}
		missing := 0
		for id := range want {
			if !seen[id] {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d events have not arrived", missing, len(want))
		}
		return nil
	})
	return got
}

// CheckOrder fails t if an aggregate's events first arrived out of version
// order, and returns how many arrivals were duplicates.
func CheckOrder(t testing.TB, got []Arrival) (duplicates int) {
	t.Helper()
	seen := map[uuid.UUID]bool{}
	last := map[uuid.UUID]int64{}
	for _, a := range got {
		if seen[a.ID] {
			duplicates++
			continue
		}
		seen[a.ID] = true
		if a.Version <= last[a.Aggregate] {
			t.Fatalf("aggregate %s: version %d arrived after version %d", a.Aggregate, a.Version, last[a.Aggregate])
		}
		last[a.Aggregate] = a.Version
	}
	return duplicates
}
