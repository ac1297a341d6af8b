package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/projections"
)

// Reads answers queries from Postgres, in the read models' shape: the
// projections.Origin that the query endpoints fall back on when Redis
// misses or is down, and that `shop projections rebuild` walks. It runs
// outside any unit of work.
type Reads struct{ pool *pgxpool.Pool }

// NewReads returns the Postgres reads over pool.
func NewReads(pool *pgxpool.Pool) *Reads { return &Reads{pool: pool} }

const readProductSQL = `SELECT id, sku, name, price_cents, stock, version FROM products`

func scanReadProduct(row pgx.CollectableRow) (projections.Product, error) {
	var p projections.Product
	err := row.Scan(&p.ID, &p.SKU, &p.Name, &p.PriceCents, &p.StockAvailable, &p.Version)
	return p, err
}

// Product returns a product; found is false when there is none.
func (r *Reads) Product(ctx context.Context, id uuid.UUID) (projections.Product, bool, error) {
	return one(ctx, r, "read product", scanReadProduct, readProductSQL+` WHERE id = $1`, id)
}

// Products returns up to limit products in id (creation) order after the
// given id, and the cursor of the next page (uuid.Nil at the end).
func (r *Reads) Products(ctx context.Context, after uuid.UUID, limit int) ([]projections.Product, uuid.UUID, error) {
	return page(ctx, r, "list products", scanReadProduct, func(p projections.Product) uuid.UUID { return p.ID }, limit,
		readProductSQL+` WHERE id > $1 ORDER BY id LIMIT $2`, after, limit+1)
}

const readOrderSQL = `SELECT o.id, o.user_id, o.status, o.reason, o.total_cents, o.version, o.updated_at,
	coalesce((SELECT json_agg(json_build_object('product_id', i.product_id, 'sku', i.sku, 'name', i.name,
		'quantity', i.quantity, 'unit_price_cents', i.unit_price_cents) ORDER BY i.line)
		FROM order_items i WHERE i.order_id = o.id), '[]')
	FROM orders o`

func scanReadOrder(row pgx.CollectableRow) (projections.Order, error) {
	var o projections.Order
	var status string
	err := row.Scan(&o.ID, &o.UserID, &status, &o.Reason, &o.TotalCents, &o.Version, &o.UpdatedAt, &o.Items)
	o.Status = order.Status(status)
	o.UpdatedAt = o.UpdatedAt.UTC()
	return o, err
}

func orderID(o projections.Order) uuid.UUID { return o.ID }

// Order returns an order with its items; found is false when there is none.
func (r *Reads) Order(ctx context.Context, id uuid.UUID) (projections.Order, bool, error) {
	return one(ctx, r, "read order", scanReadOrder, readOrderSQL+` WHERE o.id = $1`, id)
}

// Orders returns up to limit of a user's orders (uuid.Nil: everyone's),
// newest (highest id) first, before the given id (uuid.Nil: from the
// newest), and the cursor of the next page.
func (r *Reads) Orders(ctx context.Context, user, before uuid.UUID, limit int) ([]projections.Order, uuid.UUID, error) {
	if before == uuid.Nil {
		before = uuid.Max
	}
	if user == uuid.Nil {
		return page(ctx, r, "list orders", scanReadOrder, orderID, limit,
			readOrderSQL+` WHERE o.id < $1 ORDER BY o.id DESC LIMIT $2`, before, limit+1)
	}
	return page(ctx, r, "list orders", scanReadOrder, orderID, limit,
		readOrderSQL+` WHERE o.user_id = $1 AND o.id < $2 ORDER BY o.id DESC LIMIT $3`, user, before, limit+1)
}

// EachProduct walks every product, in id order, for rebuilds.
func (r *Reads) EachProduct(ctx context.Context, fn func(projections.Product) error) error {
	return each(ctx, r.Products, fn)
}

// EachOrder walks every order with its items, in id order, for rebuilds.
func (r *Reads) EachOrder(ctx context.Context, fn func(projections.Order) error) error {
	return each(ctx, func(ctx context.Context, after uuid.UUID, limit int) ([]projections.Order, uuid.UUID, error) {
		return page(ctx, r, "walk orders", scanReadOrder, orderID, limit, readOrderSQL+` WHERE o.id > $1 ORDER BY o.id LIMIT $2`, after, limit+1)
	}, fn)
}

// one runs a query of at most one row; found is false when there is none.
func one[T any](ctx context.Context, r *Reads, what string, scan pgx.RowToFunc[T], sql string, args ...any) (T, bool, error) {
	var zero T
	rows, err := r.pool.Query(ctx, sql, args...)
	if err != nil {
		return zero, false, classify(fmt.Errorf("%s: %w", what, err))
	}
	v, err := pgx.CollectExactlyOneRow(rows, scan)
	if errors.Is(err, pgx.ErrNoRows) {
		return zero, false, nil
	}
	if err != nil {
		return zero, false, classify(fmt.Errorf("%s: %w", what, err))
	}
	return v, true, nil
}

// page runs a query of up to limit+1 rows and returns limit of them, and
// the cursor of the next page (the last row's id; uuid.Nil when there was
// no row more).
func page[T any](ctx context.Context, r *Reads, what string, scan pgx.RowToFunc[T], idOf func(T) uuid.UUID, limit int,
	sql string, args ...any) ([]T, uuid.UUID, error) {
	rows, err := r.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, uuid.Nil, classify(fmt.Errorf("%s: %w", what, err))
	}
	list, err := pgx.CollectRows(rows, scan)
	if err != nil {
		return nil, uuid.Nil, classify(fmt.Errorf("%s: %w", what, err))
	}
	if len(list) <= limit {
		return list, uuid.Nil, nil
	}
	list = list[:limit]
	return list, idOf(list[limit-1]), nil
}

// each calls fn for every item of the pages of list, from the first.
func each[T any](ctx context.Context, list func(context.Context, uuid.UUID, int) ([]T, uuid.UUID, error), fn func(T) error) error {
	for after := uuid.Nil; ; {
		items, next, err := list(ctx, after, 500)
		if err != nil {
			return err
		}
		for _, item := range items {
			if err := fn(item); err != nil {
				return err
			}
		}
		if next == uuid.Nil {
			return nil
		}
		after = next
	}
}
