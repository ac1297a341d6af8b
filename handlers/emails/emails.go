// Package emails is the emails consumer group's adapter: it turns
// user.registered into app.Welcome and order.confirmed, order.rejected and
// order.cancelled into app.OrderNote, and sends them with app.SendEach.
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

// Group is the emails group, sending with mailer. It batches: the mail
// of a batch's events goes out together (app.SendEach), and an event whose
// mail failed is taken out of the batch alone, so that no other event's
// mail is sent twice.
func Group(mailer app.Mailer) consumer.Group {
	each := func(tx *store.Tx, events []consumer.Event) []error {
		errs := make([]error, len(events))
		mails := make([]app.Mail, 0, len(events))
		var of []int // the event of each mail
		for i, e := range events {
			email, err := compose(e.Ctx, tx, e.Env)
			if err != nil {
				errs[i] = err
				continue
			}
			mails = append(mails, app.Mail{Ctx: e.Ctx, EventID: e.Env.ID, Email: email})
			of = append(of, i)
		}
		for k, err := range app.SendEach(tx, mailer, mails) {
			errs[of[k]] = err
		}
		return errs
	}
	alone := func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
		return each(tx, []consumer.Event{{Ctx: ctx, Env: e}})[0]
	}
	return consumer.Group{
		Name:  "emails",
		About: "sends the welcome email and a note when an order is confirmed, rejected or cancelled",
		Keys:  []string{user.EventRegistered, order.EventConfirmed, order.EventRejected, order.EventCancelled},
		Handlers: map[string]consumer.Handler{
			user.EventRegistered: alone,
			order.EventConfirmed: alone,
			order.EventRejected:  alone,
			order.EventCancelled: alone,
		},
		HandleEach: each,
		Batches:    true,
		Prefetch: map[string]consumer.Prefetch{
			order.EventConfirmed: recipients,
			order.EventRejected:  recipients,
			order.EventCancelled: recipients,
		},
	}
}

// compose is the email an event asks for: a welcome (user.registered) or a
// note about an order.
func compose(ctx context.Context, tx *store.Tx, e outbox.Envelope) (store.Email, error) {
	if e.Type == user.EventRegistered {
		registered, err := consumer.Decode[user.Registered](e)
		if err != nil {
			return store.Email{}, err
		}
		return app.Welcome(registered), nil
	}
	changed, err := consumer.Decode[order.StatusChanged](e)
	if err != nil {
		return store.Email{}, err
	}
	return app.OrderNote(ctx, tx, changed)
}

// recipients reads the recipients of order notes with the inbox claim.
func recipients(ctx context.Context, tx *store.Tx, events []outbox.Envelope) error {
	changed, err := consumer.DecodeEach[order.StatusChanged](events)
	if err != nil {
		return err
	}
	return app.LoadRecipients(ctx, tx, changed)
}
