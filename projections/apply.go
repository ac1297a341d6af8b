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

// Types lists the event types the projections apply.
func Types() []string {
	return []string{product.EventCreated, product.EventUpdated, product.EventStockChanged,
		order.EventPlaced, order.EventConfirmed, order.EventRejected, order.EventCancelled}
}

// Apply applies e to the read models. It reports whether anything changed:
// false for a duplicate or an event older than what the models hold. Data
// that does not fit the event's type is domain.ErrInvalid.
func (s *Store) Apply(ctx context.Context, e Event) (bool, error) {
	switch e.Type {
	case product.EventCreated:
		d, err := decode[product.Created](e)
		if err != nil {
			return false, err
		}
		a, err := s.productCatalog(ctx, e, d.SKU, d.Name, d.PriceCents)
		if err != nil {
			return false, err
		}
		b, err := s.productStock(ctx, e, d.StockAvailable)
		return a || b, err
	case product.EventUpdated:
		d, err := decode[product.Updated](e)
		if err != nil {
			return false, err
		}
		return s.productCatalog(ctx, e, d.SKU, d.Name, d.PriceCents)
	case product.EventStockChanged:
		d, err := decode[product.StockChanged](e)
		if err != nil {
			return false, err
		}
		return s.productStock(ctx, e, d.StockAvailable)
	case order.EventPlaced:
		d, err := decode[order.Placed](e)
		if err != nil {
			return false, err
		}
		items, err := json.Marshal(d.Lines)
		if err != nil {
			return false, fmt.Errorf("encode items: %w", err)
		}
		a, err := s.write(ctx, s.orderKey(e.AggregateID), s.userOrdersKey(d.UserID), groupDetails, e.AggregateVersion,
			0, e.AggregateID.String(), // listed by id, newest first: UUIDv7 ids follow creation
			"id", e.AggregateID.String(), "user_id", d.UserID.String(), "items", string(items),
			"total_cents", itoa(d.TotalCents), "created_at", formatTime(e.OccurredAt))
		if err != nil {
			return false, err
		}
		b, err := s.orderStatus(ctx, e, d.Status)
		return a || b, err
	case order.EventConfirmed, order.EventRejected, order.EventCancelled:
		d, err := decode[order.StatusChanged](e)
		if err != nil {
			return false, err
		}
		return s.orderStatus(ctx, e, d.Status)
	default:
		return false, fmt.Errorf("%w: projections do not apply %q", domain.ErrInvalid, e.Type)
	}
}

func (s *Store) productCatalog(ctx context.Context, e Event, sku, name string, price int64) (bool, error) {
	return s.write(ctx, s.productKey(e.AggregateID), s.productsKey(), groupCatalog, e.AggregateVersion,
		0, e.AggregateID.String(), // the list is ordered by id: UUIDv7, so by creation
		"id", e.AggregateID.String(), "sku", sku, "name", name, "price_cents", itoa(price))
}

func (s *Store) productStock(ctx context.Context, e Event, available int64) (bool, error) {
	return s.write(ctx, s.productKey(e.AggregateID), "", groupStock, e.AggregateVersion, 0, "",
		"stock_available", itoa(available))
}

func (s *Store) orderStatus(ctx context.Context, e Event, status order.Status) (bool, error) {
	return s.write(ctx, s.orderKey(e.AggregateID), "", groupStatus, e.AggregateVersion, 0, "",
		"status", string(status), "updated_at", formatTime(e.OccurredAt))
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
	if _, err := s.productCatalog(ctx, e, p.SKU, p.Name, p.PriceCents); err != nil {
		return err
	}
	_, err := s.productStock(ctx, e, p.StockAvailable)
	return err
}

// PutOrder writes an order as Postgres has it (cache-aside, rebuild); see
// PutProduct. Its created_at is taken from its UUIDv7 id.
func (s *Store) PutOrder(ctx context.Context, o Order) error {
	items, err := json.Marshal(o.Items)
	if err != nil {
		return fmt.Errorf("encode items: %w", err)
	}
	sec, nsec := o.ID.Time().UnixTime()
	created := time.Unix(sec, nsec)
	if _, err := s.write(ctx, s.orderKey(o.ID), s.userOrdersKey(o.UserID), groupDetails, o.Version,
		0, o.ID.String(),
		"id", o.ID.String(), "user_id", o.UserID.String(), "items", string(items),
		"total_cents", itoa(o.TotalCents), "created_at", formatTime(created)); err != nil {
		return err
	}
	_, err = s.orderStatus(ctx, Event{AggregateID: o.ID, AggregateVersion: o.Version, OccurredAt: o.UpdatedAt}, o.Status)
	return err
}
