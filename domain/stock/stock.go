// Package stock owns reservations: the units of the catalogue an order holds.
// A reservation takes every line of an order from the products' stock or
// none of them, gives the units back when the order is cancelled, and
// records stock.reserved, stock.rejected and stock.released (the products
// record their own stock.changed). Its state machine makes the outcome the
// same whatever order the order's events arrive in:
//
//	(none) ── order placed ──▶ reserved ── order cancelled ──▶ released
//	   │            └─────────▶ rejected (not enough stock; nothing taken)
//	   └──── order cancelled first ──▶ cancelled (a later "placed" takes nothing)
package stock

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/product"
)

// AggregateType names reservations in events. A reservation's id is its
// order's id.
const AggregateType = "reservation"

// Event types.
const (
	EventReserved = "stock.reserved"
	EventRejected = "stock.rejected"
	EventReleased = "stock.released"
)

// Errors of an order.placed that cannot be right (see CheckPlaced): a
// consumer sends it to the dead queue with the reason, as for any
// domain.ErrNotFound or domain.ErrInvalid, instead of retrying it.
var (
	ErrUnknownOrder = fmt.Errorf("order %w: the event names an order that was never placed", domain.ErrNotFound)
	ErrNotAsOrdered = fmt.Errorf("%w: the event's items differ from the order's", domain.ErrInvalid)
)

// Status is where a reservation is in its life cycle.
type Status string

// Statuses.
const (
	StatusReserved  Status = "reserved"
	StatusRejected  Status = "rejected"
	StatusReleased  Status = "released"
	StatusCancelled Status = "cancelled" // the order was cancelled before it was seen placed
)

// Line is the quantity of one product an order asks for.
type Line struct {
	ProductID uuid.UUID `json:"product_id"`
	Quantity  int64     `json:"quantity"`
}

// Reserved is the data of stock.reserved.
type Reserved struct {
	OrderID uuid.UUID `json:"order_id"`
	Lines   []Line    `json:"items"`
}

// Rejected is the data of stock.rejected: why the order could not be served.
type Rejected struct {
	OrderID uuid.UUID `json:"order_id"`
	Lines   []Line    `json:"items"`
	Reason  string    `json:"reason"`
}

// Released is the data of stock.released: the units given back.
type Released struct {
	OrderID uuid.UUID `json:"order_id"`
	Lines   []Line    `json:"items"`
}

// Reservation is the stock an order holds.
type Reservation struct {
	orderID   uuid.UUID
	status    Status
	lines     []Line
	reason    string
	version   int64
	updatedAt time.Time
	recorded  domain.Recorder
}

// State is the persisted form of a Reservation.
type State struct {
	OrderID   uuid.UUID
	Status    Status
	Lines     []Line
	Reason    string
	Version   int64
	UpdatedAt time.Time
}

// Reserve decides an order's stock: when every line's product has enough
// units, it takes them from products (each records stock.changed) and
// records stock.reserved; otherwise it takes nothing and records
// stock.rejected with the reason. products holds the lines' products, loaded
// for update; a product missing from it does not exist.
func Reserve(orderID uuid.UUID, lines []Line, products map[uuid.UUID]*product.Product, now time.Time) (*Reservation, error) {
	if err := validate(orderID, lines); err != nil {
		return nil, err
	}
	r := &Reservation{orderID: orderID, lines: slices.Clone(lines), version: 1, updatedAt: domain.Time(now)}
	var short []string
	for _, l := range lines {
		p, ok := products[l.ProductID]
		switch {
		case !ok:
			short = append(short, fmt.Sprintf("product %s does not exist", l.ProductID))
		case p.Stock() < l.Quantity:
			short = append(short, fmt.Sprintf("%s: %d wanted, %d available", p.SKU(), l.Quantity, p.Stock()))
		}
	}
	if len(short) > 0 {
		r.status, r.reason = StatusRejected, "not enough stock: "+strings.Join(short, "; ")
		r.recorded.Record(domain.NewEvent(EventRejected, AggregateType, orderID, r.version, now,
			Rejected{OrderID: orderID, Lines: r.Lines(), Reason: r.reason}))
		return r, nil
	}
	for _, l := range lines {
		if err := products[l.ProductID].Reserve(orderID, l.Quantity, now); err != nil {
			// Unreachable after the check above; kept so a change there
			// cannot take part of an order's stock silently.
			return nil, fmt.Errorf("reserve %s: %w", l.ProductID, err)
		}
	}
	r.status = StatusReserved
	r.recorded.Record(domain.NewEvent(EventReserved, AggregateType, orderID, r.version, now,
		Reserved{OrderID: orderID, Lines: r.Lines()}))
	return r, nil
}

