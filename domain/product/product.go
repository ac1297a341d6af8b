// Package product owns the catalogue and its stock: SKUs, names, prices, the
// units available for sale, and the events product.created, product.updated
// and stock.changed. Stock never goes below zero.
package product

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain"
)

// AggregateType names products in events.
const AggregateType = "product"

// Event types.
const (
	EventCreated      = "product.created"
	EventUpdated      = "product.updated"
	EventStockChanged = "stock.changed"
)

// Limits of the input.
const (
	MaxNameLength = 200
	MaxPriceCents = 100_000_000 // one million in the currency's major unit
	MaxStock      = 1_000_000_000
	MaxRestock    = 1_000_000
	maxSKULength  = 64
)

// Reasons carried by stock.changed.
const (
	ReasonRestocked = "restocked"
	ReasonReserved  = "reserved"
	ReasonReleased  = "released"
)

var skuPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Errors.
var (
	ErrNotFound   = fmt.Errorf("product %w", domain.ErrNotFound)
	ErrSKUTaken   = fmt.Errorf("%w: sku already exists", domain.ErrConflict)
	ErrOutOfStock = fmt.Errorf("%w: not enough stock", domain.ErrConflict)
)

// Created is the data of product.created.
type Created struct {
	ProductID      uuid.UUID `json:"product_id"`
	SKU            string    `json:"sku"`
	Name           string    `json:"name"`
	PriceCents     int64     `json:"price_cents"`
	StockAvailable int64     `json:"stock_available"`
}

// Updated is the data of product.updated: the full new catalogue entry.
type Updated struct {
	ProductID  uuid.UUID `json:"product_id"`
	SKU        string    `json:"sku"`
	Name       string    `json:"name"`
	PriceCents int64     `json:"price_cents"`
}

// StockChanged is the data of stock.changed: the new level and the change.
type StockChanged struct {
	ProductID      uuid.UUID  `json:"product_id"`
	StockAvailable int64      `json:"stock_available"`
	Delta          int64      `json:"delta"`
	Reason         string     `json:"reason"`
	OrderID        *uuid.UUID `json:"order_id,omitempty"`
}

// Product is a catalogue entry with its stock.
type Product struct {
	id         uuid.UUID
	sku        string
	name       string
	priceCents int64
	stock      int64
	version    int64
	createdAt  time.Time
	updatedAt  time.Time
	recorded   domain.Recorder
}

