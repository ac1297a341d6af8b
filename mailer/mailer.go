// Package mailer sends shop's emails: through an SMTP server with go-mail
// (SMTP), or, when no server is configured, to the log (Log). It says how a
// send failed in the domain's terms: a refusal no retry can fix is
// domain.ErrInvalid, a server unreachable or refusing for now is
// domain.ErrUnavailable.
package mailer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/wneessen/go-mail"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/internal/logctx"
)

// Log "sends" an email by logging its recipient and subject: the default
// when no SMTP server is configured.
type Log struct{ Logger *slog.Logger }

// Send logs m, with the ids of the event being applied when ctx has them.
func (l Log) Send(ctx context.Context, m app.Message) error {
	logctx.Logger(ctx, l.Logger).Info("email", "message_id", m.ID, "to", m.To, "subject", m.Subject)
	return nil
}

// Transport returns "log".
func (Log) Transport() string { return "log" }

// Config configures an SMTP mailer.
type Config struct {
	// Addr is the server's host:port. Required.
	Addr string
	// From is the sender. Default "shop <no-reply@shop.local>".
	From string
	// Username and Password authenticate (PLAIN/LOGIN, whichever the
	// server offers) when Username is set.
	Username, Password string
	// Timeout bounds one send. Default 10s.
	Timeout time.Duration
	// Tracing records a client span per send, inside the caller's span.
	// nil: none.
	Tracing trace.TracerProvider
}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil || host == "" {
		return fmt.Errorf("smtp addr %q: want host:port", c.Addr)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return fmt.Errorf("smtp addr %q: bad port", c.Addr)
	}
	if c.From == "" {
		c.From = "shop <no-reply@shop.local>"
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	return nil
}

// SMTP sends emails through an SMTP server, STARTTLS when the server offers
// it.
type SMTP struct {
	cfg    Config
	tracer trace.Tracer // nil: tracing off
}

// NewSMTP returns an SMTP mailer for cfg.
func NewSMTP(cfg Config) (*SMTP, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &SMTP{cfg: cfg}
	if cfg.Tracing != nil {
		s.tracer = cfg.Tracing.Tracer("github.com/shopdev/shop/mailer")
	}
	return s, nil
}

// Transport returns "smtp".
func (*SMTP) Transport() string { return "smtp" }

// Send delivers m on a connection of its own.
func (s *SMTP) Send(ctx context.Context, m app.Message) (err error) {
	host, portText, _ := net.SplitHostPort(s.cfg.Addr)
	port, _ := strconv.Atoi(portText)
	if s.tracer != nil && trace.SpanFromContext(ctx).IsRecording() {
		var span trace.Span
		ctx, span = s.tracer.Start(ctx, "smtp send", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(semconv.ServerAddress(host), semconv.ServerPort(port)))
		defer func() {
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}()
	}
	opts := []mail.Option{mail.WithTLSPolicy(mail.TLSOpportunistic), mail.WithPort(port), mail.WithTimeout(s.cfg.Timeout)}
	if s.cfg.Username != "" {
		opts = append(opts, mail.WithUsername(s.cfg.Username), mail.WithPassword(s.cfg.Password),
			mail.WithOpportunisticSMTPAuth(mail.SMTPAuthPlain, mail.SMTPAuthLogin))
	}
	client, err := mail.NewClient(host, opts...)
	if err != nil {
		return fmt.Errorf("smtp client: %w", err)
	}
	msg := mail.NewMsg()
	if err := msg.From(s.cfg.From); err != nil {
		return fmt.Errorf("smtp from: %w", err)
	}
	if err := msg.To(m.To); err != nil {
		return fmt.Errorf("%w: recipient %q: %w", domain.ErrInvalid, m.To, err)
	}
	msg.SetMessageIDWithValue(m.ID)
	msg.Subject(m.Subject)
	msg.SetBodyString(mail.TypeTextPlain, m.Body)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	err = client.DialAndSendWithContext(ctx, msg)
	var sendErr *mail.SendError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &sendErr) && !sendErr.IsTemp():
		// The server refused it for good (5xx): no retry can help.
		return fmt.Errorf("%w: smtp send: %w", domain.ErrInvalid, err)
	default:
		// Unreachable, or a temporary (4xx) refusal: try again later.
		return fmt.Errorf("%w: smtp send: %w", domain.ErrUnavailable, err)
	}
}
