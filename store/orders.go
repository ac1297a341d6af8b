package store

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopdev/shop/domain/order"
)

// Orders loads and adds orders in a transaction; the transaction writes
// back the ones it locked and that changed when it commits.
type Orders struct{ tx *Tx }

// Add queues the insert of a new order and its lines.
func (s Orders) Add(o *order.Order) {
	st := o.State()
	s.tx.queue(`INSERT INTO orders (id, user_id, status, reason, total_cents, version, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		st.ID, st.CustomerID, string(st.Status), st.Reason, st.TotalCents, st.Version, st.CreatedAt, st.UpdatedAt)
	n := len(st.Lines)
	var (
		products = make([]uuid.UUID, n)
		skus     = make([]string, n)
		names    = make([]string, n)
		qty      = make([]int64, n)
		prices   = make([]int64, n)
	)
	for i, l := range st.Lines {
		products[i], skus[i], names[i], qty[i], prices[i] = l.ProductID, l.SKU, l.Name, l.Quantity, l.UnitPriceCents
	}
	s.tx.queue(`INSERT INTO order_items (order_id, line, product_id, sku, name, quantity, unit_price_cents)
		SELECT $1, l.n, l.product_id, l.sku, l.name, l.quantity, l.unit_price_cents
		FROM unnest($2::uuid[], $3::text[], $4::text[], $5::int8[], $6::int8[])
		     WITH ORDINALITY AS l(product_id, sku, name, quantity, unit_price_cents, n)`,
		st.ID, products, skus, names, qty, prices)
	s.tx.orders.hold(st.ID, o)
}

// update queues the write of an order loaded at version loaded; it fails
// with ErrConcurrentUpdate if another transaction changed it.
func (s Orders) update(o *order.Order, loaded int64) {
	st := o.State()
	s.tx.queueUpdate("order", st.ID, `UPDATE orders SET status = $2, reason = $3, version = $4, updated_at = $5
		WHERE id = $1 AND version = $6`,
		st.ID, string(st.Status), st.Reason, st.Version, st.UpdatedAt, loaded)
}

// GetForUpdate loads an order with its lines and locks it until the
// transaction ends; order.ErrNotFound when there is none.
func (s Orders) GetForUpdate(ctx context.Context, id uuid.UUID) (*order.Order, error) {
	return getForUpdate(ctx, id, s.LockMany, order.ErrNotFound)
}

// LockMany loads the orders with the given ids that exist, with their lines,
// and locks them until the transaction ends, in id order so that
// transactions locking overlapping sets cannot deadlock; one round trip.
// What the transaction locked already it does not read again.
func (s Orders) LockMany(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]*order.Order, error) {
	if missing := s.tx.orders.missing(ids); len(missing) > 0 {
		s.queueLock(missing)
	}
	if err := s.tx.sendReads(ctx); err != nil {
		return nil, fmt.Errorf("lock orders: %w", err)
	}
	return s.tx.orders.held(ids), nil
}

// queueLock queues the locking read of orders and the read of their lines,
// which tracked holds once they are sent.
func (s Orders) queueLock(ids []uuid.UUID) {
	var list []order.State
	s.tx.queueRead(func(rows pgx.Rows) (err error) {
		list, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (order.State, error) {
			var st order.State
			var status string
			err := row.Scan(&st.ID, &st.CustomerID, &status, &st.Reason, &st.TotalCents, &st.Version, &st.CreatedAt, &st.UpdatedAt)
			st.Status = order.Status(status)
			return st, err
		})
		return err
	}, `SELECT id, user_id, status, reason, total_cents, version, created_at, updated_at
		FROM orders WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE`, ids)
	s.tx.queueRead(func(rows pgx.Rows) error {
		lines := make(map[uuid.UUID][]order.Line, len(ids))
		var id uuid.UUID
		var l order.Line
		_, err := pgx.ForEachRow(rows, []any{&id, &l.ProductID, &l.SKU, &l.Name, &l.Quantity, &l.UnitPriceCents}, func() error {
			lines[id] = append(lines[id], l)
			return nil
		})
		if err != nil {
			return err
		}
		for _, st := range list {
			st.Lines = lines[st.ID]
			s.tx.orders.hold(st.ID, order.Restore(st))
		}
		for _, id := range s.tx.orders.missing(ids) {
			s.tx.orders.absent(id)
		}
		return nil
	}, `SELECT order_id, product_id, sku, name, quantity, unit_price_cents FROM order_items
		WHERE order_id = ANY($1) ORDER BY order_id, line`, ids)
}
