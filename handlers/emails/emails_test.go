package emails_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/handlers/emails"
	"github.com/shopdev/shop/internal/retry"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/mailer"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// emailsGroup is the emails group running on a database and a vhost of its
// own, with what a test looks at.
type emailsGroup struct {
	pool    *pgxpool.Pool
	ch      *amqp.Channel
	broker  *outbox.Broker
	metrics *consumer.Metrics
}

// startGroup runs the emails group with mailer until the test ends; tune
// may change its configuration.
func startGroup(t *testing.T, mail app.Mailer, tune func(*consumer.Config)) *emailsGroup {
	t.Helper()
	url := testenv.AMQPURL(t)
	broker, err := outbox.NewBroker(outbox.BrokerConfig{URL: url, Topology: outbox.Topology{group.Route()}, Logger: quiet})
	testenv.Must(t, err, "broker")
	g := &emailsGroup{pool: testenv.Pool(t), broker: broker, metrics: consumer.NewMetrics(nil)}
	cfg := consumer.Config{Group: emails.Group(mail), Broker: broker,
		UnitOfWork: store.NewUnitOfWork(g.pool, nil), Metrics: g.metrics, Logger: quiet, MaxRetries: 5,
		Backoff: retry.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}}
	if tune != nil {
		tune(&cfg)
	}
	c, err := consumer.New(cfg)
	testenv.Must(t, err, "group")
	testenv.Run(t, c.Run)
	// Dial declares the topology, racing the group's own declaration in a
	// vhost this new: RabbitMQ may refuse one of them for a moment ("home
	// node of durable queue ... is down"), as a process would retry.
	var conn *amqp.Connection
	testenv.Eventually(t, 10*time.Second, func() (err error) {
		conn, err = broker.Dial()
		return err
	})
	t.Cleanup(func() { _ = conn.Close() })
	g.ch, err = conn.Channel()
	testenv.Must(t, err, "channel")
	return g
}

// smtpGroup runs the emails group with an SMTP mailer sending to addr.
func smtpGroup(t *testing.T, addr string, tune func(*consumer.Config)) *emailsGroup {
	t.Helper()
	m, err := mailer.NewSMTP(mailer.Config{Addr: addr, Timeout: 2 * time.Second})
	testenv.Must(t, err, "mailer")
	return startGroup(t, m, tune)
}

var (
	group = emails.Group(nil) // its name and keys
	quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
)

// rows counts the emails recorded.
func (g *emailsGroup) rows(t *testing.T) int {
	t.Helper()
	return testenv.Count(t, g.pool, `SELECT count(*) FROM emails`)
}

// handled is how many user.registered deliveries ended with outcome.
func (g *emailsGroup) handled(outcome string) int {
	return int(promtest.ToFloat64(g.metrics.Handled.WithLabelValues("emails", user.EventRegistered, outcome)))
}

// dead returns the messages in shop.emails.dead.
func (g *emailsGroup) dead(t *testing.T) []consumer.DeadMessage {
	t.Helper()
	dead, err := consumer.ListDead(context.Background(), g.broker, group.Route(), 0)
	testenv.Must(t, err, "list shop.emails.dead")
	return dead
}

// registerAndDeliver registers a user and publishes its user.registered to
// the emails queue, copies times; it returns the event. The registration
// is a request of its own: the event's correlation and causation ids are
// fresh, not its own id.
func (g *emailsGroup) registerAndDeliver(t *testing.T, email string, copies int) outbox.Envelope {
	t.Helper()
	request := outbox.WithMetadata(context.Background(), outbox.Metadata{CorrelationID: uuid.NewString(), CausationID: uuid.NewString()})
	err := store.NewUnitOfWork(g.pool, nil).Do(request, func(ctx context.Context, tx *store.Tx) error {
		_, err := app.Register(ctx, tx, app.RegisterUser{Email: email, Name: "Ann", PasswordHash: "x", Role: user.RoleCustomer}, time.Now())
		return err
	})
	testenv.Must(t, err, "register")
	var body []byte
	err = g.pool.QueryRow(context.Background(), `SELECT payload::text::bytea FROM outbox
		WHERE routing_key = 'user.registered' AND payload->'data'->>'email' = $1`, email).Scan(&body)
	testenv.Must(t, err, "read the event")
	var env outbox.Envelope
	testenv.Must(t, json.Unmarshal(body, &env), "decode the event")
	testenv.CheckEnvelopes(t, testenv.EventContract(t), env)
	for range copies {
		err = g.ch.PublishWithContext(context.Background(), "", "shop.emails", true, false, amqp.Publishing{
			ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: env.ID.String(), Type: env.Type, Body: body})
		testenv.Must(t, err, "publish")
	}
	return env
}

