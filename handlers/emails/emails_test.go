package emails_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/handlers/consumer"
	"github.com/shopdev/shop/handlers/emails"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

func TestSMTPMailerSendsThroughAServer(t *testing.T) {
	t.Parallel()
	srv := testenv.NewSMTPServer(t)
	m, err := emails.NewSMTPMailer(emails.SMTPConfig{Addr: srv.Addr, From: "shop <no-reply@shop.test>"})
	testenv.Must(t, err, "mailer")
	err = m.Send(context.Background(), emails.Message{ID: "abc.welcome@shop", To: "ann@example.com", Subject: "Welcome", Body: "Hello Ann"})
	testenv.Must(t, err, "send")
	mails := srv.Mails()
	if len(mails) != 1 {
		t.Fatalf("server received %d mails, want 1", len(mails))
	}
	got := mails[0]
	for what, pair := range map[string][2]string{
		"envelope from": {got.From, "no-reply@shop.test"},
		"recipient":     {strings.Join(got.To, ","), "ann@example.com"},
		"Message-ID":    {got.Header.Get("Message-Id"), "<abc.welcome@shop>"},
		"Subject":       {got.Header.Get("Subject"), "Welcome"},
	} {
		if pair[0] != pair[1] {
			t.Errorf("%s = %q, want %q", what, pair[0], pair[1])
		}
	}
	if !strings.Contains(got.Body, "Hello Ann") {
		t.Errorf("body = %q", got.Body)
	}
}

func TestSMTPConfigValidate(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"", "localhost", ":25", "host:port"} {
		if _, err := emails.NewSMTPMailer(emails.SMTPConfig{Addr: addr}); err == nil {
			t.Errorf("SMTP addr %q accepted", addr)
		}
	}
}

// group runs the emails group with an SMTP mailer on its own database and
// vhost, and returns what a test needs.
func group(t *testing.T, smtpAddr string) (*pgxpool.Pool, *amqp.Channel, string, func() int) {
	t.Helper()
	pool := testenv.Pool(t)
	amqpURL := testenv.AMQPURL(t)
	mailer, err := emails.NewSMTPMailer(emails.SMTPConfig{Addr: smtpAddr, Timeout: 2 * time.Second})
	testenv.Must(t, err, "mailer")
	var g outbox.Group
	for _, x := range outbox.Groups() {
		if x.Name == "emails" {
			g = x
		}
	}
	uow := store.NewUnitOfWork(pool, nil)
	c, err := consumer.New(consumer.Config{Group: g, Handlers: emails.Handlers(mailer), AMQPURL: amqpURL, UnitOfWork: uow,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	testenv.Must(t, err, "group")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	conn, err := amqp.Dial(amqpURL)
	testenv.Must(t, err, "dial")
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	testenv.Must(t, err, "channel")
	testenv.Must(t, outbox.Declare(ch), "declare")
	emailRows := func() int { return testenv.Count(t, pool, `SELECT count(*) FROM emails WHERE transport = 'smtp'`) }
	return pool, ch, amqpURL, emailRows
}

// registerAndDeliver registers a user and publishes its user.registered to
// the emails queue, copies times.
func registerAndDeliver(t *testing.T, pool *pgxpool.Pool, ch *amqp.Channel, email string, copies int) {
	t.Helper()
	err := store.NewUnitOfWork(pool, nil).Do(context.Background(), func(ctx context.Context, tx *store.Tx) error {
		_, err := app.Register(ctx, tx, app.RegisterUser{Email: email, Name: "Ann", PasswordHash: "x", Role: user.RoleCustomer}, time.Now())
		return err
	})
	testenv.Must(t, err, "register")
	var body []byte
	err = pool.QueryRow(context.Background(), `SELECT payload::text::bytea FROM outbox WHERE routing_key = 'user.registered'`).Scan(&body)
	testenv.Must(t, err, "read the event")
	var env outbox.Envelope
	testenv.Must(t, json.Unmarshal(body, &env), "decode the event")
	for range copies {
		err = ch.PublishWithContext(context.Background(), "", "shop.emails", true, false, amqp.Publishing{
			ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: env.ID.String(), Type: env.Type, Body: body})
		testenv.Must(t, err, "publish")
	}
}

func TestWelcomeEmailIsSentAndRecordedOnce(t *testing.T) {
	t.Parallel()
	srv := testenv.NewSMTPServer(t)
	pool, ch, _, rows := group(t, srv.Addr)
	registerAndDeliver(t, pool, ch, "ann@example.com", 2) // the duplicate sends nothing
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := rows(); n != 1 {
			return fmt.Errorf("%d emails recorded, want 1", n)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // room for a wrong second send
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
			pool, ch, amqpURL, rows := group(t, srv.Addr)
			registerAndDeliver(t, pool, ch, "bob@example.com", 1)
			emailsGroup := outbox.Group{Name: "emails"}
			if tt.wantDead {
				testenv.Eventually(t, 10*time.Second, func() error {
					dead, err := consumer.ListDead(context.Background(), amqpURL, emailsGroup, 0)
					if err != nil {
						return err
					}
					if len(dead) != 1 || !strings.Contains(dead[0].Reason, "550") {
						return fmt.Errorf("dead messages %+v, want the welcome with the 550", dead)
					}
					return nil
				})
				if n := rows(); n != 0 {
					t.Errorf("%d emails recorded for a refused one", n)
				}
				return
			}
			time.Sleep(time.Second) // far more than the retries would take
			if dead, err := consumer.ListDead(context.Background(), amqpURL, emailsGroup, 0); err != nil || len(dead) != 0 {
				t.Fatalf("dead queue = %+v, %v: a temporary refusal must not end there", dead, err)
			}
			srv.Reject(0)
			testenv.Eventually(t, 10*time.Second, func() error {
				if n := rows(); n != 1 || len(srv.Mails()) != 1 {
					return fmt.Errorf("%d recorded, %d received; want 1 and 1", n, len(srv.Mails()))
				}
				return nil
			})
		})
	}
}
