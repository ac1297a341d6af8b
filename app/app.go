// Package app owns the write side's commands. Each command runs inside a
// store.Tx that its caller opened: it loads aggregates, asks the domain to
// decide, saves the result and appends the recorded events to the outbox, so
// the caller can store an Idempotency-Key response in the same transaction.
package app

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/product"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/store"
)

// Actor is who issues a command.
type Actor struct {
	UserID uuid.UUID
	Role   user.Role
}

// RegisterUser is the input of Register. The password is hashed before the
// transaction starts, because hashing is slow on purpose.
type RegisterUser struct {
	Email        string
	Name         string
	PasswordHash string
	Role         user.Role
}

// Register creates a user; user.ErrEmailTaken when the email is in use.
func Register(ctx context.Context, tx *store.Tx, cmd RegisterUser, now time.Time) (*user.User, error) {
	u, err := user.Register(newID(), cmd.Email, cmd.Name, cmd.PasswordHash, cmd.Role, now)
	if err != nil {
		return nil, err
	}
	tx.Users.Add(u)
	if err := tx.Append(u.Events()...); err != nil {
		return nil, err
	}
	return u, nil
}

// CreateProduct is the input of CreateProduct.
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
	if err := tx.Append(p.Events()...); err != nil {
		return nil, err
	}
	return p, nil
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
	loaded := p.Version()
	if err := change(p); err != nil {
		return nil, err
	}
	if events := p.Events(); len(events) > 0 {
		tx.Products.Save(p, loaded)
		if err := tx.Append(events...); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// PlaceOrder places a pending order for the actor. Prices come from the
// catalogue in Postgres; an unknown product is a validation error naming the
// item.
func PlaceOrder(ctx context.Context, tx *store.Tx, actor Actor, items []order.Item, now time.Time) (*order.Order, error) {
	if err := order.ValidateItems(items); err != nil {
		return nil, err
	}
	ids := make([]uuid.UUID, len(items))
	for i, it := range items {
		ids[i] = it.ProductID
	}
	catalogue, err := tx.Products.Catalogue(ctx, ids)
	if err != nil {
		return nil, err
	}
	var v domain.Validation
	lines := make([]order.Line, len(items))
	for i, it := range items {
		p, ok := catalogue[it.ProductID]
		if !v.Check(ok, fmt.Sprintf("items[%d].product_id", i), "no such product") {
			continue
		}
		lines[i] = order.Line{ProductID: p.ID, SKU: p.SKU, Name: p.Name, Quantity: it.Quantity, UnitPriceCents: p.PriceCents}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	o, err := order.Place(newID(), actor.UserID, lines, now)
	if err != nil {
		return nil, err
	}
	tx.Orders.Add(o)
	if err := tx.Append(o.Events()...); err != nil {
		return nil, err
	}
	return o, nil
}

// CancelOrder cancels an order of the actor's (any order, for an admin).
// Another user's order is order.ErrNotFound, so its existence is not given
// away; an order past confirmation is order.ErrNotCancellable.
func CancelOrder(ctx context.Context, tx *store.Tx, actor Actor, id uuid.UUID, now time.Time) (*order.Order, error) {
	o, err := tx.Orders.GetForUpdate(ctx, id)
	if err != nil {
		return nil, err
	}
	if o.CustomerID() != actor.UserID && actor.Role != user.RoleAdmin {
		return nil, order.ErrNotFound
	}
	loaded := o.Version()
	if err := o.Cancel(now); err != nil {
		return nil, err
	}
	tx.Orders.Save(o, loaded)
	if err := tx.Append(o.Events()...); err != nil {
		return nil, err
	}
	return o, nil
}

func newID() uuid.UUID { return uuid.Must(uuid.NewV7()) }
