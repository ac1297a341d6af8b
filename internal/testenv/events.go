package testenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/api"
	"github.com/shopdev/shop/internal/retry"
	"github.com/shopdev/shop/outbox"
)

// How long a tap waits, when its test ends, for the messages in flight:
// until none came for tapQuiet, at most tapDrain. By then the test's
// processes are stopped (their cleanups ran first), so what is still
// coming is what the broker had already routed.
const (
	tapQuiet = 300 * time.Millisecond
	tapDrain = 5 * time.Second
)

// tapReports is how many broken messages a tap reports one by one; the
// rest it counts, so that a contract broken for every message does not
// bury the test's output.
const tapReports = 20

// Tap validates every message published to shop.events on one virtual host
// against the event stream's contract, api/asyncapi.yaml: body, AMQP
// properties and headers. Each message that breaks it fails the test, with
// its routing key, its message id and what is wrong.
type Tap struct {
	t       testing.TB
	url     string
	schemas *api.EventSchemas
	stop    chan struct{}
	done    chan struct{}

	mu       sync.Mutex
	seen     map[string]int // routing key → messages checked
	failures []error
	last     time.Time // when the last message was checked
	conn     *amqp.Connection
	closed   chan *amqp.Error // conn's close notification
	lost     error            // why the tap is not connected; nil while it is
}

// ValidateEvents starts a tap on the virtual host of amqpURL: it declares
// the exchange shop.events (as the topology does, so whoever comes first
// declares the same) and an exclusive queue of its own bound to every
// routing key, and checks each message that reaches it until t ends. Call
// it right after the virtual host is made, before anything publishes:
// what is published before it binds is not seen. When t ends it waits for
// the messages in flight, then fails t if it lost its connection and could
// not get it back (a lost connection is retried, as a test may close every
// connection of its virtual host). Only for tests whose messages on
// shop.events are all meant to be valid, and that do not count on a
// message coming back unroutable: the tap's binding routes every key.
func ValidateEvents(t testing.TB, amqpURL string) *Tap {
	t.Helper()
	schemas, err := api.LoadEventSchemas()
	Must(t, err, "load the event contract")
	tap := &Tap{t: t, url: amqpURL, schemas: schemas, stop: make(chan struct{}), done: make(chan struct{}),
		seen: map[string]int{}, last: time.Now()}
	deliveries, err := tap.connect()
	Must(t, err, "start the event tap")
	go tap.run(deliveries)
	t.Cleanup(tap.close)
	return tap
}

// connect opens a connection and a queue bound to every routing key of
// shop.events, and consumes it.
func (tap *Tap) connect() (<-chan amqp.Delivery, error) {
	conn, err := amqp.Dial(tap.url)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", tap.url, err)
	}
	deliveries, err := tap.subscribe(conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	tap.mu.Lock()
	tap.conn, tap.closed, tap.lost = conn, conn.NotifyClose(make(chan *amqp.Error, 1)), nil
	tap.mu.Unlock()
	return deliveries, nil
}

func (tap *Tap) subscribe(conn *amqp.Connection) (<-chan amqp.Delivery, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	// An empty topology declares the exchange alone, with the arguments
	// every process declares it with: RabbitMQ refuses a declaration that
	// differs (PRECONDITION_FAILED).
	if err := (outbox.Topology{}).Declare(ch); err != nil {
		return nil, err
	}
	// Server-named, exclusive, auto-deleted: the tap's own, gone with its
	// connection, and never seen by shop's groups.
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return nil, fmt.Errorf("declare tap queue: %w", err)
	}
	if err := ch.QueueBind(q.Name, "#", outbox.Exchange, false, nil); err != nil {
		return nil, fmt.Errorf("bind tap queue: %w", err)
	}
	deliveries, err := ch.Consume(q.Name, "event-tap", true, true, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("consume tap queue: %w", err)
	}
	return deliveries, nil
}

// run checks deliveries until stopped, reconnecting when the connection is
// lost.
func (tap *Tap) run(deliveries <-chan amqp.Delivery) {
	defer close(tap.done)
	defer func() {
		tap.mu.Lock()
		defer tap.mu.Unlock()
		if tap.conn != nil {
			_ = tap.conn.Close()
		}
	}()
	backoff := retry.Backoff{Min: 50 * time.Millisecond, Max: time.Second}
	for {
		for open := true; open; {
			select {
			case <-tap.stop:
				return
			case d, ok := <-deliveries:
				if open = ok; ok {
					tap.check(d)
				}
			}
		}
		tap.mu.Lock()
		closed := tap.closed
		tap.mu.Unlock()
		reason := closeReason(closed)
		tap.mu.Lock()
		tap.lost = reason
		tap.mu.Unlock()
		for attempt := 0; ; attempt++ {
			select {
			case <-tap.stop:
				return
			case <-time.After(backoff.Delay(attempt)):
			}
			var err error
			if deliveries, err = tap.connect(); err == nil {
				break
			}
			tap.mu.Lock()
			tap.lost = err
			tap.mu.Unlock()
		}
	}
}

