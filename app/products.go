package app

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain/product"
	"github.com/shopdev/shop/store"
)

// CreateProduct is the input of AddProduct.
type CreateProduct struct {
	SKU        string
	Name       string
	PriceCents int64
	Stock      int64
}

// AddProduct adds a product to the catalogue; product.ErrSKUTaken when the
// SKU is in use.
func AddProduct(ctx context.Context, tx *store.Tx, cmd CreateProduct, now time.Time) (*product.Product, error) {
	p, err := product.Create(newID(), cmd.SKU, cmd.Name, cmd.PriceCents, cmd.Stock, now)
	if err != nil {
		return nil, err
	}
	tx.Products.Add(p)
	return recorded(tx, p)
}

// UpdateProduct changes a product's name and/or price; nil leaves a field.
func UpdateProduct(ctx context.Context, tx *store.Tx, id uuid.UUID, name *string, priceCents *int64, now time.Time) (*product.Product, error) {
	return changeProduct(ctx, tx, id, func(p *product.Product) error { return p.Update(name, priceCents, now) })
}

// Restock adds units to a product's stock.
func Restock(ctx context.Context, tx *store.Tx, id uuid.UUID, quantity int64, now time.Time) (*product.Product, error) {
	return changeProduct(ctx, tx, id, func(p *product.Product) error { return p.Restock(quantity, now) })
}

func changeProduct(ctx context.Context, tx *store.Tx, id uuid.UUID, change func(*product.Product) error) (*product.Product, error) {
	p, err := tx.Products.GetForUpdate(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := change(p); err != nil {
		return nil, err
	}
	return recorded(tx, p)
}
