package consumer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/internal/retry"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// The tests run a group of their own, with handlers of their own, on a
// vhost and a database of their own.
var (
	group    = outbox.Route{Group: "orders", Keys: []string{"stock.reserved", "stock.rejected", "stock.released"}}
	topology = outbox.Topology{group}
	quiet    = slog.New(slog.NewTextHandler(io.Discard, nil))
)

// newBroker reaches amqpURL with the tests' topology.
func newBroker(t *testing.T, amqpURL string) *outbox.Broker {
	t.Helper()
	b, err := outbox.NewBroker(outbox.BrokerConfig{URL: amqpURL, Topology: topology, Logger: quiet})
	testenv.Must(t, err, "broker")
	return b
}

type harness struct {
	pool   *pgxpool.Pool
	url    string
	broker *outbox.Broker
	ch     *amqp.Channel
	calls  sync.Map // event id → *atomic.Int32: attempts of the handler
}

// start runs the group with handler h for every key until the test ends.
func start(t *testing.T, h consumer.Handler, tune func(*consumer.Config)) *harness {
	t.Helper()
	x := &harness{pool: testenv.Pool(t), url: testenv.AMQPURL(t)}
	x.broker = newBroker(t, x.url)
	counted := func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
		n, _ := x.calls.LoadOrStore(e.ID, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		return h(ctx, tx, e)
	}
	cfg := consumer.Config{
		Group:  consumer.Group{Name: group.Group, Keys: group.Keys, Handlers: map[string]consumer.Handler{}, Batches: true},
		Broker: x.broker, UnitOfWork: store.NewUnitOfWork(x.pool, nil), Logger: quiet,
		MaxRetries: 5, Backoff: retry.Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond},
	}
	for _, k := range group.Keys {
		cfg.Group.Handlers[k] = counted
	}
	if tune != nil {
		tune(&cfg)
	}
	g, err := consumer.New(cfg)
	testenv.Must(t, err, "new consumer group")
	testenv.Run(t, g.Run)

	conn, err := amqp.Dial(x.url)
	testenv.Must(t, err, "dial rabbitmq")
	t.Cleanup(func() { _ = conn.Close() })
	x.ch, err = conn.Channel()
	testenv.Must(t, err, "open channel")
	testenv.Must(t, topology.Declare(x.ch), "declare topology")
	return x
}

// envelope returns a valid event of the group.
func envelope(t *testing.T) outbox.Envelope {
	t.Helper()
	id := uuid.Must(uuid.NewV7())
	return outbox.Envelope{ID: id, Type: "stock.reserved", SchemaVersion: outbox.SchemaVersion,
		AggregateType: "reservation", AggregateID: uuid.Must(uuid.NewV7()), AggregateVersion: 1,
		OccurredAt: time.Now().UTC(), CorrelationID: id.String(), CausationID: id.String(), Data: json.RawMessage(`{}`)}
}

// publish sends a message to the group's queue as the relay would.
func (x *harness) publish(t *testing.T, id, typ string, body []byte, headers amqp.Table) {
	t.Helper()
	err := x.ch.PublishWithContext(context.Background(), "", group.Queue(), true, false, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: id, Type: typ,
		Body: body, Headers: headers,
	})
	testenv.Must(t, err, "publish")
}

func (x *harness) publishEnvelope(t *testing.T, env outbox.Envelope) {
	t.Helper()
	body, err := json.Marshal(env)
	testenv.Must(t, err, "encode envelope")
	x.publish(t, env.ID.String(), env.Type, body, nil)
}

func (x *harness) attempts(id uuid.UUID) int {
	n, ok := x.calls.Load(id)
	if !ok {
		return 0
	}
	return int(n.(*atomic.Int32).Load())
}

func (x *harness) inboxRows(t *testing.T, id uuid.UUID) int {
	t.Helper()
	return testenv.Count(t, x.pool, `SELECT count(*) FROM inbox WHERE consumer = $1 AND event_id = $2`, group.Group, id)
}