// closeReason says why a connection whose deliveries stopped closed, as
// its close notification tells (it comes right after the deliveries end).
func closeReason(closed <-chan *amqp.Error) error {
	select {
	case err, ok := <-closed:
		if ok && err != nil {
			return fmt.Errorf("connection closed: %w", err)
		}
	case <-time.After(time.Second):
		return errors.New("its channel closed")
	}
	return errors.New("connection closed")
}

// check validates one delivery and records the verdict.
func (tap *Tap) check(d amqp.Delivery) {
	err := tap.schemas.ValidateDelivery(d.RoutingKey, api.Delivery{
		ContentType: d.ContentType, ContentEncoding: d.ContentEncoding, DeliveryMode: d.DeliveryMode, MessageID: d.MessageId, Type: d.Type,
		Timestamp: d.Timestamp, CorrelationID: d.CorrelationId, AppID: d.AppId, Headers: d.Headers,
	}, d.Body)
	if err != nil {
		err = fmt.Errorf("message %s (routing key %s) breaks api/asyncapi.yaml: %w", d.MessageId, d.RoutingKey, err)
	}
	tap.mu.Lock()
	tap.seen[d.RoutingKey]++
	tap.last = time.Now()
	if err != nil {
		tap.failures = append(tap.failures, err)
	}
	report := err != nil && len(tap.failures) <= tapReports
	tap.mu.Unlock()
	if report {
		tap.t.Errorf("event tap: %v", err)
	}
}

// close waits for the messages in flight, stops the tap, and fails the
// test if the tap ended without a connection.
func (tap *Tap) close() {
	deadline := time.Now().Add(tapDrain)
	for time.Now().Before(deadline) {
		tap.mu.Lock()
		quiet := time.Since(tap.last) >= tapQuiet
		tap.mu.Unlock()
		if quiet {
			break
		}
		time.Sleep(tapQuiet / 6)
	}
	close(tap.stop)
	<-tap.done
	tap.mu.Lock()
	lost, failures := tap.lost, len(tap.failures)
	tap.mu.Unlock()
	if failures > tapReports {
		tap.t.Errorf("event tap: %d more messages broke api/asyncapi.yaml", failures-tapReports)
	}
	if lost != nil {
		tap.t.Errorf("event tap: lost its connection to RabbitMQ and could not get it back, so messages went unchecked: %v", lost)
	}
}

// Connected reports whether the tap holds a connection now.
func (tap *Tap) Connected() bool {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	return tap.lost == nil
}

// Seen returns how many messages the tap checked so far, per routing key.
func (tap *Tap) Seen() map[string]int {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	return maps.Clone(tap.seen)
}

// Failures returns the messages that broke the contract so far, each
// error naming its message id and routing key.
func (tap *Tap) Failures() []error {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	return slices.Clone(tap.failures)
}

// WaitSeen waits until the tap checked at least one message of each of
// keys, and fails t if that does not happen within timeout.
func (tap *Tap) WaitSeen(t testing.TB, timeout time.Duration, keys ...string) {
	t.Helper()
	Eventually(t, timeout, func() error {
		seen := tap.Seen()
		var missing []string
		for _, k := range keys {
			if seen[k] == 0 {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("the event tap saw no %v (it saw %v)", missing, seen)
		}
		return nil
	})
}

// EventContract returns the compiled contract of every event, for tests
// that check events they deliver without the relay (CheckEnvelopes).
func EventContract(t testing.TB) *api.EventSchemas {
	t.Helper()
	schemas, err := api.LoadEventSchemas()
	Must(t, err, "load the event contract")
	return schemas
}

// CheckEnvelopes fails t for each envelope, as the outbox holds it, that
// breaks the contract of its type.
func CheckEnvelopes(t testing.TB, schemas *api.EventSchemas, envs ...outbox.Envelope) {
	t.Helper()
	for _, env := range envs {
		body, err := json.Marshal(env)
		Must(t, err, "encode envelope")
		if err := schemas.Validate(env.Type, body); err != nil {
			t.Errorf("event %s breaks api/asyncapi.yaml: %v", env.ID, err)
		}
	}
}
