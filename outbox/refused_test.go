package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// These tests make RabbitMQ itself refuse a row that the relay publishes
// mid-batch, by a basic.return or a basic.nack, and check that its
// partition waits at that row (the rows behind it, published already, stay
// in the outbox), the others flow, and once the broker takes it the rows
// behind it come again after it.

// refusal is a partition stuck at a refused event: aggregate a's events
// before, the refused one, those behind it; and events of aggregates in
// other partitions.
type refusal struct {
	a       uuid.UUID
	before  []domain.Event
	refused domain.Event
	behind  []domain.Event
	others  []domain.Event
}

// appendRefusal commits a's events in one transaction, so that one round
// reads them all, then the others'.
func appendRefusal(t *testing.T, pool *pgxpool.Pool, r refusal) {
	t.Helper()
	uow := store.NewUnitOfWork(pool, nil)
	events := slices.Concat(r.before, []domain.Event{r.refused}, r.behind)
	for _, batch := range [][]domain.Event{events, r.others} {
		err := uow.Do(context.Background(), func(_ context.Context, tx *store.Tx) error { return tx.Append(batch...) })
		testenv.Must(t, err, "append events")
	}
}

// othersOf returns n aggregates' events of key, none in a's partition.
func othersOf(a uuid.UUID, key string, n int) []domain.Event {
	var events []domain.Event
	for len(events) < n {
		if id := uuid.New(); outbox.Partition(id) != outbox.Partition(a) {
			events = append(events, domain.NewEvent(key, "order", id, 1, time.Now(), struct{}{}))
		}
	}
	return events
}

