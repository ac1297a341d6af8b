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
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/stock"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// Handlers returns the group's handlers by routing key; now is the clock.
func Handlers(now func() time.Time) map[string]consumer.Handler {
	h := handlers{now: now}
	return map[string]consumer.Handler{
		stock.EventReserved: consumer.One(h.stockReserved),
		stock.EventRejected: consumer.One(h.stockRejected),
		stock.EventReleased: func(context.Context, *store.Tx, outbox.Envelope) error { return nil },
	}
}

// BatchHandlers returns the handlers that apply several events at once,
// by routing key: inventory's decisions, one for every order.
func BatchHandlers(now func() time.Time) map[string]consumer.BatchHandler {
	h := handlers{now: now}
	return map[string]consumer.BatchHandler{
		stock.EventReserved: h.stockReserved,
		stock.EventRejected: h.stockRejected,
	}
}

type handlers struct{ now func() time.Time }

func (h handlers) stockReserved(ctx context.Context, tx *store.Tx, events []outbox.Envelope) ([][]domain.Event, error) {
	ids := make([]uuid.UUID, len(events))
	for i, e := range events {
		reserved, err := consumer.Decode[stock.Reserved](e)
		if err != nil {
			return nil, err
		}
		ids[i] = reserved.OrderID
	}
	return h.decide(ctx, tx, ids, func(_ int, o *order.Order) error { return o.Confirm(h.now()) })
}

func (h handlers) stockRejected(ctx context.Context, tx *store.Tx, events []outbox.Envelope) ([][]domain.Event, error) {
	ids := make([]uuid.UUID, len(events))
	reasons := make([]string, len(events))
	for i, e := range events {
		rejected, err := consumer.Decode[stock.Rejected](e)
		if err != nil {
			return nil, err
		}
		ids[i], reasons[i] = rejected.OrderID, rejected.Reason
	}
	return h.decide(ctx, tx, ids, func(i int, o *order.Order) error { return o.Reject(reasons[i], h.now()) })
}

// decide locks the orders in one round trip and applies change to each in
// turn (the i-th event's to orders ids[i]), then saves each order once. An
// order that is no longer pending (cancelled meanwhile) is left as it is.
// It returns the events each change recorded.
func (h handlers) decide(ctx context.Context, tx *store.Tx, ids []uuid.UUID, change func(i int, o *order.Order) error) ([][]domain.Event, error) {
	orders, err := tx.Orders.LockMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	caused := make([][]domain.Event, len(ids))
	loaded := make(map[uuid.UUID]int64, len(ids))
	var changed []uuid.UUID // in the order of their first change
	for i, id := range ids {
		o, ok := orders[id]
		if !ok {
			return nil, fmt.Errorf("order %s: %w", id, order.ErrNotFound)
		}
		version := o.Version()
		if err := change(i, o); errors.Is(err, order.ErrNotPending) {
			continue
		} else if err != nil {
			return nil, err
		}
		if _, ok := loaded[id]; !ok {
			loaded[id] = version
			changed = append(changed, id)
		}
		caused[i] = o.Events() // what this change recorded: Events hands each event over once
	}
	for _, id := range changed {
		tx.Orders.Save(orders[id], loaded[id])
	}
	return caused, nil
}