// waitDead waits until the dead queue holds want messages and returns them.
func (x *harness) waitDead(t *testing.T, want int) []consumer.DeadMessage {
	t.Helper()
	var dead []consumer.DeadMessage
	testenv.Eventually(t, 10*time.Second, func() error {
		var err error
		dead, err = consumer.ListDead(context.Background(), x.broker, group, 0)
		if err != nil {
			return err
		}
		if len(dead) != want {
			return fmt.Errorf("%d dead messages, want %d", len(dead), want)
		}
		return nil
	})
	return dead
}

func TestAppliesEachEventOnce(t *testing.T) {
	t.Parallel()
	x := start(t, func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error { return nil }, nil)
	env := envelope(t)
	for range 3 { // the same event delivered three times
		x.publishEnvelope(t, env)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := x.inboxRows(t, env.ID); n != 1 {
			return fmt.Errorf("%d inbox rows, want 1", n)
		}
		if n := x.attempts(env.ID); n != 1 {
			return fmt.Errorf("handler ran %d times, want 1", n)
		}
		return nil
	})
	// All three deliveries are acknowledged: nothing is left in the queue.
	testenv.Eventually(t, 10*time.Second, func() error {
		q, err := x.ch.QueueDeclarePassive(group.Queue(), true, false, false, false,
			amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum})
		if err != nil {
			return err
		}
		if q.Messages != 0 {
			return fmt.Errorf("%d messages left in %s", q.Messages, group.Queue())
		}
		return nil
	})
	if len(x.waitDead(t, 0)) != 0 {
		t.Fatal("a duplicate went to the dead queue")
	}
}

func TestPoisonGoesToTheDeadQueueAndTheGroupGoesOn(t *testing.T) {
	t.Parallel()
	failing := envelope(t)
	x := start(t, func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
		if e.ID == failing.ID {
			return errors.New("this handler always fails")
		}
		return nil
	}, func(c *consumer.Config) { c.MaxRetries = 3 })

	x.publish(t, "not-json", "stock.reserved", []byte("{this is not json"), nil)
	withHeader := envelope(t)
	body, _ := json.Marshal(withHeader)
	x.publish(t, withHeader.ID.String(), withHeader.Type, body, amqp.Table{"x-death": []any{amqp.Table{"count": int64(1)}}})
	x.publishEnvelope(t, failing)
	wrongType := envelope(t)
	wrongType.Type = "user.registered"
	x.publishEnvelope(t, wrongType)
	good := envelope(t)
	x.publishEnvelope(t, good)

	dead := x.waitDead(t, 4)
	reasons := map[string]string{}
	for _, d := range dead {
		reasons[d.ID] = d.Reason
		if d.FailedAt == "" {
			t.Errorf("dead message %s has no failed_at header", d.ID)
		}
	}
	for id, want := range map[string]string{
		"not-json":             "decode envelope",
		withHeader.ID.String(): `unexpected header "x-death"`,
		failing.ID.String():    "this handler always fails",
		wrongType.ID.String():  `no handler for "user.registered"`,
	} {
		if got, ok := reasons[id]; !ok || !strings.Contains(got, want) {
			t.Errorf("dead message %s: reason %q, want it to contain %q", id, got, want)
		}
	}
	if n := x.attempts(failing.ID); n != 4 {
		t.Errorf("failing handler ran %d times, want 1 + 3 retries", n)
	}
	if n := x.inboxRows(t, failing.ID); n != 0 {
		t.Errorf("failed event left %d inbox rows", n)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := x.inboxRows(t, good.ID); n != 1 {
			return fmt.Errorf("the good event behind the poison has %d inbox rows, want 1", n)
		}
		return nil
	})
}

