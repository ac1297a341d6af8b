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

	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/product"
	"github.com/shopdev/shop/domain/stock"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// Handlers returns the group's handlers by routing key; now is the clock.
func Handlers(now func() time.Time) map[string]consumer.Handler {
	h := handlers{now: now}
	return map[string]consumer.Handler{
		order.EventPlaced:    consumer.One(h.ordersPlaced),
		order.EventCancelled: h.orderCancelled,
	}
}

// BatchHandlers returns the handlers that apply several events at once,
// by routing key: order.placed, the event of every order.
func BatchHandlers(now func() time.Time) map[string]consumer.BatchHandler {
	h := handlers{now: now}
	return map[string]consumer.BatchHandler{order.EventPlaced: h.ordersPlaced}
}

type handlers struct{ now func() time.Time }

// ordersPlaced decides the stock of each placed order, in turn: it locks
// their reservations and every product they name in one round trip, then
// reserves each order's lines from the products as the orders before it
// left them, and saves each product once. An order that has a reservation
// already (decided, or cancelled before it was placed) is left as it is.
func (h handlers) ordersPlaced(ctx context.Context, tx *store.Tx, events []outbox.Envelope) ([][]domain.Event, error) {
	placed := make([]order.Placed, len(events))
	orderIDs := make([]uuid.UUID, len(events))
	var productIDs []uuid.UUID
	for i, e := range events {
		p, err := consumer.Decode[order.Placed](e)
		if err != nil {
			return nil, err
		}
		placed[i], orderIDs[i] = p, p.OrderID
		for _, l := range p.Lines {
			if !slices.Contains(productIDs, l.ProductID) {
				productIDs = append(productIDs, l.ProductID)
			}
		}
	}
	decided, products, err := tx.Reservations.LockManyWithProducts(ctx, orderIDs, productIDs)
	if err != nil {
		return nil, err
	}
	loaded := make(map[uuid.UUID]int64, len(products))
	for id, p := range products {
		loaded[id] = p.Version()
	}
	caused := make([][]domain.Event, len(events))
	for i, p := range placed {
		if decided[p.OrderID] != nil {
			continue
		}
		lines := make([]stock.Line, len(p.Lines))
		named := make(map[uuid.UUID]bool, len(p.Lines))
		for n, l := range p.Lines {
			lines[n] = stock.Line{ProductID: l.ProductID, Quantity: l.Quantity}
			named[l.ProductID] = true
		}
		r, err := stock.Reserve(p.OrderID, lines, products, h.now())
		if err != nil {
			return nil, fmt.Errorf("reserve stock for order %s: %w", p.OrderID, err)
		}
		if err := tx.Reservations.Add(r); err != nil {
			return nil, err
		}
		decided[p.OrderID] = r
		// The reservation's event, then what its products recorded (Events
		// hands each event over once), products in id order.
		caused[i] = r.Events()
		for _, id := range sortedIDs(named) {
			if pr, ok := products[id]; ok {
				caused[i] = append(caused[i], pr.Events()...)
			}
		}
	}
	for _, id := range sortedIDs(products) {
		if p := products[id]; p.Version() != loaded[id] {
			tx.Products.Save(p, loaded[id])
		}
	}
	return caused, nil
}

func sortedIDs[V any](m map[uuid.UUID]V) []uuid.UUID {
	ids := make([]uuid.UUID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	return ids
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
	for _, id := range sortedIDs(products) {
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
