package projections_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/projections"
)

// origin is an Origin of one product and one order, for rebuilds;
// beforeOrder, when set, runs as a rebuild reaches the order.
type origin struct {
	product     projections.Product
	order       projections.Order
	beforeOrder func()
}

func (o *origin) Product(context.Context, uuid.UUID) (projections.Product, bool, error) {
	return o.product, true, nil
}

func (o *origin) Products(context.Context, uuid.UUID, int) ([]projections.Product, uuid.UUID, error) {
	return []projections.Product{o.product}, uuid.Nil, nil
}

func (o *origin) Order(context.Context, uuid.UUID) (projections.Order, bool, error) {
	return o.order, true, nil
}

func (o *origin) Orders(context.Context, uuid.UUID, uuid.UUID, int) ([]projections.Order, uuid.UUID, error) {
	return []projections.Order{o.order}, uuid.Nil, nil
}

func (o *origin) EachProduct(_ context.Context, fn func(projections.Product) error) error {
	return fn(o.product)
}

func (o *origin) EachOrder(_ context.Context, fn func(projections.Order) error) error {
	if o.beforeOrder != nil {
		o.beforeOrder()
	}
	return fn(o.order)
}

// TestRepairRebuildsOnANewMasterOnly: the first Repair finds no record of a
// master and rebuilds; the next finds this master and does nothing; once
// the record names another master (as it does on a replica promoted by a
// failover, which copied it from the old master) and a write is missing
// (one the old master acknowledged and never replicated), Repair rebuilds
// and the write is back; and so it does for a caller that last saw another
// master, whatever the record says.
func TestRepairRebuildsOnANewMasterOnly(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.Redis(t)
	s, err := projections.New(projections.Config{Client: rdb, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	src := &origin{
		product: projections.Product{ID: uuid.Must(uuid.NewV7()), SKU: "R-1", Name: "Repaired", PriceCents: 100, StockAvailable: 7, Version: 1},
		order: projections.Order{ID: uuid.Must(uuid.NewV7()), UserID: uuid.Must(uuid.NewV7()), Status: order.StatusPending,
			Items:      []order.Line{{ProductID: uuid.Must(uuid.NewV7()), SKU: "R-1", Name: "Repaired", Quantity: 1, UnitPriceCents: 100}},
			TotalCents: 100, Version: 1, UpdatedAt: t0},
	}

	r, err := s.Repair(ctx, src, "")
	if err != nil || !r.Rebuilt || r.Previous != "" || r.Master == "" || r.Products != 1 || r.Orders != 1 {
		t.Fatalf("first Repair = %+v, %v; want a rebuild of 1 product and 1 order, from no master", r, err)
	}
	master := r.Master
	if got, err := rdb.Get(ctx, s.MasterKey()).Result(); err != nil || got != master {
		t.Fatalf("%s = %q, %v; want the master's run_id %q", s.MasterKey(), got, err, master)
	}
	if r, err := s.Repair(ctx, src, ""); err != nil || r.Rebuilt || r.Previous != master || r.Master != master {
		t.Fatalf("second Repair = %+v, %v; want nothing done on the same master", r, err)
	}

	// Postgres moved on (v2), the write of it is lost, and the record
	// names the master that had it.
	src.product.StockAvailable, src.product.Version = 3, 2
	if err := rdb.Set(ctx, s.MasterKey(), "0000old-master", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r, err = s.Repair(ctx, src, "")
	if err != nil || !r.Rebuilt || r.Previous != "0000old-master" || r.Master != master || r.Products != 1 || r.Orders != 1 {
		t.Fatalf("Repair on a new master = %+v, %v; want a rebuild", r, err)
	}
	if p, found, err := s.Product(ctx, src.product.ID); err != nil || !found || p != src.product {
		t.Fatalf("product after the repair = %+v, %v, %v; want %+v", p, found, err, src.product)
	}
	if r, err := s.Repair(ctx, src, master); err != nil || r.Rebuilt {
		t.Fatalf("Repair after the repair = %+v, %v; want nothing done", r, err)
	}

	// The record names this master (another process repaired it), but the
	// caller last wrote to another one, which may have taken its writes.
	src.product.StockAvailable, src.product.Version = 1, 3
	r, err = s.Repair(ctx, src, "0000old-master")
	if err != nil || !r.Rebuilt || r.Previous != master || r.Products != 1 {
		t.Fatalf("Repair by a process that saw another master = %+v, %v; want a rebuild", r, err)
	}
	if p, _, err := s.Product(ctx, src.product.ID); err != nil || p != src.product {
		t.Fatalf("product after the repair = %+v, %v; want %+v", p, err, src.product)
	}
}

// TestRepairRebuildsAgainAfterAFlushMidway: when Redis loses everything
// while a rebuild runs (a FLUSHALL after it wrote the product, before the
// order), the rebuild does not record the models as whole: it fails, and
// the next Repair rebuilds them and records the master.
func TestRepairRebuildsAgainAfterAFlushMidway(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.Redis(t)
	s, err := projections.New(projections.Config{Client: rdb, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	src := &origin{
		product: projections.Product{ID: uuid.Must(uuid.NewV7()), SKU: "F-1", Name: "Flushed", PriceCents: 100, StockAvailable: 7, Version: 1},
		order: projections.Order{ID: uuid.Must(uuid.NewV7()), UserID: uuid.Must(uuid.NewV7()), Status: order.StatusConfirmed,
			Items:      []order.Line{{ProductID: uuid.Must(uuid.NewV7()), SKU: "F-1", Name: "Flushed", Quantity: 1, UnitPriceCents: 100}},
			TotalCents: 100, Version: 2, UpdatedAt: t0},
	}
	// What a FLUSHALL does to this store: every key under its prefix
	// gone (the test's Redis is shared, so not FLUSHALL itself).
	flush := func() {
		keys, err := rdb.Keys(ctx, prefix+"*").Result()
		testenv.Must(t, err, "keys")
		if len(keys) > 0 {
			testenv.Must(t, rdb.Del(ctx, keys...).Err(), "delete the store's keys")
		}
	}
	src.beforeOrder = flush
	r, err := s.Repair(ctx, src, "")
	if err == nil || !r.Rebuilt {
		t.Fatalf("Repair with a flush midway = %+v, %v; want a rebuild that fails", r, err)
	}
	if n, err := rdb.Exists(ctx, s.MasterKey()).Result(); err != nil || n != 0 {
		t.Fatalf("after a flush midway, %s exists (%d, %v): the lost product would never come back", s.MasterKey(), n, err)
	}

	src.beforeOrder = nil
	r, err = s.Repair(ctx, src, "")
	if err != nil || !r.Rebuilt || r.Products != 1 || r.Orders != 1 {
		t.Fatalf("the next Repair = %+v, %v; want a rebuild of 1 product and 1 order", r, err)
	}
	if p, found, err := s.Product(ctx, src.product.ID); err != nil || !found || p != src.product {
		t.Errorf("product after the repair = %+v, %v, %v; want %+v", p, found, err, src.product)
	}
	if o, found, err := s.Order(ctx, src.order.ID); err != nil || !found || o.Version != 2 || o.Status != order.StatusConfirmed {
		t.Errorf("order after the repair = %+v, %v, %v; want it at version 2, confirmed", o, found, err)
	}
	if got, err := rdb.Get(ctx, s.MasterKey()).Result(); err != nil || got != r.Master {
		t.Errorf("%s = %q, %v; want %q", s.MasterKey(), got, err, r.Master)
	}
	if keys, err := rdb.Keys(ctx, prefix+"rebuilding:*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("marks left behind: %v, %v", keys, err)
	}
}
