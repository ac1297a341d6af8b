// Package order owns orders: what a customer asked for at which prices, and
// the life cycle pending → confirmed | rejected, with cancellation of pending
// and confirmed orders. It records order.placed, order.confirmed,
// order.rejected and order.cancelled.
package order

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain"
)

// AggregateType names orders in events.
const AggregateType = "order"

// Event types.
const (
	EventPlaced    = "order.placed"
	EventConfirmed = "order.confirmed"
	EventRejected  = "order.rejected"
	EventCancelled = "order.cancelled"
)

// Limits of an order.
const (
	MaxLines    = 100
	MaxQuantity = 1000 // per line
	// MaxUnitPriceCents bounds a line's price, so that a total
	// (MaxLines × MaxQuantity × MaxUnitPriceCents) cannot overflow.
	MaxUnitPriceCents = 100_000_000
)

// Status is where an order is in its life cycle.
type Status string

// Statuses.
const (
	StatusPending   Status = "pending"
	StatusConfirmed Status = "confirmed"
	StatusRejected  Status = "rejected"
	StatusCancelled Status = "cancelled"
)

// Errors.
var (
	ErrNotFound       = fmt.Errorf("order %w", domain.ErrNotFound)
	ErrNotCancellable = fmt.Errorf("%w: order can no longer be cancelled", domain.ErrConflict)
	ErrNotPending     = fmt.Errorf("%w: order is no longer pending", domain.ErrConflict)
)

// Item is one requested line before prices are known.
type Item struct {
	ProductID uuid.UUID
	Quantity  int64
}

// Line is one line of a placed order, priced from the catalogue.
type Line struct {
	ProductID      uuid.UUID `json:"product_id"`
	SKU            string    `json:"sku"`
	Name           string    `json:"name"`
	Quantity       int64     `json:"quantity"`
	UnitPriceCents int64     `json:"unit_price_cents"`
}

// Placed is the data of order.placed.
type Placed struct {
	OrderID    uuid.UUID `json:"order_id"`
	UserID     uuid.UUID `json:"user_id"`
	Status     Status    `json:"status"`
	Lines      []Line    `json:"items"`
	TotalCents int64     `json:"total_cents"`
}

// StatusChanged is the data of order.confirmed, order.rejected and
// order.cancelled.
type StatusChanged struct {
	OrderID uuid.UUID `json:"order_id"`
	UserID  uuid.UUID `json:"user_id"`
	Status  Status    `json:"status"`
	From    Status    `json:"from"`
	Reason  string    `json:"reason,omitempty"`
}

// Order is a customer's order.
type Order struct {
	id         uuid.UUID
	customer   uuid.UUID
	status     Status
	reason     string // why it was rejected
	lines      []Line
	totalCents int64
	version    int64
	createdAt  time.Time
	updatedAt  time.Time
	recorded   domain.Recorder
}

