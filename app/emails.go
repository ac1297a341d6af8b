package app

import (
	"context"
	"fmt"
	"sync"

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
// a server unreachable or answering 4xx is domain.ErrUnavailable. Send is
// called from several goroutines at once (SendEach).
type Mailer interface {
	Send(ctx context.Context, m Message) error
	// Transport names how emails leave: "smtp" or "log".
	Transport() string
}

// Mail is an email to send for an event (EventID): Ctx is the context of
// the event's delivery, with its log attributes and its trace.
type Mail struct {
	Ctx     context.Context
	EventID uuid.UUID
	Email   store.Email
}

// sendsAtOnce bounds the sends of one SendEach: as many as the emails
// group handled at once before its deliveries were batched (its default
// concurrency), so an SMTP server sees no more connections than it did.
const sendsAtOnce = 4

// Welcome is the welcome email of a user who registered.
func Welcome(reg user.Registered) store.Email {
	return store.Email{
		Kind: KindWelcome, UserID: reg.UserID, Recipient: reg.Email,
		Subject: "Welcome to shop",
		Body:    fmt.Sprintf("Hello %s,\n\nyour account is ready. Happy shopping!\n", reg.Name),
	}
}

// LoadRecipients reads the recipients of the notes about changed orders,
// in one round trip with whatever the transaction has queued (the inbox
// claim): OrderNote then finds each without reading it.
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

// OrderNote is the note that tells a customer that an order was
// confirmed, rejected (and why) or cancelled, its recipient read in tx.
func OrderNote(ctx context.Context, tx *store.Tx, changed order.StatusChanged) (store.Email, error) {
	u, err := tx.Users.ByID(ctx, changed.UserID)
	if err != nil {
		return store.Email{}, fmt.Errorf("recipient of order %s: %w", changed.OrderID, err)
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
		return store.Email{}, fmt.Errorf("%w: no note for an order that became %q", domain.ErrInvalid, changed.Status)
	}
	return email, nil
}

// SendEach sends mails, up to sendsAtOnce at a time, then queues in tx the
// row of each one the server took; it returns each mail's error, and
// writes nothing for a mail that failed.
//
// Every email is sent, then recorded in tx, the transaction that also
// writes the event's inbox row: it is recorded at most once per event, even
// across crashes and replicas, and sent at least once: a process that dies
// after the server took the email and before the commit sends it again when
// the event comes again, with the same Message-ID, which lets mail clients
// drop the copy. The other order (commit, then send) would lose the email
// in that window; a rare duplicate note is the better failure.
func SendEach(tx *store.Tx, mailer Mailer, mails []Mail) []error {
	errs := make([]error, len(mails))
	send := func(i int) {
		m := &mails[i]
		m.Email.ID, m.Email.EventID, m.Email.Transport = newID(), m.EventID, mailer.Transport()
		err := mailer.Send(m.Ctx, Message{
			ID: fmt.Sprintf("%s.%s@shop", m.EventID, m.Email.Kind), To: m.Email.Recipient, Subject: m.Email.Subject, Body: m.Email.Body,
		})
		if err != nil {
			errs[i] = fmt.Errorf("send %s email: %w", m.Email.Kind, err)
		}
	}
	if len(mails) == 1 {
		send(0)
	} else {
		var wg sync.WaitGroup
		slots := make(chan struct{}, sendsAtOnce)
		for i := range mails {
			slots <- struct{}{}
			wg.Go(func() { defer func() { <-slots }(); send(i) })
		}
		wg.Wait()
	}
	for i, m := range mails {
		if errs[i] == nil {
			tx.Emails.Add(m.Email)
		}
	}
	return errs
}
