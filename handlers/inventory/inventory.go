// Package inventory is the inventory consumer group: it decides every
// order's stock. On order.placed it reserves every line or none
// (stock.reserved or stock.rejected, plus the products' stock.changed); on
// order.cancelled it gives back what the order held (stock.released and
// stock.changed). The reservation row makes either order of arrival end the
// same: an order cancelled before it was seen placed reserves nothing.
package inventory

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/product"
	"github.com/shopdev/shop/domain/stock"
	"github.com/shopdev/shop/handlers/consumer"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// Handlers returns the group's handlers by routing key; now is the clock.
func Handlers(now func() time.Time) map[string]consumer.Handler {
	h := handlers{now: now}
	return map[string]consumer.Handler{
		order.EventPlaced:    h.orderPlaced,
		order.EventCancelled: h.orderCancelled,
	}
}

type handlers struct{ now func() time.Time }

func (h handlers) orderPlaced(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
	placed, err := consumer.Decode[order.Placed](e)
	if err != nil {
		return err
	}
	lines := make([]stock.Line, len(placed.Lines))
	ids := make([]uuid.UUID, len(placed.Lines))
	for i, l := range placed.Lines {
		lines[i] = stock.Line{ProductID: l.ProductID, Quantity: l.Quantity}
		ids[i] = l.ProductID
	}
	_, found, products, err := tx.Reservations.GetForUpdateWithProducts(ctx, placed.OrderID, ids)
	if err != nil || found {
		return err // found: decided already, or the order was cancelled first
	}
	r, err := stock.Reserve(placed.OrderID, lines, products, h.now())
	if err != nil {
		return fmt.Errorf("reserve stock for order %s: %w", placed.OrderID, err)
	}
	if err := tx.Reservations.Add(r); err != nil {
		return err
	}
	return saveProducts(tx, products, r.Events())
}

func (h handlers) orderCancelled(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
	cancelled, err := consumer.Decode[order.StatusChanged](e)
	if err != nil {
		return err
	}
	r, found, err := tx.Reservations.GetForUpdate(ctx, cancelled.OrderID)
	if err != nil {
		return err
	}
	if !found {
		// order.placed has not arrived yet: remember the cancellation so
		// that it reserves nothing when it does.
		tomb, err := stock.CancelBeforePlaced(cancelled.OrderID, h.now())
		if err != nil {
			return err
		}
		return tx.Reservations.Add(tomb)
	}
	if r.Status() != stock.StatusReserved {
		return nil // holds nothing
	}
	ids := make([]uuid.UUID, 0, len(r.Lines()))
	for _, l := range r.Lines() {
		ids = append(ids, l.ProductID)
	}
	products, err := tx.Products.LockMany(ctx, ids)
	if err != nil {
		return err
	}
	loaded := r.Version()
	if _, err := r.Release(products, h.now()); err != nil {
		return fmt.Errorf("release stock of order %s: %w", cancelled.OrderID, err)
	}
	tx.Reservations.Save(r, loaded)
	return saveProducts(tx, products, r.Events())
}

// saveProducts saves the products that changed and appends their events
// after the reservation's, products in id order.
func saveProducts(tx *store.Tx, products map[uuid.UUID]*product.Product, reservationEvents []domain.Event) error {
	events := reservationEvents
	ids := make([]uuid.UUID, 0, len(products))
	for id := range products {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	for _, id := range ids {
		p := products[id]
		changed := p.Events()
		if len(changed) == 0 {
			continue
		}
		tx.Products.Save(p, p.Version()-int64(len(changed)))
		events = append(events, changed...)
	}
	return tx.Append(events...)
}
