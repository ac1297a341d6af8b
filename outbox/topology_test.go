package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
)

// amqpChannel opens a connection of the test's own to amqpURL and a channel
// on it; both are closed when t ends.
func amqpChannel(t *testing.T, amqpURL string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	testenv.Must(t, err, "connect to rabbitmq")
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	testenv.Must(t, err, "open channel")
	return ch
}

// publishConfirmed publishes msg mandatory on a confirm channel of its own
// and returns whether RabbitMQ acked it and whether it came back unroutable.
func publishConfirmed(t *testing.T, amqpURL, exchange, key string, msg amqp.Publishing) (acked, returned bool) {
	t.Helper()
	ch := amqpChannel(t, amqpURL)
	testenv.Must(t, ch.Confirm(false), "confirm mode")
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), exchange, key, true, false, msg)
	testenv.Must(t, err, "publish")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	acked, err = dc.WaitContext(ctx)
	testenv.Must(t, err, "wait for confirm")
	select { // a return comes before its ack
	case <-returns:
		returned = true
	default:
	}
	return acked, returned
}

// TestRelayDeclaresTopologyBeforePublishing starts a relay on an empty
// virtual host, with no sink or consumer declaring anything, and checks that
// once connected it declared the exchange, every group's queue and dead
// queue, and bindings that route each key to exactly its groups' queues.
func TestRelayDeclaresTopologyBeforePublishing(t *testing.T) {
	t.Parallel()
	dbURL, amqpURL := testenv.DatabaseURL(t), testenv.AMQPURL(t)
	waitConnected(t, startRelay(t, dbURL, amqpURL, nil))

	ch := amqpChannel(t, amqpURL) // a passive declare of a missing thing closes it: fatal below
	err := ch.ExchangeDeclarePassive(outbox.Exchange, amqp.ExchangeTopic, true, false, false, false, nil)
	testenv.Must(t, err, "exchange "+outbox.Exchange)
	keys := map[string]bool{}
	for _, g := range topology {
		for _, q := range []string{g.Queue(), g.DeadQueue()} {
			_, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
			testenv.Must(t, err, "queue "+q)
		}
		for _, k := range g.Keys {
			keys[k] = true
		}
	}

	// One mandatory probe per key: none may come back unroutable.
	for key := range keys {
		acked, returned := publishConfirmed(t, amqpURL, outbox.Exchange, key, amqp.Publishing{MessageId: key, Body: []byte("probe")})
		if !acked || returned {
			t.Fatalf("probe %s: acked %v, returned %v; want acked and routed", key, acked, returned)
		}
	}
	// Each group's queue holds the probes of its keys, and only those.
	for _, g := range topology {
		var got []string
		testenv.Eventually(t, 10*time.Second, func() error {
			for {
				d, ok, err := ch.Get(g.Queue(), true)
				testenv.Must(t, err, "get from "+g.Queue())
				if !ok {
					break
				}
				got = append(got, d.RoutingKey)
			}
			if len(got) < len(g.Keys) {
				return fmt.Errorf("%s holds %v, want %v", g.Queue(), got, g.Keys)
			}
			return nil
		})
		slices.Sort(got)
		if want := slices.Sorted(slices.Values(g.Keys)); !slices.Equal(got, want) {
			t.Errorf("%s got the probes %v, want %v", g.Queue(), got, want)
		}
	}
}

// TestGroupQueueArgumentsAreTheContract checks that a group's queue can be
// redeclared (as a consumer does before subscribing) with QueueArgs, and
// that RabbitMQ refuses other arguments.
func TestGroupQueueArgumentsAreTheContract(t *testing.T) {
	t.Parallel()
	amqpURL := testenv.AMQPURL(t)
	testenv.Must(t, topology.Declare(amqpChannel(t, amqpURL)), "declare topology")
	g := topology[0]
	tests := []struct {
		name     string
		args     amqp.Table
		wantCode int // 0: accepted
	}{
		{"QueueArgs", g.QueueArgs(), 0},
		{"only the queue type", amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}, amqp.PreconditionFailed},
		{"another delivery limit", func() amqp.Table {
			args := maps.Clone(g.QueueArgs())
			args["x-delivery-limit"] = outbox.DeliveryLimit + 1
			return args
		}(), amqp.PreconditionFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := amqpChannel(t, amqpURL).QueueDeclare(g.Queue(), true, false, false, false, tt.args)
			var amqpErr *amqp.Error
			switch {
			case tt.wantCode == 0 && err != nil:
				t.Fatalf("redeclare %s: %v", g.Queue(), err)
			case tt.wantCode != 0 && (!errors.As(err, &amqpErr) || amqpErr.Code != tt.wantCode):
				t.Fatalf("redeclare %s: %v, want code %d", g.Queue(), err, tt.wantCode)
			}
		})
	}
}

// TestGroupQueueDeadLettersPastDeliveryLimit requeues one message again and
// again: past the delivery limit RabbitMQ moves it to the group's dead queue
// instead of dropping it or redelivering it forever.
func TestGroupQueueDeadLettersPastDeliveryLimit(t *testing.T) {
	t.Parallel()
	amqpURL := testenv.AMQPURL(t)
	testenv.Must(t, topology.Declare(amqpChannel(t, amqpURL)), "declare topology")
	g := topology[0]
	id := uuid.NewString()
	if acked, returned := publishConfirmed(t, amqpURL, outbox.Exchange, g.Keys[0], amqp.Publishing{MessageId: id, Body: []byte("{}")}); !acked || returned {
		t.Fatalf("publish: acked %v, returned %v", acked, returned)
	}

	consumer := amqpChannel(t, amqpURL)
	testenv.Must(t, consumer.Qos(1, 0, false), "qos")
	deliveries, err := consumer.Consume(g.Queue(), "", false, false, false, false, nil)
	testenv.Must(t, err, "consume")
	var delivered atomic.Int64
	go func() {
		for d := range deliveries {
			delivered.Add(1)
			_ = d.Nack(false, true) // requeue: a consumer that keeps failing
		}
	}()

	ch := amqpChannel(t, amqpURL)
	var dead amqp.Delivery
	testenv.Eventually(t, 30*time.Second, func() error {
		d, ok, err := ch.Get(g.DeadQueue(), true)
		testenv.Must(t, err, "get from "+g.DeadQueue())
		if !ok {
			return fmt.Errorf("nothing in %s after %d deliveries", g.DeadQueue(), delivered.Load())
		}
		dead = d
		return nil
	})
	if dead.MessageId != id {
		t.Fatalf("%s holds message %q, want %q", g.DeadQueue(), dead.MessageId, id)
	}
	var death amqp.Table
	if deaths, _ := dead.Headers["x-death"].([]any); len(deaths) == 1 {
		death, _ = deaths[0].(amqp.Table)
	}
	if death["reason"] != "delivery_limit" || death["queue"] != g.Queue() {
		t.Errorf("x-death = %v, want one death by delivery_limit in %s", dead.Headers["x-death"], g.Queue())
	}
	if n := delivered.Load(); n != outbox.DeliveryLimit+1 {
		t.Errorf("delivered %d times, want %d (the first delivery and %d redeliveries)", n, outbox.DeliveryLimit+1, outbox.DeliveryLimit)
	}
}