// State is the persisted form of a Product.
type State struct {
	ID         uuid.UUID
	SKU        string
	Name       string
	PriceCents int64
	Stock      int64
	Version    int64
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Create adds a product to the catalogue and records product.created.
func Create(id uuid.UUID, sku, name string, priceCents, stock int64, now time.Time) (*Product, error) {
	var v domain.Validation
	v.Check(id != uuid.Nil, "id", "is required")
	sku = strings.TrimSpace(sku)
	switch {
	case sku == "":
		v.Add("sku", "is required")
	case len(sku) > maxSKULength:
		v.Add("sku", fmt.Sprintf("must be at most %d characters", maxSKULength))
	default:
		v.Check(skuPattern.MatchString(sku), "sku", "may hold only letters, digits, '.', '_' and '-'")
	}
	name = validateName(&v, name)
	validatePrice(&v, priceCents)
	v.Check(stock >= 0 && stock <= MaxStock, "stock", fmt.Sprintf("must be between 0 and %d", MaxStock))
	if err := v.Err(); err != nil {
		return nil, err
	}
	p := &Product{id: id, sku: sku, name: name, priceCents: priceCents, stock: stock,
		version: 1, createdAt: domain.Time(now), updatedAt: domain.Time(now)}
	p.recorded.Record(domain.NewEvent(EventCreated, AggregateType, id, p.version, now, Created{
		ProductID: id, SKU: sku, Name: name, PriceCents: priceCents, StockAvailable: stock,
	}))
	return p, nil
}

func validateName(v *domain.Validation, name string) string {
	return v.Text("name", name, MaxNameLength)
}

func validatePrice(v *domain.Validation, priceCents int64) {
	v.Check(priceCents >= 0 && priceCents <= MaxPriceCents, "price_cents",
		fmt.Sprintf("must be between 0 and %d", MaxPriceCents))
}

// Restore rebuilds a Product from its persisted state; it records nothing.
func Restore(s State) *Product {
	return &Product{id: s.ID, sku: s.SKU, name: s.Name, priceCents: s.PriceCents, stock: s.Stock,
		version: s.Version, createdAt: s.CreatedAt, updatedAt: s.UpdatedAt}
}

// State returns the persisted form.
func (p *Product) State() State {
	return State{ID: p.id, SKU: p.sku, Name: p.name, PriceCents: p.priceCents, Stock: p.stock,
		Version: p.version, CreatedAt: p.createdAt, UpdatedAt: p.updatedAt}
}

// Update changes the name and/or the price; nil leaves a field as it is.
// An update that changes nothing records nothing.
func (p *Product) Update(name *string, priceCents *int64, now time.Time) error {
	var v domain.Validation
	if name == nil && priceCents == nil {
		v.Add("name", "name or price_cents is required")
	}
	newName, newPrice := p.name, p.priceCents
	if name != nil {
		newName = validateName(&v, *name)
	}
	if priceCents != nil {
		validatePrice(&v, *priceCents)
		newPrice = *priceCents
	}
	if err := v.Err(); err != nil {
		return err
	}
	if newName == p.name && newPrice == p.priceCents {
		return nil
	}
	p.name, p.priceCents = newName, newPrice
	p.bump(now)
	p.recorded.Record(domain.NewEvent(EventUpdated, AggregateType, p.id, p.version, now, Updated{
		ProductID: p.id, SKU: p.sku, Name: p.name, PriceCents: p.priceCents,
	}))
	return nil
}

// Restock adds quantity units and records stock.changed.
func (p *Product) Restock(quantity int64, now time.Time) error {
	if quantity <= 0 || quantity > MaxRestock {
		return domain.Invalid("quantity", fmt.Sprintf("must be between 1 and %d", MaxRestock))
	}
	if p.stock+quantity > MaxStock {
		return domain.Invalid("quantity", fmt.Sprintf("would raise stock above %d", MaxStock))
	}
	p.changeStock(quantity, ReasonRestocked, nil, now)
	return nil
}

// Reserve takes quantity units for an order; ErrOutOfStock when fewer are left.
func (p *Product) Reserve(orderID uuid.UUID, quantity int64, now time.Time) error {
	if err := validateOrderQuantity(orderID, quantity); err != nil {
		return err
	}
	if quantity > p.stock {
		return fmt.Errorf("product %s: %d wanted, %d available: %w", p.id, quantity, p.stock, ErrOutOfStock)
	}
	p.changeStock(-quantity, ReasonReserved, &orderID, now)
	return nil
}

// Release gives back units an order had reserved.
func (p *Product) Release(orderID uuid.UUID, quantity int64, now time.Time) error {
	if err := validateOrderQuantity(orderID, quantity); err != nil {
		return err
	}
	if quantity > MaxStock-p.stock {
		return domain.Invalid("quantity", fmt.Sprintf("would raise stock above %d", MaxStock))
	}
	p.changeStock(quantity, ReasonReleased, &orderID, now)
	return nil
}

func validateOrderQuantity(orderID uuid.UUID, quantity int64) error {
	var v domain.Validation
	v.Check(orderID != uuid.Nil, "order_id", "is required")
	v.Check(quantity > 0, "quantity", "must be positive")
	return v.Err()
}

func (p *Product) changeStock(delta int64, reason string, orderID *uuid.UUID, now time.Time) {
	p.stock += delta
	p.bump(now)
	p.recorded.Record(domain.NewEvent(EventStockChanged, AggregateType, p.id, p.version, now, StockChanged{
		ProductID: p.id, StockAvailable: p.stock, Delta: delta, Reason: reason, OrderID: orderID,
	}))
}

func (p *Product) bump(now time.Time) {
	p.version++
	p.updatedAt = domain.Time(now)
}

// ID returns the product's id.
func (p *Product) ID() uuid.UUID { return p.id }

// SKU returns the stock keeping unit.
func (p *Product) SKU() string { return p.sku }

// Name returns the display name.
func (p *Product) Name() string { return p.name }

// PriceCents returns the unit price in cents.
func (p *Product) PriceCents() int64 { return p.priceCents }

// Stock returns the units available for sale.
func (p *Product) Stock() int64 { return p.stock }

// Version returns the aggregate version.
func (p *Product) Version() int64 { return p.version }

// CreatedAt returns when the product was created.
func (p *Product) CreatedAt() time.Time { return p.createdAt }

// UpdatedAt returns when the product last changed.
func (p *Product) UpdatedAt() time.Time { return p.updatedAt }

// Events returns the events recorded since the last call.
func (p *Product) Events() []domain.Event { return p.recorded.Events() }
