package store

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopdev/shop/domain/order"
)

// Orders loads and saves orders in a transaction.
type Orders struct{ tx *Tx }

// Add queues the insert of a new order and its lines.
func (s Orders) Add(o *order.Order) {
	st := o.State()
	s.tx.queue(`INSERT INTO orders (id, user_id, status, total_cents, version, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		st.ID, st.CustomerID, string(st.Status), st.TotalCents, st.Version, st.CreatedAt, st.UpdatedAt)
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
}

// Save queues the update of an order loaded at version loadedVersion; the
// write fails with ErrConcurrentUpdate if another transaction changed it.
func (s Orders) Save(o *order.Order, loadedVersion int64) {
	st := o.State()
	s.tx.queueUpdate("order", st.ID, `UPDATE orders SET status = $2, version = $3, updated_at = $4 WHERE id = $1 AND version = $5`,
		st.ID, string(st.Status), st.Version, st.UpdatedAt, loadedVersion)
}

// GetForUpdate loads an order with its lines and locks it until the
// transaction ends, in one round trip; order.ErrNotFound when none.
func (s Orders) GetForUpdate(ctx context.Context, id uuid.UUID) (*order.Order, error) {
	orders, err := s.LockMany(ctx, []uuid.UUID{id})
	if err != nil {
		return nil, err
	}
	o, ok := orders[id]
	if !ok {
		return nil, order.ErrNotFound
	}
	return o, nil
}

// LockMany loads the orders with the given ids that exist, with their lines,
// and locks them until the transaction ends, in id order so that
// transactions locking overlapping sets cannot deadlock. One round trip.
func (s Orders) LockMany(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]*order.Order, error) {
	var list []order.State
	s.tx.queue(`SELECT id, user_id, status, total_cents, version, created_at, updated_at
		FROM orders WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids).Query(func(rows pgx.Rows) (err error) {
		list, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (order.State, error) {
			var st order.State
			var status string
			err := row.Scan(&st.ID, &st.CustomerID, &status, &st.TotalCents, &st.Version, &st.CreatedAt, &st.UpdatedAt)
			st.Status = order.Status(status)
			return st, err
		})
		return err
	})
	lines := make(map[uuid.UUID][]order.Line, len(ids))
	err := s.tx.read(ctx, func(rows pgx.Rows) error {
		var id uuid.UUID
		var l order.Line
		_, err := pgx.ForEachRow(rows, []any{&id, &l.ProductID, &l.SKU, &l.Name, &l.Quantity, &l.UnitPriceCents}, func() error {
			lines[id] = append(lines[id], l)
			return nil
		})
		return err
	}, `SELECT order_id, product_id, sku, name, quantity, unit_price_cents FROM order_items
		WHERE order_id = ANY($1) ORDER BY order_id, line`, ids)
	if err != nil {
		return nil, fmt.Errorf("load orders: %w", err)
	}
	out := make(map[uuid.UUID]*order.Order, len(list))
	for _, st := range list {
		st.Lines = lines[st.ID]
		out[st.ID] = order.Restore(st)
	}
	return out, nil
}
