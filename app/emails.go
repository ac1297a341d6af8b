package app

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/store"
)

// Kinds of email, as recorded.
const (
	KindWelcome   = "welcome"
	KindConfirmed = "order_confirmed"
	KindRejected  = "order_rejected"
	KindCancelled = "order_cancelled"
)

// Message is one email to send.
type Message struct {
	ID      string // the Message-ID, derived from the event: the same on every attempt
	To      string
	Subject string
	Body    string
}

// Mailer sends emails (package mailer: through SMTP, or to the log). A
// refusal that no retry can fix (a bad address, a 5xx) is domain.ErrInvalid;
// a server unreachable or answering 4xx is domain.ErrUnavailable.
type Mailer interface {
	Send(ctx context.Context, m Message) error
	// Transport names how emails leave: "smtp" or "log".
	Transport() string
}

// SendWelcome welcomes a user who registered (user.registered, event id
// eventID).
//
// Every email is sent, then recorded in tx, the transaction that also
// writes the event's inbox row: it is recorded at most once per event, even
// across crashes and replicas, and sent at least once: a process that dies
// after the server took the email and before the commit sends it again when
// the event comes again, with the same Message-ID, which lets mail clients
// drop the copy. The other order (commit, then send) would lose the email
// in that window; a rare duplicate note is the better failure.
func SendWelcome(ctx context.Context, tx *store.Tx, mailer Mailer, eventID uuid.UUID, reg user.Registered) error {
	return send(ctx, tx, mailer, eventID, store.Email{
		Kind: KindWelcome, UserID: reg.UserID, Recipient: reg.Email,
		Subject: "Welcome to shop",
		Body:    fmt.Sprintf("Hello %s,\n\nyour account is ready. Happy shopping!\n", reg.Name),
	})
}

// LoadRecipients reads the recipients of the notes about changed orders,
// in one round trip with whatever the transaction has queued (the inbox
// claim): SendOrderNote then finds each without reading it.
func LoadRecipients(ctx context.Context, tx *store.Tx, changed []order.StatusChanged) error {
	ids := make([]uuid.UUID, len(changed))
	for i, c := range changed {
		ids[i] = c.UserID
	}
	if _, err := tx.Users.ReadMany(ctx, ids); err != nil {
		return fmt.Errorf("recipients of %d orders: %w", len(changed), err)
	}
	return nil
}

// SendOrderNote tells a customer that an order was confirmed, rejected (and
// why) or cancelled (order.confirmed, order.rejected, order.cancelled; event
// id eventID). It is sent and recorded as SendWelcome's.
func SendOrderNote(ctx context.Context, tx *store.Tx, mailer Mailer, eventID uuid.UUID, changed order.StatusChanged) error {
	u, err := tx.Users.ByID(ctx, changed.UserID)
	if err != nil {
		return fmt.Errorf("recipient of order %s: %w", changed.OrderID, err)
	}
	short := changed.OrderID.String()[:8]
	email := store.Email{UserID: u.ID(), Recipient: u.Email()}
	switch changed.Status {
	case order.StatusConfirmed:
		email.Kind, email.Subject = KindConfirmed, "Your order "+short+" is confirmed"
		email.Body = fmt.Sprintf("Hello %s,\n\nyour order %s is confirmed: its items are reserved for you.\n", u.Name(), changed.OrderID)
	case order.StatusRejected:
		email.Kind, email.Subject = KindRejected, "Your order "+short+" could not be served"
		email.Body = fmt.Sprintf("Hello %s,\n\nwe could not serve your order %s: %s.\n", u.Name(), changed.OrderID, changed.Reason)
	case order.StatusCancelled:
		email.Kind, email.Subject = KindCancelled, "Your order "+short+" is cancelled"
		email.Body = fmt.Sprintf("Hello %s,\n\nyour order %s is cancelled.\n", u.Name(), changed.OrderID)
	default:
		return fmt.Errorf("%w: no note for an order that became %q", domain.ErrInvalid, changed.Status)
	}
	return send(ctx, tx, mailer, eventID, email)
}

// send sends the email, then queues its row; the caller's transaction
// commits it with the inbox row.
func send(ctx context.Context, tx *store.Tx, mailer Mailer, eventID uuid.UUID, email store.Email) error {
	email.ID, email.EventID, email.Transport = newID(), eventID, mailer.Transport()
	err := mailer.Send(ctx, Message{
		ID: fmt.Sprintf("%s.%s@shop", eventID, email.Kind), To: email.Recipient, Subject: email.Subject, Body: email.Body,
	})
	if err != nil {
		return fmt.Errorf("send %s email: %w", email.Kind, err)
	}
	tx.Emails.Add(email)
	return nil
}