// CheckPlaced checks an order.placed against the order it names, as the
// write model holds it, before anything is reserved: ordered are that
// order's lines, and found is false when there is no such order. The API
// writes the order in the transaction that records the event, so a genuine
// order.placed always finds its order, with the same lines; one that does
// not was forged, or comes from another database, and must take no stock
// (ErrUnknownOrder, ErrNotAsOrdered).
//
// Beyond existence it compares the lines (product and quantity, in order),
// because they are all that a reservation takes: an event naming a real
// order with other lines would otherwise hold what the order never asked
// for. The rest (the buyer, prices, total) moves no stock, and is left to
// the groups that use it.
func CheckPlaced(orderID uuid.UUID, lines, ordered []Line, found bool) error {
	switch {
	case !found:
		return fmt.Errorf("order %s: %w", orderID, ErrUnknownOrder)
	case !slices.Equal(lines, ordered):
		return fmt.Errorf("order %s: %w", orderID, ErrNotAsOrdered)
	}
	return nil
}

// CancelBeforePlaced records that an order was cancelled before its
// order.placed arrived: when it does, nothing is reserved. It records no
// event, since no stock moved.
func CancelBeforePlaced(orderID uuid.UUID, now time.Time) (*Reservation, error) {
	if orderID == uuid.Nil {
		return nil, domain.Invalid("order_id", "is required")
	}
	return &Reservation{orderID: orderID, status: StatusCancelled, version: 1, updatedAt: domain.Time(now)}, nil
}

// Release gives a reserved order's units back to products (each records
// stock.changed) and records stock.released. A reservation that holds
// nothing (rejected, released, cancelled) is left as it is; Release reports
// whether it changed anything.
func (r *Reservation) Release(products map[uuid.UUID]*product.Product, now time.Time) (bool, error) {
	if r.status != StatusReserved {
		return false, nil
	}
	for _, l := range r.lines {
		p, ok := products[l.ProductID]
		if !ok {
			return false, fmt.Errorf("release order %s: product %s: %w", r.orderID, l.ProductID, product.ErrNotFound)
		}
		if err := p.Release(r.orderID, l.Quantity, now); err != nil {
			return false, fmt.Errorf("release order %s: %w", r.orderID, err)
		}
	}
	r.status = StatusReleased
	r.version++
	r.updatedAt = domain.Time(now)
	r.recorded.Record(domain.NewEvent(EventReleased, AggregateType, r.orderID, r.version, now,
		Released{OrderID: r.orderID, Lines: r.Lines()}))
	return true, nil
}

func validate(orderID uuid.UUID, lines []Line) error {
	var v domain.Validation
	v.Check(orderID != uuid.Nil, "order_id", "is required")
	v.Check(len(lines) > 0, "items", "must hold at least one item")
	seen := make(map[uuid.UUID]bool, len(lines))
	for i, l := range lines {
		field := fmt.Sprintf("items[%d]", i)
		if v.Check(l.ProductID != uuid.Nil, field+".product_id", "is required") {
			v.Check(!seen[l.ProductID], field+".product_id", "repeats an earlier item")
			seen[l.ProductID] = true
		}
		v.Check(l.Quantity > 0, field+".quantity", "must be positive")
	}
	return v.Err()
}

// Restore rebuilds a Reservation from its persisted state; it records nothing.
func Restore(s State) *Reservation {
	return &Reservation{orderID: s.OrderID, status: s.Status, lines: slices.Clone(s.Lines),
		reason: s.Reason, version: s.Version, updatedAt: s.UpdatedAt}
}

// State returns the persisted form.
func (r *Reservation) State() State {
	return State{OrderID: r.orderID, Status: r.status, Lines: r.Lines(), Reason: r.reason,
		Version: r.version, UpdatedAt: r.updatedAt}
}

// OrderID returns the id of the order the reservation is for.
func (r *Reservation) OrderID() uuid.UUID { return r.orderID }

// Status returns the current status.
func (r *Reservation) Status() Status { return r.status }

// Lines returns a copy of the reserved (or requested) lines.
func (r *Reservation) Lines() []Line { return slices.Clone(r.lines) }

// Reason says why a rejected reservation was rejected.
func (r *Reservation) Reason() string { return r.reason }

// Version returns the aggregate version.
func (r *Reservation) Version() int64 { return r.version }

// Events returns the events recorded since the last call.
func (r *Reservation) Events() []domain.Event { return r.recorded.Events() }