func TestWelcomeEmailIsSentAndRecordedOnce(t *testing.T) {
	t.Parallel()
	srv := testenv.NewSMTPServer(t)
	g := smtpGroup(t, srv.Addr, nil)
	g.registerAndDeliver(t, "ann@example.com", 2) // the duplicate sends nothing
	testenv.Eventually(t, 10*time.Second, func() error {
		if applied, duplicate := g.handled("applied"), g.handled("duplicate"); applied != 1 || duplicate != 1 {
			return fmt.Errorf("%d deliveries applied and %d skipped as duplicates, want 1 and 1", applied, duplicate)
		}
		return nil
	})
	// Both deliveries are done: nothing can send again.
	if n := g.rows(t); n != 1 {
		t.Errorf("%d emails recorded, want 1", n)
	}
	mails := srv.Mails()
	if len(mails) != 1 || mails[0].To[0] != "ann@example.com" || mails[0].Header.Get("Subject") != "Welcome to shop" {
		t.Fatalf("server received %+v, want one welcome to ann@example.com", mails)
	}
}

func TestSMTPOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		code     int // the server's answer until the test lifts it
		wantDead bool
	}{
		{"a temporary refusal waits and then sends", 451, false},
		{"a permanent refusal goes to the dead queue", 550, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := testenv.NewSMTPServer(t)
			srv.Reject(tt.code)
			g := smtpGroup(t, srv.Addr, nil)
			g.registerAndDeliver(t, "bob@example.com", 1)
			if tt.wantDead {
				testenv.Eventually(t, 10*time.Second, func() error {
					if dead := g.dead(t); len(dead) != 1 || !strings.Contains(dead[0].Reason, "550") {
						return fmt.Errorf("dead messages %+v, want the welcome with the 550", dead)
					}
					return nil
				})
				if n := g.rows(t); n != 0 {
					t.Errorf("%d emails recorded for a refused one", n)
				}
				return
			}
			// More refused attempts than the retries a failure gets, so a
			// refusal counted as a failure would be dead by now.
			const refusals = 1 + 5 + 1 // the first attempt, MaxRetries, one more
			testenv.Eventually(t, 10*time.Second, func() error {
				if n := g.handled("unavailable"); n < refusals {
					return fmt.Errorf("%d refused attempts, want %d", n, refusals)
				}
				return nil
			})
			if dead := g.dead(t); len(dead) != 0 {
				t.Fatalf("dead queue = %+v: a temporary refusal must not end there", dead)
			}
			srv.Reject(0)
			testenv.Eventually(t, 10*time.Second, func() error {
				if n := g.rows(t); n != 1 || len(srv.Mails()) != 1 {
					return fmt.Errorf("%d recorded, %d received; want 1 and 1", n, len(srv.Mails()))
				}
				return nil
			})
		})
	}
}

func TestARefusalLastingLongerThanUnavailableForGoesToTheDeadQueue(t *testing.T) {
	t.Parallel()
	srv := testenv.NewSMTPServer(t)
	srv.Reject(451)
	g := smtpGroup(t, srv.Addr, func(c *consumer.Config) {
		c.UnavailableFor = 300 * time.Millisecond
		c.Concurrency, c.Prefetch = 1, 1 // one slot: the second message gets it only when the first lets go
	})
	first := g.registerAndDeliver(t, "carol@example.com", 1)
	second := g.registerAndDeliver(t, "dave@example.com", 1)
	testenv.Eventually(t, 10*time.Second, func() error {
		if dead := g.dead(t); len(dead) != 2 {
			return fmt.Errorf("%d dead messages, want both welcomes", len(dead))
		}
		return nil
	})
	for _, d := range g.dead(t) {
		if d.ID != first.ID.String() && d.ID != second.ID.String() {
			t.Errorf("unexpected dead message %s", d.ID)
		}
		for _, want := range []string{"unavailable for", "smtp send", "451"} {
			if !strings.Contains(d.Reason, want) {
				t.Errorf("dead message %s: reason %q does not say %q", d.ID, d.Reason, want)
			}
		}
	}
	if n := g.rows(t); n != 0 {
		t.Errorf("%d emails recorded for refused ones", n)
	}
	// The server accepts again, and the group goes on with the next message.
	srv.Reject(0)
	g.registerAndDeliver(t, "erin@example.com", 1)
	testenv.Eventually(t, 10*time.Second, func() error {
		if n, mails := g.rows(t), srv.Mails(); n != 1 || len(mails) != 1 || mails[0].To[0] != "erin@example.com" {
			return fmt.Errorf("%d recorded, received %d; want erin's welcome, once", n, len(mails))
		}
		return nil
	})
}