func TestTransientFailuresAreRetried(t *testing.T) {
	t.Parallel()
	var fails atomic.Int32
	fails.Store(2)
	x := start(t, func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
		if fails.Add(-1) >= 0 {
			return errors.New("flaky")
		}
		return nil
	}, nil)
	env := envelope(t)
	x.publishEnvelope(t, env)
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := x.inboxRows(t, env.ID); n != 1 {
			return fmt.Errorf("%d inbox rows, want 1", n)
		}
		return nil
	})
	if n := x.attempts(env.ID); n != 3 {
		t.Errorf("handler ran %d times, want 3 (two failures, then success)", n)
	}
	if dead := x.waitDead(t, 0); len(dead) != 0 {
		t.Errorf("a message that succeeded on retry is in the dead queue: %+v", dead)
	}
}

// A message RabbitMQ dead-letters itself (redelivered past the queue's
// delivery limit, e.g. by consumers that crash on it) is listed with the
// broker's reason.
func TestDeadListShowsWhyRabbitMQDeadLettered(t *testing.T) {
	t.Parallel()
	url := testenv.AMQPURL(t)
	conn, err := amqp.Dial(url)
	testenv.Must(t, err, "dial rabbitmq")
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	testenv.Must(t, err, "open channel")
	testenv.Must(t, topology.Declare(ch), "declare topology")
	env := envelope(t)
	body, err := json.Marshal(env)
	testenv.Must(t, err, "encode envelope")
	testenv.Must(t, ch.PublishWithContext(context.Background(), "", group.Queue(), true, false, amqp.Publishing{
		MessageId: env.ID.String(), Type: env.Type, DeliveryMode: amqp.Persistent, Body: body}), "publish")

	// Requeue it until the broker gives up on it.
	testenv.Eventually(t, 20*time.Second, func() error {
		d, ok, err := ch.Get(group.Queue(), false)
		if err != nil {
			return err
		}
		if ok {
			testenv.Must(t, d.Nack(false, true), "requeue")
			return errors.New("still in the queue")
		}
		dead, err := consumer.ListDead(context.Background(), newBroker(t, url), group, 0)
		if err != nil || len(dead) != 1 {
			return fmt.Errorf("dead queue: %d messages, %v", len(dead), err)
		}
		return nil
	})
	dead, err := consumer.ListDead(context.Background(), newBroker(t, url), group, 0)
	testenv.Must(t, err, "list dead")
	if len(dead) != 1 || dead[0].ID != env.ID.String() {
		t.Fatalf("dead = %+v, want the one message %s", dead, env.ID)
	}
	if want := "dead-lettered by RabbitMQ from " + group.Queue() + ": delivery_limit"; dead[0].Reason != want {
		t.Errorf("reason %q, want %q", dead[0].Reason, want)
	}
	if _, err := time.Parse(time.RFC3339, dead[0].FailedAt); err != nil {
		t.Errorf("failed at %q: %v", dead[0].FailedAt, err)
	}
}

func TestReplayMovesDeadMessagesBack(t *testing.T) {
	t.Parallel()
	var broken atomic.Bool
	broken.Store(true)
	x := start(t, func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
		if broken.Load() {
			return errors.New("downstream broken")
		}
		return nil
	}, func(c *consumer.Config) { c.MaxRetries = 1 })
	envs := []outbox.Envelope{envelope(t), envelope(t)}
	for _, e := range envs {
		x.publishEnvelope(t, e)
	}
	x.waitDead(t, 2)
	broken.Store(false) // the operator fixed the cause

	// Listing the dead queue (waitDead) holds its messages until its
	// channel closes; RabbitMQ puts them back a moment later, and a replay
	// counts only those that are back: replay until both were.
	replayed := 0
	testenv.Eventually(t, 10*time.Second, func() error {
		n, err := consumer.ReplayDead(context.Background(), x.broker, group, 0)
		if err != nil {
			return err
		}
		if replayed += n; replayed != 2 {
			return fmt.Errorf("%d replayed, want 2", replayed)
		}
		return nil
	})
	testenv.Eventually(t, 10*time.Second, func() error {
		for _, e := range envs {
			if n := x.inboxRows(t, e.ID); n != 1 {
				return fmt.Errorf("replayed event %s has %d inbox rows, want 1", e.ID, n)
			}
		}
		return nil
	})
	if dead := x.waitDead(t, 0); len(dead) != 0 {
		t.Errorf("dead queue not empty after replay: %+v", dead)
	}
}

