// Package inventory is the inventory consumer group's adapter: it turns
// order.placed into app.ReserveStock and order.cancelled into
// app.ReleaseStock, which decide every order's stock.
package inventory

import (
	"context"
	"time"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// Group is the inventory group; now is the clock.
func Group(now func() time.Time) consumer.Group {
	return consumer.Group{
		Name:    "inventory",
		About:   "reserves each placed order's stock, all lines or none, and gives back what cancelled orders held",
		Keys:    []string{order.EventPlaced, order.EventCancelled},
		Batches: true,
		Handlers: map[string]consumer.Handler{
			order.EventPlaced: func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
				placed, err := consumer.Decode[order.Placed](e)
				if err != nil {
					return err
				}
				return app.ReserveStock(ctx, tx, placed, now())
			},
			order.EventCancelled: func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
				cancelled, err := consumer.Decode[order.StatusChanged](e)
				if err != nil {
					return err
				}
				return app.ReleaseStock(ctx, tx, cancelled.OrderID, now())
			},
		},
		Prefetch: map[string]consumer.Prefetch{
			order.EventPlaced: func(ctx context.Context, tx *store.Tx, events []outbox.Envelope) error {
				placed, err := consumer.DecodeEach[order.Placed](events)
				if err != nil {
					return err
				}
				return app.LoadForReserving(ctx, tx, placed)
			},
		},
	}
}