// State is the persisted form of an Order.
type State struct {
	ID         uuid.UUID
	CustomerID uuid.UUID
	Status     Status
	Reason     string
	Lines      []Line
	TotalCents int64
	Version    int64
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// ItemField names a field of the i-th item in validation errors:
// "items[2].quantity".
func ItemField(i int, name string) string {
	return "items[" + strconv.Itoa(i) + "]." + name
}

// ValidateItems checks a request's items before any product is looked up:
// 1 to MaxLines lines, each product once, quantities 1 to MaxQuantity.
func ValidateItems(items []Item) error {
	var v domain.Validation
	switch {
	case len(items) == 0:
		v.Add("items", "must hold at least one item")
	case len(items) > MaxLines:
		v.Add("items", fmt.Sprintf("must hold at most %d items", MaxLines))
	}
	seen := make(map[uuid.UUID]int, len(items))
	for i, it := range items {
		if len(items) > MaxLines {
			break
		}
		// Field names and messages are formatted only for a failing rule:
		// every order passes through here three times.
		if it.ProductID == uuid.Nil {
			v.Add(ItemField(i, "product_id"), "is required")
		} else if first, dup := seen[it.ProductID]; dup {
			v.Add(ItemField(i, "product_id"), fmt.Sprintf("repeats items[%d]; order each product once", first))
		} else {
			seen[it.ProductID] = i
		}
		if it.Quantity < 1 || it.Quantity > MaxQuantity {
			v.Add(ItemField(i, "quantity"), fmt.Sprintf("must be between 1 and %d", MaxQuantity))
		}
	}
	return v.Err()
}

// Place creates a pending order from priced lines and records order.placed.
func Place(id, customer uuid.UUID, lines []Line, now time.Time) (*Order, error) {
	items := make([]Item, len(lines))
	for i, l := range lines {
		items[i] = Item{ProductID: l.ProductID, Quantity: l.Quantity}
	}
	var v domain.Validation
	v.Check(id != uuid.Nil, "id", "is required")
	v.Check(customer != uuid.Nil, "user_id", "is required")
	var invalid *domain.ValidationError
	if errors.As(ValidateItems(items), &invalid) {
		for _, f := range invalid.Fields {
			v.Add(f.Field, f.Message)
		}
	}
	var total int64
	for i, l := range lines {
		if i >= MaxLines {
			break
		}
		if l.UnitPriceCents < 0 || l.UnitPriceCents > MaxUnitPriceCents {
			v.Add(ItemField(i, "unit_price_cents"), fmt.Sprintf("must be between 0 and %d", MaxUnitPriceCents))
		} else if l.Quantity > 0 && l.Quantity <= MaxQuantity {
			total += l.Quantity * l.UnitPriceCents
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	o := &Order{id: id, customer: customer, status: StatusPending,
		lines: append([]Line(nil), lines...), totalCents: total, version: 1,
		createdAt: domain.Time(now), updatedAt: domain.Time(now)}
	o.recorded.Record(domain.NewEvent(EventPlaced, AggregateType, id, o.version, now, Placed{
		OrderID: id, UserID: customer, Status: o.status, Lines: o.Lines(), TotalCents: total,
	}))
	return o, nil
}

// Restore rebuilds an Order from its persisted state; it records nothing.
func Restore(s State) *Order {
	return &Order{id: s.ID, customer: s.CustomerID, status: s.Status, reason: s.Reason,
		lines: append([]Line(nil), s.Lines...), totalCents: s.TotalCents, version: s.Version,
		createdAt: s.CreatedAt, updatedAt: s.UpdatedAt}
}

// State returns the persisted form.
func (o *Order) State() State {
	return State{ID: o.id, CustomerID: o.customer, Status: o.status, Reason: o.reason, Lines: o.Lines(),
		TotalCents: o.totalCents, Version: o.version, CreatedAt: o.createdAt, UpdatedAt: o.updatedAt}
}

// Confirm marks a pending order confirmed once its stock is reserved.
func (o *Order) Confirm(now time.Time) error {
	if o.status != StatusPending {
		return fmt.Errorf("confirm order %s (%s): %w", o.id, o.status, ErrNotPending)
	}
	o.transition(EventConfirmed, StatusConfirmed, "", now)
	return nil
}

// Reject marks a pending order rejected, e.g. because stock ran out; the
// order keeps the reason.
func (o *Order) Reject(reason string, now time.Time) error {
	if o.status != StatusPending {
		return fmt.Errorf("reject order %s (%s): %w", o.id, o.status, ErrNotPending)
	}
	o.reason = reason
	o.transition(EventRejected, StatusRejected, reason, now)
	return nil
}

// Cancel cancels a pending or confirmed order.
func (o *Order) Cancel(now time.Time) error {
	if o.status != StatusPending && o.status != StatusConfirmed {
		return fmt.Errorf("cancel order %s (%s): %w", o.id, o.status, ErrNotCancellable)
	}
	o.transition(EventCancelled, StatusCancelled, "", now)
	return nil
}

func (o *Order) transition(eventType string, to Status, reason string, now time.Time) {
	from := o.status
	o.status = to
	o.version++
	o.updatedAt = domain.Time(now)
	o.recorded.Record(domain.NewEvent(eventType, AggregateType, o.id, o.version, now, StatusChanged{
		OrderID: o.id, UserID: o.customer, Status: to, From: from, Reason: reason,
	}))
}

// ID returns the order's id.
func (o *Order) ID() uuid.UUID { return o.id }

// CustomerID returns the id of the user who placed the order.
func (o *Order) CustomerID() uuid.UUID { return o.customer }

// Status returns the current status.
func (o *Order) Status() Status { return o.status }

// Reason says why a rejected order was rejected; empty otherwise.
func (o *Order) Reason() string { return o.reason }

// Lines returns a copy of the order's lines.
func (o *Order) Lines() []Line { return append([]Line(nil), o.lines...) }

// TotalCents returns the sum of quantity × unit price over all lines.
func (o *Order) TotalCents() int64 { return o.totalCents }

// Version returns the aggregate version.
func (o *Order) Version() int64 { return o.version }

// CreatedAt returns when the order was placed.
func (o *Order) CreatedAt() time.Time { return o.createdAt }

// UpdatedAt returns when the order last changed.
func (o *Order) UpdatedAt() time.Time { return o.updatedAt }

// Events returns the events recorded since the last call.
func (o *Order) Events() []domain.Event { return o.recorded.Events() }
