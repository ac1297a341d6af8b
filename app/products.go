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

// AddProduct adds a product to the catalogue, for an admin (the audit log
// says which); product.ErrSKUTaken when the SKU is in use.
func AddProduct(ctx context.Context, tx *store.Tx, actor Actor, cmd CreateProduct, now time.Time) (*product.Product, error) {
	p, err := product.Create(newID(), cmd.SKU, cmd.Name, cmd.PriceCents, cmd.Stock, now)
	if err != nil {
		return nil, err
	}
	tx.Products.Add(p)
	st := p.State()
	err = audit(tx, actor, AuditProductCreate, product.AggregateType, p.ID(), productDetails{
		SKU: st.SKU, Name: &st.Name, PriceCents: &st.PriceCents, Stock: &st.Stock}, now)
	if err != nil {
		return nil, err
	}
	return recorded(tx, p)
}

// UpdateProduct changes a product's name and/or price (nil leaves a field),
// for an admin.
func UpdateProduct(ctx context.Context, tx *store.Tx, actor Actor, id uuid.UUID, name *string, priceCents *int64, now time.Time) (*product.Product, error) {
	return changeProduct(ctx, tx, actor, AuditProductUpdate, id, func(p *product.Product) (productDetails, error) {
		err := p.Update(name, priceCents, now)
		st := p.State()
		d := productDetails{SKU: st.SKU}
		if name != nil {
			d.Name = &st.Name
		}
		if priceCents != nil {
			d.PriceCents = &st.PriceCents
		}
		return d, err
	}, now)
}

// Restock adds units to a product's stock, for an admin.
func Restock(ctx context.Context, tx *store.Tx, actor Actor, id uuid.UUID, quantity int64, now time.Time) (*product.Product, error) {
	return changeProduct(ctx, tx, actor, AuditProductRestock, id, func(p *product.Product) (productDetails, error) {
		err := p.Restock(quantity, now)
		st := p.State()
		return productDetails{SKU: st.SKU, Quantity: &quantity, Stock: &st.Stock}, err
	}, now)
}

// productDetails is what the audit log keeps of a product command: the
// SKU, and the fields it set.
type productDetails struct {
	SKU        string  `json:"sku"`
	Name       *string `json:"name,omitempty"`
	PriceCents *int64  `json:"price_cents,omitempty"`
	Quantity   *int64  `json:"quantity,omitempty"`
	Stock      *int64  `json:"stock,omitempty"` // after the command
}

func changeProduct(ctx context.Context, tx *store.Tx, actor Actor, action string, id uuid.UUID,
	change func(*product.Product) (productDetails, error), now time.Time) (*product.Product, error) {
	p, err := tx.Products.GetForUpdate(ctx, id)
	if err != nil {
		return nil, err
	}
	details, err := change(p)
	if err != nil {
		return nil, err
	}
	if err := audit(tx, actor, action, product.AggregateType, id, details, now); err != nil {
		return nil, err
	}
	return recorded(tx, p)
}
