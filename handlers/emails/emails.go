// Package emails is the emails consumer group: a welcome on
// user.registered, a note on order.confirmed, order.rejected and
// order.cancelled. Each email is sent, then recorded in the emails table in
// the transaction that also writes the event's inbox row, so it is recorded
// at most once per event even across crashes and replicas.
//
// Sending is at least once: the email goes out before that transaction
// commits. A process that dies after the SMTP server accepted the email and
// before the commit leaves neither the row nor the inbox row, so the
// redelivered event sends it again, with the same Message-ID (derived from
// the event), which lets mail clients drop the copy. The other order (commit,
// then send) would instead lose the email in that window; for a shop, a rare
// duplicate note is the better failure than a lost one.
package emails

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/wneessen/go-mail"

	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// Kinds of email, as recorded.
const (
	KindWelcome   = "welcome"
	KindConfirmed = "order_confirmed"
	KindRejected  = "order_rejected"
	KindCancelled = "order_cancelled"
)

// Handlers returns the group's handlers by routing key.
func Handlers(mailer Mailer) map[string]consumer.Handler {
	h := handlers{mailer: mailer}
	return map[string]consumer.Handler{
		user.EventRegistered: h.userRegistered,
		order.EventConfirmed: h.orderChanged(KindConfirmed),
		order.EventRejected:  h.orderChanged(KindRejected),
		order.EventCancelled: h.orderChanged(KindCancelled),
	}
}

type handlers struct{ mailer Mailer }

func (h handlers) userRegistered(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
	reg, err := consumer.Decode[user.Registered](e)
	if err != nil {
		return err
	}
	return h.send(ctx, tx, e, store.Email{
		Kind: KindWelcome, UserID: reg.UserID, Recipient: reg.Email,
		Subject: "Welcome to shop",
		Body:    fmt.Sprintf("Hello %s,\n\nyour account is ready. Happy shopping!\n", reg.Name),
	})
}

func (h handlers) orderChanged(kind string) consumer.Handler {
	return func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
		changed, err := consumer.Decode[order.StatusChanged](e)
		if err != nil {
			return err
		}
		u, err := tx.Users.ByID(ctx, changed.UserID)
		if err != nil {
			return fmt.Errorf("recipient of order %s: %w", changed.OrderID, err)
		}
		short := changed.OrderID.String()[:8]
		email := store.Email{Kind: kind, UserID: u.ID(), Recipient: u.Email()}
		switch kind {
		case KindConfirmed:
			email.Subject = "Your order " + short + " is confirmed"
			email.Body = fmt.Sprintf("Hello %s,\n\nyour order %s is confirmed: its items are reserved for you.\n", u.Name(), changed.OrderID)
		case KindRejected:
			email.Subject = "Your order " + short + " could not be served"
			email.Body = fmt.Sprintf("Hello %s,\n\nwe could not serve your order %s: %s.\n", u.Name(), changed.OrderID, changed.Reason)
		default:
			email.Subject = "Your order " + short + " is cancelled"
			email.Body = fmt.Sprintf("Hello %s,\n\nyour order %s is cancelled.\n", u.Name(), changed.OrderID)
		}
		return h.send(ctx, tx, e, email)
	}
}

// send sends the email, then queues its row; the caller's transaction
// commits it with the inbox row.
func (h handlers) send(ctx context.Context, tx *store.Tx, e outbox.Envelope, email store.Email) error {
	email.ID = uuid.Must(uuid.NewV7())
	email.EventID = e.ID
	email.Transport = h.mailer.Transport()
	err := h.mailer.Send(ctx, Message{
		ID: fmt.Sprintf("%s.%s@shop", e.ID, email.Kind), To: email.Recipient, Subject: email.Subject, Body: email.Body,
	})
	var sendErr *mail.SendError
	switch {
	case errors.Is(err, errBadRecipient), errors.As(err, &sendErr) && !sendErr.IsTemp():
		// The server refused it for good (5xx): the dead queue.
		return fmt.Errorf("send %s email: %w: %w", email.Kind, domain.ErrInvalid, err)
	case err != nil:
		// Unreachable or a temporary (4xx) refusal: wait and try again.
		return fmt.Errorf("send %s email: %w: %w", email.Kind, consumer.ErrUnavailable, err)
	}
	tx.Emails.Add(email)
	return nil
}
