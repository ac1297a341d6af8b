package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopdev/shop/domain/product"
)

// Products loads and saves products in a transaction.
type Products struct{ tx *Tx }

const productColumns = `id, sku, name, price_cents, stock, version, created_at, updated_at`

// Add queues the insert of a new product.
func (s Products) Add(p *product.Product) {
	st := p.State()
	s.tx.queue(`INSERT INTO products (`+productColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		st.ID, st.SKU, st.Name, st.PriceCents, st.Stock, st.Version, st.CreatedAt, st.UpdatedAt)
}

// Save queues the update of a product loaded at version loadedVersion; the
// write fails with ErrConcurrentUpdate if another transaction changed it.
func (s Products) Save(p *product.Product, loadedVersion int64) {
	st := p.State()
	s.tx.queueUpdate("product", st.ID, `UPDATE products SET name = $2, price_cents = $3, stock = $4, version = $5, updated_at = $6
		WHERE id = $1 AND version = $7`,
		st.ID, st.Name, st.PriceCents, st.Stock, st.Version, st.UpdatedAt, loadedVersion)
}

// GetForUpdate loads a product and locks its row until the transaction ends.
func (s Products) GetForUpdate(ctx context.Context, id uuid.UUID) (*product.Product, error) {
	var st product.State
	err := s.tx.read(ctx, func(rows pgx.Rows) (err error) {
		st, err = pgx.CollectExactlyOneRow(rows, scanProduct)
		return err
	}, `SELECT `+productColumns+` FROM products WHERE id = $1 FOR UPDATE`, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, product.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load product: %w", err)
	}
	return product.Restore(st), nil
}

// Catalogue returns the products with the given ids that exist, by id.
func (s Products) Catalogue(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]product.State, error) {
	var list []product.State
	err := s.tx.read(ctx, func(rows pgx.Rows) (err error) {
		list, err = pgx.CollectRows(rows, scanProduct)
		return err
	}, `SELECT `+productColumns+` FROM products WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("load products: %w", err)
	}
	out := make(map[uuid.UUID]product.State, len(list))
	for _, p := range list {
		out[p.ID] = p
	}
	return out, nil
}

func scanProduct(row pgx.CollectableRow) (product.State, error) {
	var st product.State
	err := row.Scan(&st.ID, &st.SKU, &st.Name, &st.PriceCents, &st.Stock, &st.Version, &st.CreatedAt, &st.UpdatedAt)
	return st, err
}

// LockMany loads the products with the given ids that exist and locks their
// rows until the transaction ends, in id order so that transactions locking
// overlapping sets cannot deadlock.
func (s Products) LockMany(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]*product.Product, error) {
	var list []product.State
	err := s.tx.read(ctx, func(rows pgx.Rows) (err error) {
		list, err = pgx.CollectRows(rows, scanProduct)
		return err
	}, `SELECT `+productColumns+` FROM products WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids)
	if err != nil {
		return nil, fmt.Errorf("lock products: %w", err)
	}
	out := make(map[uuid.UUID]*product.Product, len(list))
	for _, st := range list {
		out[st.ID] = product.Restore(st)
	}
	return out, nil
}
