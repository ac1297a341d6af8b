package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/product"
)

// Event is what the projector needs of an event: the envelope's fields.
type Event struct {
	Type             string
	AggregateID      uuid.UUID
	AggregateVersion int64
	OccurredAt       time.Time
	Data             json.RawMessage
}

// Types lists the event types the read models are made of: the keys the
// projections group's queue is bound to.
func Types() []string {
	return []string{product.EventCreated, product.EventUpdated, product.EventStockChanged,
		order.EventPlaced, order.EventConfirmed, order.EventRejected, order.EventCancelled}
}

// Apply applies e to the read models. It reports whether anything changed:
// false for a duplicate or an event older than what the models hold. Data
// that does not fit the event's type, or that carries a negative quantity,
// price, stock or total, is domain.ErrInvalid, and nothing of it is written.
func (s *Store) Apply(ctx context.Context, e Event) (bool, error) {
	changed, errs := s.ApplyEach(ctx, []Event{e})
	return changed[0], errs[0]
}

// ApplyEach applies events as Apply would each, in order, in one round trip
// to Redis: it reports for each whether anything changed, and its error
// (every event's, when Redis could not be reached).
func (s *Store) ApplyEach(ctx context.Context, events []Event) (changed []bool, errs []error) {
	changed, errs = make([]bool, len(events)), make([]error, len(events))
	var writes []write
	of := make([]int, 0, 2*len(events)) // the event of each write
	for i, e := range events {
		w, err := s.plan(e)
		if err != nil {
			errs[i] = err
			continue
		}
		writes = append(writes, w...)
		for range w {
			of = append(of, i)
		}
	}
	wrote, failed, err := s.run(ctx, writes)
	for n, i := range of {
		switch {
		case err != nil:
			errs[i] = err
		case failed[n] != nil && errs[i] == nil:
			errs[i] = failed[n]
		case wrote[n]:
			changed[i] = true
		}
	}
	return changed, errs
}

// plan returns the writes that apply e: one per field group it carries.
func (s *Store) plan(e Event) ([]write, error) {
	switch e.Type {
	case product.EventCreated:
		d, err := decode[product.Created](e)
		if err != nil {
			return nil, err
		}
		if err := notNegative(amount{"price_cents", d.PriceCents}, amount{"stock_available", d.StockAvailable}); err != nil {
			return nil, err
		}
		return []write{s.productCatalog(e, d.SKU, d.Name, d.PriceCents), s.productStock(e, d.StockAvailable)}, nil
	case product.EventUpdated:
		d, err := decode[product.Updated](e)
		if err != nil {
			return nil, err
		}
		if err := notNegative(amount{"price_cents", d.PriceCents}); err != nil {
			return nil, err
		}
		return []write{s.productCatalog(e, d.SKU, d.Name, d.PriceCents)}, nil
	case product.EventStockChanged:
		d, err := decode[product.StockChanged](e)
		if err != nil {
			return nil, err
		}
		if err := notNegative(amount{"stock_available", d.StockAvailable}); err != nil {
			return nil, err
		}
		return []write{s.productStock(e, d.StockAvailable)}, nil
	case order.EventPlaced:
		d, err := decode[order.Placed](e)
		if err != nil {
			return nil, err
		}
		amounts := []amount{{"total_cents", d.TotalCents}}
		for i, l := range d.Lines {
			amounts = append(amounts, amount{fmt.Sprintf("items[%d].quantity", i), l.Quantity},
				amount{fmt.Sprintf("items[%d].unit_price_cents", i), l.UnitPriceCents})
		}
		if err := notNegative(amounts...); err != nil {
			return nil, err
		}
		details, err := s.orderDetails(e.AggregateID, d.UserID, d.Lines, d.TotalCents, e.OccurredAt, e.AggregateVersion)
		if err != nil {
			return nil, err
		}
		return []write{details, s.orderStatus(e, d.Status, "")}, nil
	case order.EventConfirmed, order.EventRejected, order.EventCancelled:
		d, err := decode[order.StatusChanged](e)
		if err != nil {
			return nil, err
		}
		return []write{s.orderStatus(e, d.Status, d.Reason)}, nil
	default:
		return nil, fmt.Errorf("%w: projections do not apply %q", domain.ErrInvalid, e.Type)
	}
}

