package projections

import (
	"context"
	"fmt"
)

// Source walks the write side's products and orders: Postgres, through
// store.Reads.
type Source interface {
	EachProduct(ctx context.Context, fn func(Product) error) error
	EachOrder(ctx context.Context, fn func(Order) error) error
}

// Rebuild writes every product and order of src into Redis, each at the
// version src has, while the system keeps running: the version guards make
// a model only move forward, whether the rebuild or an event gets there
// first. It returns how many products and orders it wrote.
func (s *Store) Rebuild(ctx context.Context, src Source) (products, orders int, err error) {
	err = src.EachProduct(ctx, func(p Product) error {
		products++
		return s.PutProduct(ctx, p)
	})
	if err != nil {
		return products, 0, fmt.Errorf("rebuild products: %w", err)
	}
	err = src.EachOrder(ctx, func(o Order) error {
		orders++
		return s.PutOrder(ctx, o)
	})
	if err != nil {
		return products, orders, fmt.Errorf("rebuild orders: %w", err)
	}
	return products, orders, nil
}
