package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopdev/shop/domain/stock"
)

// Reservations loads and adds inventory's reservations in a transaction;
// the transaction writes back the ones it locked and that changed when it
// commits.
type Reservations struct{ tx *Tx }

const reservationColumns = `order_id, status, lines, reason, version, updated_at`

// GetForUpdate loads the reservation of an order and locks it until the
// transaction ends; found is false when the order has none yet.
func (s Reservations) GetForUpdate(ctx context.Context, orderID uuid.UUID) (r *stock.Reservation, found bool, err error) {
	if err := s.Lock(ctx, []uuid.UUID{orderID}, nil); err != nil {
		return nil, false, err
	}
	r, found, _ = s.tx.reservations.get(orderID)
	return r, found, nil
}

// Lock locks, in one round trip, the reservations of the orders that have
// one and the products with the given ids that exist, until the transaction
// ends: deciding orders' stock needs both, and the products' ids come with
// the events, not with the reservations. Each kind is locked in id order,
// so that transactions locking overlapping sets cannot deadlock. The
// transaction then finds them with GetForUpdate and Products.LockMany
// without reading them again.
func (s Reservations) Lock(ctx context.Context, orderIDs, productIDs []uuid.UUID) error {
	queueLock(s.tx, &s.tx.reservations, orderIDs, `SELECT `+reservationColumns+` FROM reservations
		WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE`,
		scanReservation, func(st stock.State) uuid.UUID { return st.OrderID }, stock.Restore)
	s.tx.Products.queueLock(productIDs)
	if err := s.tx.sendReads(ctx); err != nil {
		return fmt.Errorf("lock reservations and their products: %w", err)
	}
	return nil
}

// LockWithOrders is Lock for orders being placed: in the same round trip it
// also locks the orders themselves, with their lines (the transaction then
// finds them with Orders.LockMany without reading them again), so that
// inventory can check an order.placed against the order it names. Nothing
// locks orders and then reservations or products, so taking the orders
// first cannot deadlock.
func (s Reservations) LockWithOrders(ctx context.Context, orderIDs, productIDs []uuid.UUID) error {
	if missing := s.tx.orders.missing(orderIDs); len(missing) > 0 {
		s.tx.Orders.queueLock(missing)
	}
	return s.Lock(ctx, orderIDs, productIDs)
}

func scanReservation(row pgx.CollectableRow) (stock.State, error) {
	var st stock.State
	var status string
	var lines []byte
	if err := row.Scan(&st.OrderID, &status, &lines, &st.Reason, &st.Version, &st.UpdatedAt); err != nil {
		return st, err
	}
	st.Status = stock.Status(status)
	return st, json.Unmarshal(lines, &st.Lines)
}

// Add queues the insert of a new reservation. If another transaction adds
// the same order's reservation first, the write fails with
// ErrConcurrentUpdate and the caller retries.
func (s Reservations) Add(r *stock.Reservation) error {
	st := r.State()
	lines, err := json.Marshal(linesOrEmpty(st.Lines))
	if err != nil {
		return fmt.Errorf("encode reservation lines: %w", err)
	}
	s.tx.queue(`INSERT INTO reservations (`+reservationColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6)`, st.OrderID, string(st.Status), string(lines), st.Reason, st.Version, st.UpdatedAt)
	s.tx.reservations.hold(st.OrderID, r)
	return nil
}

// update queues the write of a reservation loaded at version loaded.
func (s Reservations) update(r *stock.Reservation, loaded int64) {
	st := r.State()
	s.tx.queueUpdate("reservation", st.OrderID, `UPDATE reservations SET status = $2, version = $3, updated_at = $4
		WHERE order_id = $1 AND version = $5`, st.OrderID, string(st.Status), st.Version, st.UpdatedAt, loaded)
}

func linesOrEmpty(l []stock.Line) []stock.Line {
	if l == nil {
		return []stock.Line{}
	}
	return l
}
