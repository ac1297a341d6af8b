package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopdev/shop/domain/product"
	"github.com/shopdev/shop/domain/stock"
)

// Reservations loads and saves inventory's reservations in a transaction.
type Reservations struct{ tx *Tx }

// GetForUpdate loads the reservation of an order and locks it until the
// transaction ends; found is false when the order has none yet.
func (s Reservations) GetForUpdate(ctx context.Context, orderID uuid.UUID) (r *stock.Reservation, found bool, err error) {
	var st stock.State
	err = s.tx.read(ctx, func(rows pgx.Rows) (err error) {
		st, err = pgx.CollectExactlyOneRow(rows, scanReservation)
		return err
	}, reservationSQL, orderID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("load reservation: %w", err)
	}
	return stock.Restore(st), true, nil
}

// LockManyWithProducts loads the reservations of the orders that have one
// and the products with the given ids that exist, and locks them all until
// the transaction ends, in one round trip: deciding orders' stock needs
// both, and the products' ids come with the events, not with the
// reservations. Each kind is locked in id order, so that transactions
// locking overlapping sets cannot deadlock.
func (s Reservations) LockManyWithProducts(ctx context.Context, orderIDs, productIDs []uuid.UUID) (
	reservations map[uuid.UUID]*stock.Reservation, products map[uuid.UUID]*product.Product, err error) {
	var list []stock.State
	s.tx.queue(`SELECT order_id, status, lines, reason, version, updated_at FROM reservations
		WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE`, orderIDs).Query(func(rows pgx.Rows) (err error) {
		list, err = pgx.CollectRows(rows, scanReservation)
		return err
	})
	products, err = s.tx.Products.LockMany(ctx, productIDs) // sends both
	if err != nil {
		return nil, nil, fmt.Errorf("load reservations with their products: %w", err)
	}
	reservations = make(map[uuid.UUID]*stock.Reservation, len(list))
	for _, st := range list {
		reservations[st.OrderID] = stock.Restore(st)
	}
	return reservations, products, nil
}

const reservationSQL = `SELECT order_id, status, lines, reason, version, updated_at FROM reservations WHERE order_id = $1 FOR UPDATE`

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
	s.tx.queue(`INSERT INTO reservations (order_id, status, lines, reason, version, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, st.OrderID, string(st.Status), string(lines), st.Reason, st.Version, st.UpdatedAt)
	return nil
}

// Save queues the update of a reservation loaded at version loadedVersion.
func (s Reservations) Save(r *stock.Reservation, loadedVersion int64) {
	st := r.State()
	s.tx.queueUpdate("reservation", st.OrderID, `UPDATE reservations SET status = $2, version = $3, updated_at = $4
		WHERE order_id = $1 AND version = $5`, st.OrderID, string(st.Status), st.Version, st.UpdatedAt, loadedVersion)
}

func linesOrEmpty(l []stock.Line) []stock.Line {
	if l == nil {
		return []stock.Line{}
	}
	return l
}