// outboxRows returns the event ids waiting in the outbox, in id order.
func outboxRows(t *testing.T, pool *pgxpool.Pool) []uuid.UUID {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT event_id FROM outbox ORDER BY id`)
	testenv.Must(t, err, "read outbox")
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	testenv.Must(t, err, "read outbox")
	return ids
}

func eventIDs(events ...domain.Event) []uuid.UUID {
	ids := make([]uuid.UUID, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	return ids
}

// arrivalsOf returns the ids of the events of aggregate a that arrived at s,
// in arrival order, and how often each event arrived.
func arrivalsOf(s *testenv.Sink, a uuid.UUID) (seq []uuid.UUID, times map[uuid.UUID]int) {
	times = map[uuid.UUID]int{}
	for _, x := range s.Arrivals() {
		times[x.ID]++
		if x.Aggregate == a {
			seq = append(seq, x.ID)
		}
	}
	return seq, times
}

// waitStuck waits until the relay counted at least three refusals for
// reason (a first one and two retries) and every event in arrived reached s.
func waitStuck(t *testing.T, metrics *outbox.Metrics, reason string, s *testenv.Sink, arrived []domain.Event) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := testutil.ToFloat64(metrics.Failures.WithLabelValues(reason)); n < 3 {
			return fmt.Errorf("%v failures %q counted, want a first one and two retries", n, reason)
		}
		_, times := arrivalsOf(s, uuid.Nil)
		for _, e := range arrived {
			if times[e.ID] == 0 {
				return fmt.Errorf("%s (%s) has not arrived", e.ID, e.Type)
			}
		}
		return nil
	})
}

// waitSeq waits until as many of aggregate a's events reached s as want
// has, then fails t unless they arrived as want.
func waitSeq(t *testing.T, s *testenv.Sink, a uuid.UUID, want []uuid.UUID) {
	t.Helper()
	var seq []uuid.UUID
	testenv.Eventually(t, 10*time.Second, func() error {
		if seq, _ = arrivalsOf(s, a); len(seq) < len(want) {
			return fmt.Errorf("aggregate %s arrived as %v so far, want %v", a, seq, want)
		}
		return nil
	})
	if !slices.Equal(seq, want) {
		t.Fatalf("aggregate %s arrived as %v, want %v", a, seq, want)
	}
}

func waitConnected(t *testing.T, relay *outbox.Relay) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		if !relay.Connected() {
			return errors.New("relay not connected")
		}
		return nil
	})
}

// TestBrokerReturnStopsItsPartition unbinds a routing key that the topology
// knows, so the relay's own check lets its event through and the broker
// returns it, in the middle of a batch.
func TestBrokerReturnStopsItsPartition(t *testing.T) {
	t.Parallel()
	dbURL, amqpURL := testenv.DatabaseURL(t), testenv.AMQPURL(t)
	pool := openPool(t, dbURL, 4)
	s := testenv.NewGroupSink(t, amqpURL, topology, "shop.orders") // declares the topology
	metrics := outbox.NewMetrics(nil)
	waitConnected(t, startRelay(t, dbURL, amqpURL, func(c *outbox.RelayConfig) { c.Metrics = metrics }))

	// The relay declared the topology when it connected; from now on no
	// queue is bound to key until the test binds it again.
	const key = "stock.reserved"
	if !topology.Routed(key) {
		t.Fatalf("%s is not in the topology", key)
	}
	admin := amqpChannel(t, amqpURL)
	var bound []outbox.Route
	for _, g := range topology {
		if slices.Contains(g.Keys, key) {
			bound = append(bound, g)
			testenv.Must(t, admin.QueueUnbind(g.Queue(), key, outbox.Exchange, nil), "unbind "+g.Queue())
		}
	}

	a := uuid.New()
	r := refusal{
		a:       a,
		before:  []domain.Event{domain.NewEvent("stock.rejected", "order", a, 1, time.Now(), struct{}{})},
		refused: domain.NewEvent(key, "order", a, 2, time.Now(), struct{}{}),
		behind: []domain.Event{
			domain.NewEvent("stock.released", "order", a, 3, time.Now(), struct{}{}),
			domain.NewEvent("stock.rejected", "order", a, 4, time.Now(), struct{}{}),
		},
		others: othersOf(a, "stock.released", 20),
	}
	appendRefusal(t, pool, r)
	waitStuck(t, metrics, "unroutable", s, slices.Concat(r.before, r.behind, r.others))

	// The rows behind the returned one were published in its round, and
	// not again while it is retried alone; none of them was deleted.
	seq, _ := arrivalsOf(s, a)
	if want := eventIDs(slices.Concat(r.before, r.behind)...); !slices.Equal(seq, want) {
		t.Fatalf("while stuck, aggregate %s arrived as %v, want %v", a, seq, want)
	}
	if got, want := outboxRows(t, pool), eventIDs(slices.Concat([]domain.Event{r.refused}, r.behind)...); !slices.Equal(got, want) {
		t.Fatalf("outbox holds %v, want the returned row and the rows behind it %v", got, want)
	}

	for _, g := range bound {
		testenv.Must(t, admin.QueueBind(g.Queue(), key, outbox.Exchange, false, nil), "bind "+g.Queue())
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if rows := outboxRows(t, pool); len(rows) > 0 {
			return fmt.Errorf("%d rows still in the outbox", len(rows))
		}
		return nil
	})
	// The refused event arrived after the later ones once, and they arrive
	// again after it: the last copy of every event is in version order.
	want := eventIDs(slices.Concat(r.before, r.behind, []domain.Event{r.refused}, r.behind)...)
	waitSeq(t, s, a, want)
	_, times := arrivalsOf(s, a)
	for _, e := range r.others {
		if times[e.ID] != 1 {
			t.Errorf("event %s of another partition arrived %d times, want once", e.ID, times[e.ID])
		}
	}
}

// TestBrokerNackStopsItsPartition makes a queue refuse publishes (a quorum
// queue over its max-length with overflow reject-publish), so RabbitMQ nacks
// an event routed to it, in the middle of a batch.
func TestBrokerNackStopsItsPartition(t *testing.T) {
	t.Parallel()
	dbURL := testenv.DatabaseURL(t)
	vhost := testenv.VHost(t)
	amqpURL := testenv.AMQPServerURL() + vhost
	pool := openPool(t, dbURL, 4)
	orders := testenv.NewGroupSink(t, amqpURL, topology, "shop.orders") // declares the topology

	// A quorum queue's length limit is soft: it takes a message past it
	// before it refuses. Fill shop.inventory until a publish is nacked.
	testenv.SetPolicy(t, vhost, "refuse", `^shop\.inventory$`, `{"max-length":0,"overflow":"reject-publish"}`)
	filler := uuid.New()
	version := int64(0)
	// takes publishes a filler event straight to shop.inventory and reports
	// whether the queue took it.
	takes := func() bool {
		version++
		env, err := outbox.NewEnvelope(domain.NewEvent("order.placed", "order", filler, version, time.Now(), struct{}{}), outbox.Metadata{})
		testenv.Must(t, err, "filler envelope")
		body, err := json.Marshal(env)
		testenv.Must(t, err, "filler envelope")
		acked, _ := publishConfirmed(t, amqpURL, "", "shop.inventory", amqp.Publishing{MessageId: env.ID.String(), Body: body})
		return acked
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if takes() {
			return errors.New("shop.inventory still takes publishes")
		}
		return nil
	})

	metrics := outbox.NewMetrics(nil)
	waitConnected(t, startRelay(t, dbURL, amqpURL, func(c *outbox.RelayConfig) { c.Metrics = metrics }))
	a := uuid.New()
	r := refusal{
		a:       a,
		refused: domain.NewEvent("order.placed", "order", a, 1, time.Now(), struct{}{}), // shop.inventory, shop.projections
		behind:  []domain.Event{domain.NewEvent("stock.reserved", "order", a, 2, time.Now(), struct{}{})},
		others:  othersOf(a, "stock.released", 20),
	}
	appendRefusal(t, pool, r)
	waitStuck(t, metrics, "nacked", orders, slices.Concat(r.behind, r.others))

	seq, _ := arrivalsOf(orders, a)
	if want := eventIDs(r.behind...); !slices.Equal(seq, want) {
		t.Fatalf("while stuck, aggregate %s arrived at shop.orders as %v, want %v", a, seq, want)
	}
	if got, want := outboxRows(t, pool), eventIDs(slices.Concat([]domain.Event{r.refused}, r.behind)...); !slices.Equal(got, want) {
		t.Fatalf("outbox holds %v, want the nacked row and the row behind it %v", got, want)
	}

	testenv.ClearPolicy(t, vhost, "refuse")
	inventory := testenv.NewGroupSink(t, amqpURL, topology, "shop.inventory") // the fillers, then the event
	// The quorum queue applies the cleared policy on its own time (slow on
	// a loaded machine): wait until it takes a publish again, then give
	// the relay its time.
	testenv.Eventually(t, 60*time.Second, func() error {
		if !takes() {
			return errors.New("shop.inventory still refuses publishes")
		}
		return nil
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		if rows := outboxRows(t, pool); len(rows) > 0 {
			return fmt.Errorf("%d rows still in the outbox", len(rows))
		}
		return nil
	})
	waitSeq(t, inventory, a, eventIDs(r.refused))
	// The row behind the nacked one came once before it and once after.
	waitSeq(t, orders, a, eventIDs(slices.Concat(r.behind, r.behind)...))
}
