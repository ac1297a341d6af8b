// Package orders is the orders consumer group's adapter: it turns
// inventory's decisions into the use cases that move an order out of
// pending (app.ConfirmOrder on stock.reserved, app.RejectOrder on
// stock.rejected). stock.released changes nothing here; the group hears it
// so that the event has a queue.
package orders

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/domain/stock"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// Group is the orders group; now is the clock.
func Group(now func() time.Time) consumer.Group {
	return consumer.Group{
		Name:    "orders",
		About:   "confirms or rejects each order once inventory decided its stock",
		Keys:    []string{stock.EventReserved, stock.EventRejected, stock.EventReleased},
		Batches: true,
		Handlers: map[string]consumer.Handler{
			stock.EventReserved: func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
				d, err := consumer.Decode[stock.Reserved](e)
				if err != nil {
					return err
				}
				return app.ConfirmOrder(ctx, tx, d.OrderID, now())
			},
			stock.EventRejected: func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
				d, err := consumer.Decode[stock.Rejected](e)
				if err != nil {
					return err
				}
				return app.RejectOrder(ctx, tx, d.OrderID, d.Reason, now())
			},
			stock.EventReleased: func(context.Context, *store.Tx, outbox.Envelope) error { return nil },
		},
		Prefetch: map[string]consumer.Prefetch{
			stock.EventReserved: loadOrders[stock.Reserved](func(d stock.Reserved) uuid.UUID { return d.OrderID }),
			stock.EventRejected: loadOrders[stock.Rejected](func(d stock.Rejected) uuid.UUID { return d.OrderID }),
		},
	}
}

// loadOrders locks the orders that events of data T name.
func loadOrders[T any](orderOf func(T) uuid.UUID) consumer.Prefetch {
	return func(ctx context.Context, tx *store.Tx, events []outbox.Envelope) error {
		data, err := consumer.DecodeEach[T](events)
		if err != nil {
			return err
		}
		ids := make([]uuid.UUID, len(data))
		for i, d := range data {
			ids[i] = orderOf(d)
		}
		return app.LoadOrders(ctx, tx, ids)
	}
}
