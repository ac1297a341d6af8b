package projections

import (
	"context"
	"fmt"
)

// Rebuild writes every product and order of src into Redis, each at the
// version src has (the version it has in Postgres), while the system keeps running: the version guards make
// a model only move forward, whether the rebuild or an event gets there
// first. It returns how many products and orders it wrote.
func (s *Store) Rebuild(ctx context.Context, src Origin) (products, orders int, err error) {
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