func TestHandlesDeliveriesConcurrently(t *testing.T) {
	t.Parallel()
	const concurrency = 4
	var inFlight, peak atomic.Int32
	// Each handler holds its delivery until concurrency of them are in
	// flight at once (or 10 s pass: a group that handled fewer at once
	// would never get there, and the check below says so).
	together := make(chan struct{})
	var once sync.Once
	x := start(t, func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if n == concurrency {
			once.Do(func() { close(together) })
		}
		select {
		case <-together:
		case <-time.After(10 * time.Second):
		}
		return nil
	}, func(c *consumer.Config) { c.Concurrency = concurrency; c.Prefetch = 1 })
	envs := make([]outbox.Envelope, 4*concurrency)
	for i := range envs {
		envs[i] = envelope(t)
		x.publishEnvelope(t, envs[i])
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		n := testenv.Count(t, x.pool, `SELECT count(*) FROM inbox WHERE consumer = $1`, group.Group)
		if n != len(envs) {
			return fmt.Errorf("%d of %d events applied", n, len(envs))
		}
		return nil
	})
	if p := peak.Load(); p != concurrency {
		t.Errorf("at most %d deliveries were handled at once, want %d", p, concurrency)
	}
}

func TestAFailureIsLoggedOnceWithTheEventsIDs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		err          error
		wantAttempts float64
	}{
		{"data the domain rejects: dead at once", fmt.Errorf("reserve: %w", domain.ErrInvalid), 1},
		{"a handler that always fails: dead after the retries", errors.New("this handler always fails"), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logs := &testenv.Logs{}
			x := start(t, func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error { return tt.err }, func(c *consumer.Config) {
				c.MaxRetries = 2
				c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			})
			env := envelope(t)
			env.CorrelationID, env.CausationID = uuid.NewString(), uuid.NewString() // distinct from the event id
			x.publishEnvelope(t, env)
			x.waitDead(t, 1)

			var dead map[string]any
			testenv.Eventually(t, 10*time.Second, func() error { // logged once the dead queue confirmed it
				var ok bool
				if dead, ok = logs.Line(t, "message to the dead queue"); !ok {
					return errors.New("no dead-queue line logged")
				}
				return nil
			})
			for key, want := range map[string]any{
				"level": "ERROR", "group": group.Group, "event_id": env.ID.String(), "event_type": env.Type,
				"correlation_id": env.CorrelationID, "causation_id": env.CausationID, "attempts": tt.wantAttempts,
			} {
				if dead[key] != want {
					t.Errorf("dead-queue line: %s = %v, want %v", key, dead[key], want)
				}
			}
			if reason, _ := dead["reason"].(string); !strings.Contains(reason, tt.err.Error()) {
				t.Errorf("dead-queue line: reason %q does not name the failure %q", reason, tt.err)
			}
			// Handled once: no other warning or error about the event, and
			// every line about it carries its correlation and causation ids.
			for _, line := range logs.Lines(t) {
				if line["event_id"] != env.ID.String() {
					continue
				}
				if line["correlation_id"] != env.CorrelationID || line["causation_id"] != env.CausationID {
					t.Errorf("a line about the event lacks its ids: %v", line)
				}
				if level := line["level"]; (level == "WARN" || level == "ERROR") && line["msg"] != "message to the dead queue" {
					t.Errorf("the failure is logged more than once: %v", line)
				}
			}
		})
	}
}