func TestALoggedEmailCarriesTheEventsIDs(t *testing.T) {
	t.Parallel()
	logs := &testenv.Logs{}
	g := startGroup(t, mailer.Log{Logger: slog.New(slog.NewJSONHandler(logs, nil))}, nil)
	env := g.registerAndDeliver(t, "fay@example.com", 1)
	var line map[string]any
	testenv.Eventually(t, 10*time.Second, func() error {
		var ok bool
		if line, ok = logs.Line(t, "email"); !ok {
			return errors.New("no email logged")
		}
		return nil
	})
	for key, want := range map[string]string{
		"to": "fay@example.com", "event_id": env.ID.String(), "event_type": user.EventRegistered,
		"correlation_id": env.CorrelationID, "causation_id": env.CausationID,
	} {
		if line[key] != want {
			t.Errorf("email line: %s = %v, want %q", key, line[key], want)
		}
	}
}

func TestABatchSendsEveryMailOnceWhenTheServerRefusesOne(t *testing.T) {
	t.Parallel()
	srv := testenv.NewSMTPServer(t)
	srv.RejectTo("bad@example.com", 550)
	// The held send must outlast the hold, however slow the machine: a
	// send that timed out is retried, and its mail would arrive twice.
	m, err := mailer.NewSMTP(mailer.Config{Addr: srv.Addr, Timeout: time.Minute})
	testenv.Must(t, err, "mailer")
	g := startGroup(t, m, func(c *consumer.Config) {
		c.Batch, c.Committers, c.Concurrency = 16, 1, 8
	})
	// The first welcome holds the one committer at the server, so the
	// deliveries that come meanwhile wait for it and form one batch.
	release := srv.Hold()
	g.registerAndDeliver(t, "first@example.com", 1)
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := srv.Arrivals(); n != 1 {
			return fmt.Errorf("%d messages at the server, want the first", n)
		}
		return nil
	})
	good := []string{"a@example.com", "b@example.com", "c@example.com", "d@example.com", "e@example.com"}
	for _, to := range good {
		g.registerAndDeliver(t, to, 1)
	}
	bad := g.registerAndDeliver(t, "bad@example.com", 1) // last: the others were sent when it fails
	g.waitInHand(t)
	release()

	testenv.Eventually(t, 10*time.Second, func() error {
		if dead := g.dead(t); len(dead) != 1 || dead[0].ID != bad.ID.String() || !strings.Contains(dead[0].Reason, "550") {
			return fmt.Errorf("dead messages %+v, want bad@example.com's welcome with the 550", dead)
		}
		if n := g.rows(t); n != 1+len(good) {
			return fmt.Errorf("%d emails recorded, want %d", n, 1+len(good))
		}
		return nil
	})
	received := map[string]int{}
	for _, m := range srv.Mails() {
		received[m.To[0]]++
	}
	for _, to := range append(good, "first@example.com") {
		if received[to] != 1 {
			t.Errorf("%s received %d welcomes, want 1", to, received[to])
		}
	}
	if received["bad@example.com"] != 0 {
		t.Errorf("the refused address received %d welcomes", received["bad@example.com"])
	}
	if n := testenv.Count(t, g.pool, `SELECT count(*) FROM inbox WHERE consumer = 'emails' AND event_id = $1`, bad.ID); n != 0 {
		t.Errorf("the refused welcome left %d inbox rows, want none", n)
	}
	if count, events := g.batches(t); count == 0 || events < float64(count)+1 {
		t.Errorf("%d committed batches held %.0f deliveries: the refused welcome shared no batch", count, events)
	}
}

// waitInHand waits until the group holds every message published to its
// queue: none is ready for delivery any more.
func (g *emailsGroup) waitInHand(t *testing.T) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		q, err := g.ch.QueueDeclarePassive(group.Route().Queue(), true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum})
		if err != nil {
			return err
		}
		if q.Messages != 0 {
			return fmt.Errorf("%d messages ready", q.Messages)
		}
		return nil
	})
}

// batches returns how many batches of more than one delivery the group
// committed, and how many deliveries they held.
func (g *emailsGroup) batches(t *testing.T) (count uint64, events float64) {
	t.Helper()
	var out dto.Metric
	testenv.Must(t, g.metrics.Batch.WithLabelValues("emails", "committed").(prometheus.Histogram).Write(&out), "read the batch histogram")
	return out.GetHistogram().GetSampleCount(), out.GetHistogram().GetSampleSum()
}
