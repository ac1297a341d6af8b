package app

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
	"github.com/shopdev/shop/store"
)

// LoadForReserving locks, in one round trip, the placed orders, their
// reservations and every product they name, for a batch of ReserveStock.
func LoadForReserving(ctx context.Context, tx *store.Tx, placed []order.Placed) error {
	orderIDs := make([]uuid.UUID, len(placed))
	var productIDs []uuid.UUID
	for i, p := range placed {
		orderIDs[i] = p.OrderID
		for _, l := range p.Lines {
			productIDs = append(productIDs, l.ProductID)
		}
	}
	return tx.Reservations.LockWithOrders(ctx, orderIDs, productIDs)
}

// ReserveStock decides a placed order's stock (order.placed): every line
// or none, from the products as the transaction holds them. It records
// stock.reserved or stock.rejected, and each product's stock.changed. An
// order that has a reservation already (decided before, or cancelled
// before it was seen placed) is left as it is. An event that does not match
// an order Postgres holds reserves nothing (stock.CheckPlaced): its error
// sends it to the dead queue.
func ReserveStock(ctx context.Context, tx *store.Tx, placed order.Placed, now time.Time) error {
	// The order, the reservation and the products in one round trip;
	// nothing, when a batch's LoadForReserving locked them already.
	if err := LoadForReserving(ctx, tx, []order.Placed{placed}); err != nil {
		return err
	}
	lines := make([]stock.Line, len(placed.Lines))
	ids := make([]uuid.UUID, len(placed.Lines))
	for i, l := range placed.Lines {
		lines[i] = stock.Line{ProductID: l.ProductID, Quantity: l.Quantity}
		ids[i] = l.ProductID
	}
	orders, err := tx.Orders.LockMany(ctx, []uuid.UUID{placed.OrderID})
	if err != nil {
		return err
	}
	// Checked before the reservation: a forged event must be refused even
	// when a (forged) order.cancelled left a reservation for its order.
	o, found := orders[placed.OrderID]
	var ordered []stock.Line
	if found {
		for _, l := range o.Lines() {
			ordered = append(ordered, stock.Line{ProductID: l.ProductID, Quantity: l.Quantity})
		}
	}
	if err := stock.CheckPlaced(placed.OrderID, lines, ordered, found); err != nil {
		return fmt.Errorf("reserve stock: %w", err)
	}
	_, decided, err := tx.Reservations.GetForUpdate(ctx, placed.OrderID)
	if err != nil || decided {
		return err
	}
	products, err := tx.Products.LockMany(ctx, ids)
	if err != nil {
		return err
	}
	r, err := stock.Reserve(placed.OrderID, lines, products, now)
	if err != nil {
		return fmt.Errorf("reserve stock for order %s: %w", placed.OrderID, err)
	}
	if err := tx.Reservations.Add(r); err != nil {
		return err
	}
	return tx.Append(withProductEvents(r.Events(), products)...)
}

// ReleaseStock gives back what a cancelled order held (order.cancelled):
// stock.released and each product's stock.changed. When order.placed has
// not arrived yet, it remembers the cancellation, so that the order
// reserves nothing when it does.
func ReleaseStock(ctx context.Context, tx *store.Tx, orderID uuid.UUID, now time.Time) error {
	r, found, err := tx.Reservations.GetForUpdate(ctx, orderID)
	if err != nil {
		return err
	}
	if !found {
		tomb, err := stock.CancelBeforePlaced(orderID, now)
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
	if _, err := r.Release(products, now); err != nil {
		return fmt.Errorf("release stock of order %s: %w", orderID, err)
	}
	return tx.Append(withProductEvents(r.Events(), products)...)
}

// withProductEvents returns the reservation's events followed by what its
// products recorded, products in id order.
func withProductEvents(events []domain.Event, products map[uuid.UUID]*product.Product) []domain.Event {
	ids := make([]uuid.UUID, 0, len(products))
	for id := range products {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	for _, id := range ids {
		events = append(events, products[id].Events()...)
	}
	return events
}
