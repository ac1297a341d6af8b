package testenv_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
)

// recorder is the testing.TB of a tap under test: it keeps what the tap
// reports instead of failing the test, and runs the tap's cleanups when
// the test says so. Anything else goes to the real test.
type recorder struct {
	testing.TB
	mu       sync.Mutex
	errs     []string
	cleanups []func()
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

// end runs the cleanups, as the end of a test would, and returns what was
// reported.
func (r *recorder) end() []string {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

// registered returns a user.registered as the relay publishes it.
func registered(t *testing.T) (amqp.Publishing, uuid.UUID) {
	t.Helper()
	u, err := user.Register(uuid.Must(uuid.NewV7()), "tap@example.com", "Tap", "hash", user.RoleCustomer, time.Now())
	testenv.Must(t, err, "register")
	e := u.Events()[0]
	env, err := outbox.NewEnvelope(e, outbox.Metadata{})
	testenv.Must(t, err, "envelope")
	body, err := json.Marshal(env)
	testenv.Must(t, err, "encode")
	return amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: e.ID.String(),
		Type: e.Type, Timestamp: time.Now(), Body: body}, e.ID
}

// publisher returns a function publishing to shop.events on amqpURL.
func publisher(t *testing.T, amqpURL string) func(key string, msg amqp.Publishing) {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	testenv.Must(t, err, "dial")
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	testenv.Must(t, err, "channel")
	return func(key string, msg amqp.Publishing) {
		testenv.Must(t, ch.PublishWithContext(context.Background(), outbox.Exchange, key, false, false, msg), "publish")
	}
}

// TestTapReportsEachBrokenMessage publishes a valid message and three that
// break the contract (in their data, in a property, by their routing key):
// the tap checks all four and fails the test for the three, naming each
// one's routing key and message id.
func TestTapReportsEachBrokenMessage(t *testing.T) {
	t.Parallel()
	amqpURL := testenv.AMQPURL(t)
	rec := &recorder{TB: t}
	tap := testenv.ValidateEvents(rec, amqpURL)
	publish := publisher(t, amqpURL)

	good, goodID := registered(t)
	publish("user.registered", good)
	extra, extraID := registered(t)
	extra.Body = []byte(strings.Replace(string(extra.Body), `"role":`, `"nickname":"x","role":`, 1))
	publish("user.registered", extra)
	transient, transientID := registered(t)
	transient.DeliveryMode = amqp.Transient
	publish("user.registered", transient)
	stray, strayID := registered(t)
	publish("nobody.listens", stray)

	testenv.Eventually(t, 10*time.Second, func() error {
		if seen := tap.Seen(); seen["user.registered"] != 3 || seen["nobody.listens"] != 1 {
			return fmt.Errorf("the tap saw %v", seen)
		}
		return nil
	})
	reported := rec.end()
	want := map[uuid.UUID]string{extraID: "nickname", transientID: "delivery_mode", strayID: "no such event"}
	if len(reported) != len(want) || len(tap.Failures()) != len(want) {
		t.Fatalf("reported %q, failures %v; want one for each of the %d broken messages", reported, tap.Failures(), len(want))
	}
	for id, what := range want {
		found := false
		for _, r := range reported {
			found = found || strings.Contains(r, id.String()) && strings.Contains(r, what)
		}
		if !found {
			t.Errorf("no report names message %s and %q: %q", id, what, reported)
		}
	}
	for _, r := range reported {
		if strings.Contains(r, goodID.String()) {
			t.Errorf("the valid message was reported: %s", r)
		}
		if !strings.Contains(r, "routing key user.registered") && !strings.Contains(r, "routing key nobody.listens") {
			t.Errorf("report does not name the routing key: %s", r)
		}
	}
}

// TestTapGetsBackAClosedConnection: when every connection of its virtual
// host is closed, the tap reconnects and goes on checking, and the test
// passes.
func TestTapGetsBackAClosedConnection(t *testing.T) {
	t.Parallel()
	vhost := testenv.VHost(t)
	amqpURL := testenv.AMQPServerURL() + vhost
	rec := &recorder{TB: t}
	tap := testenv.ValidateEvents(rec, amqpURL)
	testenv.CloseConnections(t, vhost)
	publish := publisher(t, amqpURL)
	testenv.Eventually(t, 10*time.Second, func() error { // what is published before it is back goes unseen
		msg, _ := registered(t)
		publish("user.registered", msg)
		if tap.Seen()["user.registered"] == 0 {
			return fmt.Errorf("the tap saw nothing since its connection was closed")
		}
		return nil
	})
	if reported := rec.end(); len(reported) != 0 {
		t.Errorf("reported %q, want nothing", reported)
	}
}

// TestTapFailsWhenItLosesRabbitMQ: a tap that cannot get its connection
// back fails the test: the messages went unchecked.
func TestTapFailsWhenItLosesRabbitMQ(t *testing.T) {
	t.Parallel()
	vhost := testenv.VHost(t)
	rec := &recorder{TB: t}
	tap := testenv.ValidateEvents(rec, testenv.AMQPServerURL()+vhost)
	testenv.DeleteVHost(t, vhost) // closes the tap's connection; it cannot come back
	testenv.Eventually(t, 10*time.Second, func() error {
		if tap.Connected() {
			return fmt.Errorf("the tap has not noticed yet")
		}
		return nil
	})
	reported := rec.end()
	if len(reported) != 1 || !strings.Contains(reported[0], "lost its connection") {
		t.Errorf("reported %q, want that the tap lost its connection", reported)
	}
}
