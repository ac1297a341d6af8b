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

// GetForUpdateWithProducts is GetForUpdate and then Products.LockMany in one
// round trip: deciding an order's stock needs both, and the products' ids
// come with the event, not with the reservation. The products are locked
// even when the reservation is found.
func (s Reservations) GetForUpdateWithProducts(ctx context.Context, orderID uuid.UUID, productIDs []uuid.UUID) (
	r *stock.Reservation, found bool, products map[uuid.UUID]*product.Product, err error) {
	var list []stock.State
	s.tx.queue(reservationSQL, orderID).Query(func(rows pgx.Rows) (err error) {
		list, err = pgx.CollectRows(rows, scanReservation)
		return err
	})
	products, err = s.tx.Products.LockMany(ctx, productIDs) // sends both
	if err != nil {
		return nil, false, nil, fmt.Errorf("load reservation with its products: %w", err)
	}
	if len(list) == 1 {
		return stock.Restore(list[0]), true, products, nil
	}
	return nil, false, products, nil
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