// amount is a number an event carries, by its field.
type amount struct {
	field string
	n     int64
}

// notNegative refuses, with domain.ErrInvalid naming the fields, amounts
// below zero. No genuine event carries one (the domain and Postgres's
// checks refuse them), so an event that does was forged or corrupted: the
// read models would serve it as it is, so none of it is written and it goes
// to the dead queue instead.
func notNegative(amounts ...amount) error {
	var v domain.Validation
	for _, a := range amounts {
		v.Check(a.n >= 0, a.field, "must not be negative")
	}
	return v.Err()
}

func (s *Store) productCatalog(e Event, sku, name string, price int64) write {
	return s.write(s.productKey(e.AggregateID), []string{s.productsKey()}, groupCatalog, e.AggregateVersion,
		0, e.AggregateID.String(), // the list is ordered by id: UUIDv7, so by creation
		"id", e.AggregateID.String(), "sku", sku, "name", name, "price_cents", itoa(price))
}

func (s *Store) productStock(e Event, available int64) write {
	return s.write(s.productKey(e.AggregateID), nil, groupStock, e.AggregateVersion, 0, "",
		"stock_available", itoa(available))
}

func (s *Store) orderDetails(id, user uuid.UUID, lines []order.Line, total int64, created time.Time, version int64) (write, error) {
	items, err := json.Marshal(lines)
	if err != nil {
		return write{}, fmt.Errorf("encode items: %w", err)
	}
	return s.write(s.orderKey(id), []string{s.userOrdersKey(user), s.ordersKey()}, groupDetails, version,
		0, id.String(), // listed by id, newest first: UUIDv7 ids follow creation
		"id", id.String(), "user_id", user.String(), "items", string(items),
		"total_cents", itoa(total), "created_at", formatTime(created)), nil
}

func (s *Store) orderStatus(e Event, status order.Status, reason string) write {
	return s.write(s.orderKey(e.AggregateID), nil, groupStatus, e.AggregateVersion, 0, "",
		"status", string(status), "reason", reason, "updated_at", formatTime(e.OccurredAt))
}

func decode[T any](e Event) (T, error) {
	var v T
	if err := json.Unmarshal(e.Data, &v); err != nil {
		return v, fmt.Errorf("%w: decode %s data: %v", domain.ErrInvalid, e.Type, err)
	}
	return v, nil
}

// PutProduct writes a product as Postgres has it (cache-aside, rebuild):
// every field group at the product's version, so that events older than it
// are ignored and newer ones still apply.
func (s *Store) PutProduct(ctx context.Context, p Product) error {
	e := Event{AggregateID: p.ID, AggregateVersion: p.Version}
	return s.put(ctx, s.productCatalog(e, p.SKU, p.Name, p.PriceCents), s.productStock(e, p.StockAvailable))
}

// PutOrder writes an order as Postgres has it (cache-aside, rebuild); see
// PutProduct. Its created_at is taken from its UUIDv7 id.
func (s *Store) PutOrder(ctx context.Context, o Order) error {
	sec, nsec := o.ID.Time().UnixTime()
	details, err := s.orderDetails(o.ID, o.UserID, o.Items, o.TotalCents, time.Unix(sec, nsec), o.Version)
	if err != nil {
		return err
	}
	return s.put(ctx, details, s.orderStatus(Event{AggregateID: o.ID, AggregateVersion: o.Version, OccurredAt: o.UpdatedAt}, o.Status, o.Reason))
}

// put runs writes and returns the first error.
func (s *Store) put(ctx context.Context, writes ...write) error {
	_, failed, err := s.run(ctx, writes)
	if err != nil {
		return err
	}
	for _, err := range failed {
		if err != nil {
			return err
		}
	}
	return nil
}
