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
	rows, err := r.pool.Query(ctx, readProductSQL+` WHERE id = $1`, id)
	if err != nil {
		return projections.Product{}, false, classify(fmt.Errorf("read product: %w", err))
	}
	p, err := pgx.CollectExactlyOneRow(rows, scanReadProduct)
	if errors.Is(err, pgx.ErrNoRows) {
		return projections.Product{}, false, nil
	}
	if err != nil {
		return projections.Product{}, false, classify(fmt.Errorf("read product: %w", err))
	}
	return p, true, nil
}

// Products returns up to limit products in id (creation) order after the
// given id, and the cursor of the next page (uuid.Nil at the end).
func (r *Reads) Products(ctx context.Context, after uuid.UUID, limit int) ([]projections.Product, uuid.UUID, error) {
	rows, err := r.pool.Query(ctx, readProductSQL+` WHERE id > $1 ORDER BY id LIMIT $2`, after, limit+1)
	if err != nil {
		return nil, uuid.Nil, classify(fmt.Errorf("list products: %w", err))
	}
	list, err := pgx.CollectRows(rows, scanReadProduct)
	if err != nil {
		return nil, uuid.Nil, classify(fmt.Errorf("list products: %w", err))
	}
	next := uuid.Nil
	if len(list) > limit {
		list = list[:limit]
		next = list[limit-1].ID
	}
	return list, next, nil
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

// Order returns an order with its items; found is false when there is none.
func (r *Reads) Order(ctx context.Context, id uuid.UUID) (projections.Order, bool, error) {
	rows, err := r.pool.Query(ctx, readOrderSQL+` WHERE o.id = $1`, id)
	if err != nil {
		return projections.Order{}, false, classify(fmt.Errorf("read order: %w", err))
	}
	o, err := pgx.CollectExactlyOneRow(rows, scanReadOrder)
	if errors.Is(err, pgx.ErrNoRows) {
		return projections.Order{}, false, nil
	}
	if err != nil {
		return projections.Order{}, false, classify(fmt.Errorf("read order: %w", err))
	}
	return o, true, nil
}

// Orders returns up to limit of a user's orders (uuid.Nil: everyone's),
// newest (highest id) first, before the given id (uuid.Nil: from the
// newest), and the cursor of the next page.
func (r *Reads) Orders(ctx context.Context, user, before uuid.UUID, limit int) ([]projections.Order, uuid.UUID, error) {
	if before == uuid.Nil {
		before = uuid.Max
	}
	sql, args := readOrderSQL+` WHERE o.user_id = $1 AND o.id < $2 ORDER BY o.id DESC LIMIT $3`, []any{user, before, limit + 1}
	if user == uuid.Nil {
		sql, args = readOrderSQL+` WHERE o.id < $1 ORDER BY o.id DESC LIMIT $2`, []any{before, limit + 1}
	}
	rows, err := r.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, uuid.Nil, classify(fmt.Errorf("list orders: %w", err))
	}
	list, err := pgx.CollectRows(rows, scanReadOrder)
	if err != nil {
		return nil, uuid.Nil, classify(fmt.Errorf("list orders: %w", err))
	}
	next := uuid.Nil
	if len(list) > limit {
		list = list[:limit]
		next = list[limit-1].ID
	}
	return list, next, nil
}

// EachProduct and EachOrder walk every product and order, for rebuilds.
func (r *Reads) EachProduct(ctx context.Context, fn func(projections.Product) error) error {
	for after := uuid.Nil; ; {
		page, next, err := r.Products(ctx, after, 500)
		if err != nil {
			return err
		}
		for _, p := range page {
			if err := fn(p); err != nil {
				return err
			}
		}
		if next == uuid.Nil {
			return nil
		}
		after = next
	}
}

// EachOrder walks every order with its items, in id order.
func (r *Reads) EachOrder(ctx context.Context, fn func(projections.Order) error) error {
	for after := uuid.Nil; ; {
		rows, err := r.pool.Query(ctx, readOrderSQL+` WHERE o.id > $1 ORDER BY o.id LIMIT 500`, after)
		if err != nil {
			return classify(fmt.Errorf("walk orders: %w", err))
		}
		page, err := pgx.CollectRows(rows, scanReadOrder)
		if err != nil {
			return classify(fmt.Errorf("walk orders: %w", err))
		}
		for _, o := range page {
			if err := fn(o); err != nil {
				return err
			}
		}
		if len(page) < 500 {
			return nil
		}
		after = page[len(page)-1].ID
	}
}
