package store

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopdev/shop/domain/product"
)

// Products loads and adds products in a transaction; the transaction
// writes back the ones it locked and that changed when it commits.
type Products struct{ tx *Tx }

const productColumns = `id, sku, name, price_cents, stock, version, created_at, updated_at`

// Add queues the insert of a new product.
func (s Products) Add(p *product.Product) {
	st := p.State()
	s.tx.catalogue = nil // what was read ahead may lack it
	s.tx.queue(`INSERT INTO products (`+productColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		st.ID, st.SKU, st.Name, st.PriceCents, st.Stock, st.Version, st.CreatedAt, st.UpdatedAt)
	s.tx.products.hold(st.ID, p)
}

// update queues the write of a product loaded at version loaded; it fails
// with ErrConcurrentUpdate if another transaction changed it.
func (s Products) update(p *product.Product, loaded int64) {
	st := p.State()
	s.tx.catalogue = nil // what was read ahead is older
	s.tx.queueUpdate("product", st.ID, `UPDATE products SET name = $2, price_cents = $3, stock = $4, version = $5, updated_at = $6
		WHERE id = $1 AND version = $7`,
		st.ID, st.Name, st.PriceCents, st.Stock, st.Version, st.UpdatedAt, loaded)
}

// GetForUpdate loads a product and locks its row until the transaction
// ends; product.ErrNotFound when there is none.
func (s Products) GetForUpdate(ctx context.Context, id uuid.UUID) (*product.Product, error) {
	return getForUpdate(ctx, id, s.LockMany, product.ErrNotFound)
}

// LockMany loads the products with the given ids that exist and locks their
// rows until the transaction ends, in id order so that transactions locking
// overlapping sets cannot deadlock. What the transaction locked already it
// does not read again.
func (s Products) LockMany(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]*product.Product, error) {
	s.queueLock(ids)
	if err := s.tx.sendReads(ctx); err != nil {
		return nil, fmt.Errorf("lock products: %w", err)
	}
	return s.tx.products.held(ids), nil
}

// queueLock queues the locking read of the products of ids not held yet.
func (s Products) queueLock(ids []uuid.UUID) {
	queueLock(s.tx, &s.tx.products, ids, `SELECT `+productColumns+` FROM products WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE`,
		scanProduct, func(st product.State) uuid.UUID { return st.ID }, product.Restore)
}

// Catalogue returns the products with the given ids that exist, by id, as
// Postgres has them, without locking them. A product this transaction
// changed is written back at commit: ask the aggregate GetForUpdate gave.
// In a Group, what the commands named in their ReadAhead was read with BEGIN
// and is answered from there, until the group writes a product.
func (s Products) Catalogue(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]product.State, error) {
	if out, ok := s.tx.catalogue.answer(ids); ok {
		return out, nil
	}
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

// queueCatalogue queues the read of the products of ids, whose answer
// Catalogue then gives for any of them without a round trip.
func (s Products) queueCatalogue(ids []uuid.UUID) {
	s.tx.queueRead(func(rows pgx.Rows) error {
		list, err := pgx.CollectRows(rows, scanProduct)
		if err != nil {
			return err
		}
		c := catalogue{asked: make(map[uuid.UUID]struct{}, len(ids)), found: make(map[uuid.UUID]product.State, len(list))}
		for _, id := range ids {
			c.asked[id] = struct{}{}
		}
		for _, p := range list {
			c.found[p.ID] = p
		}
		s.tx.catalogue = &c
		return nil
	}, `SELECT `+productColumns+` FROM products WHERE id = ANY($1)`, ids)
}

// catalogue is what a transaction read of products ahead of its commands:
// the ids it asked for, and those of them that exist.
type catalogue struct {
	asked map[uuid.UUID]struct{}
	found map[uuid.UUID]product.State
}

// answer returns the products of ids that exist, if all of them were asked
// for; nil, false when the catalogue was not read ahead, was dropped, or
// lacks one of them.
func (c *catalogue) answer(ids []uuid.UUID) (map[uuid.UUID]product.State, bool) {
	if c == nil {
		return nil, false
	}
	out := make(map[uuid.UUID]product.State, len(ids))
	for _, id := range ids {
		if _, ok := c.asked[id]; !ok {
			return nil, false
		}
		if p, ok := c.found[id]; ok {
			out[id] = p
		}
	}
	return out, true
}

func scanProduct(row pgx.CollectableRow) (product.State, error) {
	var st product.State
	err := row.Scan(&st.ID, &st.SKU, &st.Name, &st.PriceCents, &st.Stock, &st.Version, &st.CreatedAt, &st.UpdatedAt)
	return st, err
}
