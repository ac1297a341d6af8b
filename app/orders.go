package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/store"
)

// PlaceOrder places a pending order for the actor. Prices come from the
// catalogue in Postgres; an unknown product is a validation error naming the
// item.
func PlaceOrder(ctx context.Context, tx *store.Tx, actor Actor, items []order.Item, now time.Time) (*order.Order, error) {
	if err := order.ValidateItems(items); err != nil {
		return nil, err
	}
	catalogue, err := tx.Products.Catalogue(ctx, productIDs(items))
	if err != nil {
		return nil, err
	}
	var v domain.Validation
	lines := make([]order.Line, len(items))
	for i, it := range items {
		p, ok := catalogue[it.ProductID]
		if !ok {
			v.Add(order.ItemField(i, "product_id"), "no such product")
			continue
		}
		lines[i] = order.Line{ProductID: p.ID, SKU: p.SKU, Name: p.Name, Quantity: it.Quantity, UnitPriceCents: p.PriceCents}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	o, err := order.Place(newID(), actor.UserID, lines, now)
	if err != nil {
		return nil, err
	}
	tx.Orders.Add(o)
	return recorded(tx, o)
}

// PlaceOrderReads is what PlaceOrder reads for items, for a group of
// commands to read ahead of running it.
func PlaceOrderReads(items []order.Item) store.ReadAhead {
	return store.ReadAhead{Products: productIDs(items)}
}

func productIDs(items []order.Item) []uuid.UUID {
	ids := make([]uuid.UUID, len(items))
	for i, it := range items {
		ids[i] = it.ProductID
	}
	return ids
}

// CancelOrder cancels an order of the actor's (any order, for an admin).
// Another user's order is order.ErrNotFound, so its existence is not given
// away; an order past confirmation is order.ErrNotCancellable. Inventory
// gives back what the order held when it hears order.cancelled.
func CancelOrder(ctx context.Context, tx *store.Tx, actor Actor, id uuid.UUID, now time.Time) (*order.Order, error) {
	o, err := tx.Orders.GetForUpdate(ctx, id)
	if err != nil {
		return nil, err
	}
	if o.CustomerID() != actor.UserID && actor.Role != user.RoleAdmin {
		return nil, order.ErrNotFound
	}
	if err := o.Cancel(now); err != nil {
		return nil, err
	}
	return recorded(tx, o)
}

// LoadOrders locks the orders with the given ids in one round trip, for a
// batch of ConfirmOrder and RejectOrder.
func LoadOrders(ctx context.Context, tx *store.Tx, ids []uuid.UUID) error {
	_, err := tx.Orders.LockMany(ctx, ids)
	return err
}

// ConfirmOrder confirms a pending order once inventory reserved its stock
// (stock.reserved). An order cancelled meanwhile stays cancelled: inventory
// gives its stock back when it hears order.cancelled.
func ConfirmOrder(ctx context.Context, tx *store.Tx, id uuid.UUID, now time.Time) error {
	return decideOrder(ctx, tx, id, func(o *order.Order) error { return o.Confirm(now) })
}

// RejectOrder rejects a pending order that inventory could not serve
// (stock.rejected), with inventory's reason. An order cancelled meanwhile
// stays cancelled.
func RejectOrder(ctx context.Context, tx *store.Tx, id uuid.UUID, reason string, now time.Time) error {
	return decideOrder(ctx, tx, id, func(o *order.Order) error { return o.Reject(reason, now) })
}

func decideOrder(ctx context.Context, tx *store.Tx, id uuid.UUID, decide func(*order.Order) error) error {
	o, err := tx.Orders.GetForUpdate(ctx, id)
	if err != nil {
		return fmt.Errorf("order %s: %w", id, err)
	}
	if err := decide(o); errors.Is(err, order.ErrNotPending) {
		return nil // cancelled meanwhile
	} else if err != nil {
		return err
	}
	return tx.Append(o.Events()...)
}
