// Package emails is the emails consumer group's adapter: it turns
// user.registered into app.SendWelcome and order.confirmed, order.rejected
// and order.cancelled into app.SendOrderNote.
package emails

import (
	"context"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// Group is the emails group, sending with mailer. It never batches: a
// batch that fails is applied again one delivery at a time, and the mail
// its handlers sent would go out twice.
func Group(mailer app.Mailer) consumer.Group {
	note := func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
		changed, err := consumer.Decode[order.StatusChanged](e)
		if err != nil {
			return err
		}
		return app.SendOrderNote(ctx, tx, mailer, e.ID, changed)
	}
	return consumer.Group{
		Name:  "emails",
		About: "sends the welcome email and a note when an order is confirmed, rejected or cancelled",
		Keys:  []string{user.EventRegistered, order.EventConfirmed, order.EventRejected, order.EventCancelled},
		Handlers: map[string]consumer.Handler{
			user.EventRegistered: func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
				registered, err := consumer.Decode[user.Registered](e)
				if err != nil {
					return err
				}
				return app.SendWelcome(ctx, tx, mailer, e.ID, registered)
			},
			order.EventConfirmed: note,
			order.EventRejected:  note,
			order.EventCancelled: note,
		},
		Prefetch: map[string]consumer.Prefetch{
			order.EventConfirmed: recipients,
			order.EventRejected:  recipients,
			order.EventCancelled: recipients,
		},
	}
}

// recipients reads the recipients of order notes with the inbox claim.
func recipients(ctx context.Context, tx *store.Tx, events []outbox.Envelope) error {
	changed, err := consumer.DecodeEach[order.StatusChanged](events)
	if err != nil {
		return err
	}
	return app.LoadRecipients(ctx, tx, changed)
}
