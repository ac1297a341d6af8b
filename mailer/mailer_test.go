package mailer_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/internal/logctx"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/mailer"
)

func TestSMTPSendsThroughAServer(t *testing.T) {
	t.Parallel()
	srv := testenv.NewSMTPServer(t)
	m, err := mailer.NewSMTP(mailer.Config{Addr: srv.Addr, From: "shop <no-reply@shop.test>"})
	testenv.Must(t, err, "mailer")
	err = m.Send(context.Background(), app.Message{ID: "abc.welcome@shop", To: "ann@example.com", Subject: "Welcome", Body: "Hello Ann"})
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

// TestSMTPSaysWhetherARetryCanHelp: a send that failed is domain.ErrInvalid
// when no retry can help (the server refused it for good, a bad address)
// and domain.ErrUnavailable when a later one may (a 4xx, no server).
func TestSMTPSaysWhetherARetryCanHelp(t *testing.T) {
	t.Parallel()
	nobody := testenv.RefusedAddr(t)
	tests := []struct {
		name   string
		reject int    // the server's answer; 0: it takes the mail
		addr   string // "": the test server's
		to     string
		want   error
	}{
		{"a temporary refusal", 451, "", "ann@example.com", domain.ErrUnavailable},
		{"a permanent refusal", 550, "", "ann@example.com", domain.ErrInvalid},
		{"no server listening", 0, nobody, "ann@example.com", domain.ErrUnavailable},
		{"an address that is not one", 0, "", "not an address", domain.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := testenv.NewSMTPServer(t)
			srv.Reject(tt.reject)
			addr := srv.Addr
			if tt.addr != "" {
				addr = tt.addr
			}
			m, err := mailer.NewSMTP(mailer.Config{Addr: addr, Timeout: 2 * time.Second})
			testenv.Must(t, err, "mailer")
			err = m.Send(context.Background(), app.Message{ID: "x@shop", To: tt.to, Subject: "S", Body: "B"})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Send = %v, want %v", err, tt.want)
			}
			if len(srv.Mails()) != 0 {
				t.Error("the server kept a mail it refused")
			}
		})
	}
}

func TestSMTPConfigValidate(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"", "localhost", ":25", "host:port"} {
		if _, err := mailer.NewSMTP(mailer.Config{Addr: addr}); err == nil {
			t.Errorf("SMTP addr %q accepted", addr)
		}
	}
}

func TestLogLinesCarryTheEventsAttributes(t *testing.T) {
	t.Parallel()
	logs := &testenv.Logs{}
	m := mailer.Log{Logger: slog.New(slog.NewJSONHandler(logs, nil))}
	ctx := logctx.With(context.Background(), "event_id", "e-1")
	testenv.Must(t, m.Send(ctx, app.Message{ID: "e-1.welcome@shop", To: "ann@example.com", Subject: "Hi"}), "send")
	line, ok := logs.Line(t, "email")
	if !ok || line["event_id"] != "e-1" || line["to"] != "ann@example.com" || line["message_id"] != "e-1.welcome@shop" {
		t.Errorf("logged %v, want the email with the event's id", line)
	}
	if m.Transport() != "log" {
		t.Errorf("Transport() = %q", m.Transport())
	}
}
