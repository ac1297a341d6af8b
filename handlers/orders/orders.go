// Package orders is the orders consumer group: it moves an order out of
// pending once inventory decided its stock, confirmed on stock.reserved and
// rejected on stock.rejected, each with its event and a new version. An
// order that was cancelled meanwhile stays cancelled (inventory gives its
// stock back when it sees order.cancelled). stock.released changes nothing
// here; the group hears it so that the event has a queue.
package orders

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/stock"
	"github.com/shopdev/shop/handlers/consumer"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// Handlers returns the group's handlers by routing key; now is the clock.
func Handlers(now func() time.Time) map[string]consumer.Handler {
	h := handlers{now: now}
	return map[string]consumer.Handler{
		stock.EventReserved: h.stockReserved,
		stock.EventRejected: h.stockRejected,
		stock.EventReleased: func(context.Context, *store.Tx, outbox.Envelope) error { return nil },
	}
}

type handlers struct{ now func() time.Time }

func (h handlers) stockReserved(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
	reserved, err := consumer.Decode[stock.Reserved](e)
	if err != nil {
		return err
	}
	return h.decide(ctx, tx, reserved.OrderID, func(o *order.Order) error { return o.Confirm(h.now()) })
}

func (h handlers) stockRejected(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
	rejected, err := consumer.Decode[stock.Rejected](e)
	if err != nil {
		return err
	}
	return h.decide(ctx, tx, rejected.OrderID, func(o *order.Order) error { return o.Reject(rejected.Reason, h.now()) })
}

// decide applies change to the order; an order that is no longer pending
// (cancelled meanwhile) is left as it is.
func (h handlers) decide(ctx context.Context, tx *store.Tx, id uuid.UUID, change func(*order.Order) error) error {
	o, err := tx.Orders.GetForUpdate(ctx, id)
	if err != nil {
		return err
	}
	loaded := o.Version()
	if err := change(o); errors.Is(err, order.ErrNotPending) {
		return nil
	} else if err != nil {
		return err
	}
	tx.Orders.Save(o, loaded)
	return tx.Append(o.Events()...)
}
