package emails

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/wneessen/go-mail"

	"github.com/shopdev/shop/consumer"
)

// Message is one email to send.
type Message struct {
	ID      string // the Message-ID, derived from the event, the same on every attempt
	To      string
	Subject string
	Body    string
}

// Mailer sends emails.
type Mailer interface {
	Send(ctx context.Context, m Message) error
	// Transport names how emails leave: "smtp" or "log".
	Transport() string
}

// LogMailer "sends" an email by logging its recipient and subject: the
// default when no SMTP server is configured.
type LogMailer struct{ Log *slog.Logger }

// Send logs m, with the ids of the event being applied when ctx has them.
func (l LogMailer) Send(ctx context.Context, m Message) error {
	consumer.Logger(ctx, l.Log).Info("email", "message_id", m.ID, "to", m.To, "subject", m.Subject)
	return nil
}

// Transport returns "log".
func (LogMailer) Transport() string { return "log" }

// SMTPConfig configures an SMTPMailer.
type SMTPConfig struct {
	// Addr is the server's host:port. Required.
	Addr string
	// From is the sender. Default "shop <no-reply@shop.local>".
	From string
	// Username and Password authenticate (PLAIN/LOGIN, whichever the
	// server offers) when Username is set.
	Username, Password string
	// Timeout bounds one send. Default 10s.
	Timeout time.Duration
}

// Validate fills defaults and checks the configuration.
func (c *SMTPConfig) Validate() error {
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

// SMTPMailer sends emails through an SMTP server with go-mail, STARTTLS
// when the server offers it.
type SMTPMailer struct {
	cfg SMTPConfig
}

// NewSMTPMailer returns a mailer for cfg.
func NewSMTPMailer(cfg SMTPConfig) (*SMTPMailer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &SMTPMailer{cfg: cfg}, nil
}

// Transport returns "smtp".
func (*SMTPMailer) Transport() string { return "smtp" }

// Send delivers m on a connection of its own.
func (s *SMTPMailer) Send(ctx context.Context, m Message) error {
	host, portText, _ := net.SplitHostPort(s.cfg.Addr)
	port, _ := strconv.Atoi(portText)
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
		return fmt.Errorf("%w: recipient %q: %w", errBadRecipient, m.To, err)
	}
	msg.SetMessageIDWithValue(m.ID)
	msg.Subject(m.Subject)
	msg.SetBodyString(mail.TypeTextPlain, m.Body)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := client.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("smtp send: %w", err)
	}
	return nil
}

// errBadRecipient is an address no retry can fix.
var errBadRecipient = errors.New("bad recipient")
