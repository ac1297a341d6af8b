package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/product"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/projections"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// newStore returns a Store on the real Redis under a key prefix of the
// test's own; its keys are deleted when the test ends.
func newStore(t *testing.T) *projections.Store {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	s, err := projections.New(projections.Config{Client: rdb, Prefix: prefix})
	if err != nil {
		t.Fatalf("new store: %v", err)
	}
	return s
}

func asEvents(t *testing.T, events ...domain.Event) []projections.Event {
	t.Helper()
	out := make([]projections.Event, len(events))
	for i, e := range events {
		data, err := json.Marshal(e.Data)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		out[i] = projections.Event{Type: e.Type, AggregateID: e.AggregateID, AggregateVersion: e.AggregateVersion,
			OccurredAt: e.OccurredAt, Data: data}
	}
	return out
}

// history returns the events of a product's and an order's lives: the
// product is created, renamed, restocked, reserved from; the order is
// placed, confirmed and cancelled.
func history(t *testing.T) (productID, orderID, userID uuid.UUID, events []projections.Event) {
	t.Helper()
	p, err := product.Create(uuid.Must(uuid.NewV7()), "MUG-1", "Mug", 1200, 10, t0)
	if err != nil {
		t.Fatal(err)
	}
	name, price := "Big mug", int64(1500)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(p.Update(&name, nil, t0.Add(time.Second)))
	must(p.Restock(5, t0.Add(2*time.Second)))
	must(p.Update(nil, &price, t0.Add(3*time.Second)))
	userID = uuid.Must(uuid.NewV7())
	o, err := order.Place(uuid.Must(uuid.NewV7()), userID, []order.Line{{ProductID: p.ID(), SKU: "MUG-1", Name: "Big mug",
		Quantity: 2, UnitPriceCents: 1500}}, t0.Add(4*time.Second))
	must(err)
	must(p.Reserve(o.ID(), 2, t0.Add(5*time.Second)))
	must(o.Confirm(t0.Add(6 * time.Second)))
	must(o.Cancel(t0.Add(7 * time.Second)))
	must(p.Release(o.ID(), 2, t0.Add(8*time.Second)))
	return p.ID(), o.ID(), userID, append(asEvents(t, p.Events()...), asEvents(t, o.Events()...)...)
}

func TestEventsInOrderBuildTheModels(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	pid, oid, uid, events := history(t)
	for _, e := range events {
		changed, err := s.Apply(ctx, e)
		if err != nil || !changed {
			t.Fatalf("Apply(%s v%d) = %v, %v; want true, nil", e.Type, e.AggregateVersion, changed, err)
		}
	}
	p, found, err := s.Product(ctx, pid)
	want := projections.Product{ID: pid, SKU: "MUG-1", Name: "Big mug", PriceCents: 1500, StockAvailable: 15, Version: 6}
	if err != nil || !found || p != want {
		t.Fatalf("Product = %+v, %v, %v; want %+v", p, found, err, want)
	}
	o, found, err := s.Order(ctx, oid)
	if err != nil || !found || o.Status != order.StatusCancelled || o.Version != 3 || o.TotalCents != 3000 ||
		o.UserID != uid || len(o.Items) != 1 || o.Items[0].Quantity != 2 || !o.UpdatedAt.Equal(t0.Add(7*time.Second)) {
		t.Fatalf("Order = %+v, %v, %v", o, found, err)
	}
	for _, e := range events { // every one again: nothing changes
		if changed, err := s.Apply(ctx, e); err != nil || changed {
			t.Fatalf("re-Apply(%s v%d) = %v, %v; want false, nil", e.Type, e.AggregateVersion, changed, err)
		}
	}
}

func TestDuplicatesAndShuffledEventsConverge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pid, oid, uid, events := history(t)
	ordered := newStore(t)
	for _, e := range events {
		if _, err := ordered.Apply(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	wantP, _, _ := ordered.Product(ctx, pid)
	wantO, _, _ := ordered.Order(ctx, oid)
	rng := testenv.Rand(t)
	for run := range 30 {
		s := newStore(t)
		deliveries := append(append([]projections.Event{}, events...), events...)
		rng.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })
		switch run % 3 {
		case 0: // one at a time
			for _, e := range deliveries {
				if _, err := s.Apply(ctx, e); err != nil {
					t.Errorf("Apply: %v", err)
				}
			}
		case 1: // four appliers race, as replicas would
			var wg sync.WaitGroup
			for a := range 4 {
				wg.Go(func() {
					for i := a; i < len(deliveries); i += 4 {
						if _, err := s.Apply(ctx, deliveries[i]); err != nil {
							t.Errorf("Apply: %v", err)
						}
					}
				})
			}
			wg.Wait()
		case 2: // in batches of 1 to 8, as the projections group applies them under load
			for rest := deliveries; len(rest) > 0; {
				n := min(len(rest), 1+rng.IntN(8))
				_, errs := s.ApplyEach(ctx, rest[:n])
				for _, err := range errs {
					if err != nil {
						t.Errorf("ApplyEach: %v", err)
					}
				}
				rest = rest[n:]
			}
		}
		p, _, _ := s.Product(ctx, pid)
		o, _, _ := s.Order(ctx, oid)
		if p != wantP || !reflect.DeepEqual(o, wantO) {
			t.Fatalf("run %d: product %+v, order %+v; want %+v, %+v", run, p, o, wantP, wantO)
		}
		for _, owner := range []uuid.UUID{uid, uuid.Nil} { // the user's orders, and everyone's
			list, _, err := s.Orders(ctx, owner, uuid.Nil, 10)
			if err != nil || len(list) != 1 || list[0].ID != oid {
				t.Fatalf("run %d: Orders(%s) = %+v, %v", run, owner, list, err)
			}
		}
	}
}

func TestPartialModelsAreNotFound(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	pid, oid, _, events := history(t)
	late := map[string]bool{product.EventCreated: true, order.EventPlaced: true}
	for _, e := range events {
		if !late[e.Type] {
			if _, err := s.Apply(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	// product.updated carries the whole catalogue entry, so the product is
	// complete without its product.created.
	if p, found, err := s.Product(ctx, pid); !found || err != nil || p.Name != "Big mug" || p.StockAvailable != 15 {
		t.Errorf("product without product.created: %+v, found %v, %v; want the latest state", p, found, err)
	}
	if _, found, err := s.Order(ctx, oid); found || err != nil {
		t.Errorf("order without order.placed: found %v, %v; want not found", found, err)
	}
	for _, e := range events {
		if late[e.Type] {
			if _, err := s.Apply(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	o, found, err := s.Order(ctx, oid)
	if err != nil || !found || o.Status != order.StatusCancelled || o.Version != 3 || len(o.Items) != 1 {
		t.Errorf("order after its late order.placed = %+v, %v, %v; want cancelled v3 with its item", o, found, err)
	}
	p, found, err := s.Product(ctx, pid)
	if err != nil || !found || p.Name != "Big mug" || p.PriceCents != 1500 || p.StockAvailable != 15 || p.Version != 6 {
		t.Errorf("product after its late product.created = %+v, %v, %v; want the latest of every field", p, found, err)
	}
}

func TestPaging(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	user := uuid.Must(uuid.NewV7())
	var products, orders []uuid.UUID
	for i := range 7 {
		p, err := product.Create(uuid.Must(uuid.NewV7()), "SKU-"+string(rune('A'+i)), "Item", 100, 1, t0)
		if err != nil {
			t.Fatal(err)
		}
		o, err := order.Place(uuid.Must(uuid.NewV7()), user, []order.Line{{ProductID: p.ID(), SKU: "S", Name: "I", Quantity: 1, UnitPriceCents: 100}}, t0.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range asEvents(t, append(p.Events(), o.Events()...)...) {
			if _, err := s.Apply(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		products, orders = append(products, p.ID()), append(orders, o.ID())
	}
	var gotProducts []uuid.UUID
	for cursor, pages := uuid.Nil, 0; ; pages++ {
		page, next, err := s.Products(ctx, cursor, 3)
		if err != nil || pages > 3 {
			t.Fatalf("Products: %v after %d pages", err, pages)
		}
		for _, p := range page {
			gotProducts = append(gotProducts, p.ID)
		}
		if next == uuid.Nil {
			break
		}
		cursor = next
	}
	if !reflect.DeepEqual(gotProducts, products) {
		t.Errorf("products paged = %v, want %v (creation order)", gotProducts, products)
	}
	slices.Reverse(orders)
	for _, owner := range []uuid.UUID{user, uuid.Nil} { // the user's orders, and everyone's
		var gotOrders []uuid.UUID
		for cursor, pages := uuid.Nil, 0; ; pages++ {
			page, next, err := s.Orders(ctx, owner, cursor, 2)
			if err != nil || pages > 4 {
				t.Fatalf("Orders(%s): %v after %d pages", owner, err, pages)
			}
			for _, o := range page {
				gotOrders = append(gotOrders, o.ID)
			}
			if next == uuid.Nil {
				break
			}
			cursor = next
		}
		if !reflect.DeepEqual(gotOrders, orders) {
			t.Errorf("orders of %s paged = %v, want %v (newest first)", owner, gotOrders, orders)
		}
	}
}

// TestRejectedOrderKeepsItsReason: the read model of a rejected order says
// why, as order.rejected does.
func TestRejectedOrderKeepsItsReason(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	o, err := order.Place(uuid.Must(uuid.NewV7()), uuid.New(), []order.Line{{ProductID: uuid.New(), SKU: "A", Name: "A", Quantity: 2, UnitPriceCents: 5}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	placed := o.Events()
	if err := o.Reject("not enough stock: A: 2 wanted, 1 available", t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, e := range asEvents(t, append(placed, o.Events()...)...) {
		if _, err := s.Apply(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	got, found, err := s.Order(ctx, o.ID())
	if err != nil || !found || got.Status != order.StatusRejected || got.Reason != o.Reason() {
		t.Fatalf("Order = %+v, %v, %v; want rejected with the reason %q", got, found, err, o.Reason())
	}
	if want := projections.OrderOf(o); !reflect.DeepEqual(got, want) {
		t.Errorf("the projected order %+v differs from the write side's %+v", got, want)
	}
}

func TestBadEventsAreInvalid(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	for _, e := range []projections.Event{
		{Type: "user.registered", AggregateID: uuid.New(), AggregateVersion: 1, Data: json.RawMessage(`{}`)},
		{Type: product.EventCreated, AggregateID: uuid.New(), AggregateVersion: 1, Data: json.RawMessage(`{"price_cents":"x"}`)},
	} {
		if _, err := s.Apply(context.Background(), e); err == nil || !strings.Contains(err.Error(), "invalid") {
			t.Errorf("Apply(%s) error = %v, want invalid", e.Type, err)
		}
	}
}

func TestApplyEachReportsEachEvent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	pid, _, _, events := history(t) // events[0] creates the product, events[2] restocks it
	bad := projections.Event{Type: product.EventStockChanged, AggregateID: pid, AggregateVersion: 9, Data: json.RawMessage(`{"stock_available":"x"}`)}
	changed, errs := s.ApplyEach(ctx, []projections.Event{events[0], bad, events[0], events[2]})
	if want := []bool{true, false, false, true}; !reflect.DeepEqual(changed, want) {
		t.Errorf("changed = %v, want %v (created, bad, the duplicate, restocked)", changed, want)
	}
	for i, err := range errs {
		if wantErr := i == 1; (err != nil) != wantErr || (wantErr && !errors.Is(err, domain.ErrInvalid)) {
			t.Errorf("event %d: error %v; want one only for the bad event, invalid", i, err)
		}
	}
	p, found, err := s.Product(ctx, pid)
	if err != nil || !found || p.StockAvailable != 15 || p.Version != 3 {
		t.Errorf("Product = %+v, %v, %v; want 15 available at version 3, the bad event left out", p, found, err)
	}
}

func TestWritesGoOnAfterRedisLosesItsScript(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	pid, _, _, events := history(t)
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr()})
	t.Cleanup(func() { _ = rdb.Close() })
	// Redis forgets its scripts when it restarts; SCRIPT FLUSH does the same.
	flush := func() {
		t.Helper()
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatalf("script flush: %v", err)
		}
	}
	flush()
	if changed, err := s.Apply(ctx, events[0]); err != nil || !changed {
		t.Fatalf("Apply after SCRIPT FLUSH = %v, %v; want applied", changed, err)
	}
	flush()
	changed, errs := s.ApplyEach(ctx, events[1:3])
	if !reflect.DeepEqual(changed, []bool{true, true}) || !reflect.DeepEqual(errs, []error{nil, nil}) {
		t.Fatalf("ApplyEach after SCRIPT FLUSH = %v, %v; want both applied", changed, errs)
	}
	if p, found, err := s.Product(ctx, pid); err != nil || !found || p.Version != 3 {
		t.Errorf("Product = %+v, %v, %v; want version 3", p, found, err)
	}
}

// The models live under documented keys (docs/read-side.md), which
// operators read and the repair tools scan: prefix, kind, canonical id.
func TestModelsLiveUnderTheirDocumentedKeys(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.Redis(t)
	s, err := projections.New(projections.Config{Client: rdb, Prefix: prefix})
	if err != nil {
		t.Fatalf("new store: %v", err)
	}
	ctx := context.Background()
	pid, oid, uid, events := history(t)
	for _, e := range events {
		if _, err := s.Apply(ctx, e); err != nil {
			t.Fatalf("Apply(%s): %v", e.Type, err)
		}
	}
	for _, key := range []string{
		prefix + "product:" + pid.String(),
		prefix + "order:" + oid.String(),
		prefix + "user-orders:" + uid.String(),
	} {
		if n, err := rdb.Exists(ctx, key).Result(); err != nil || n != 1 {
			t.Errorf("EXISTS %s = %d, %v; want 1", key, n, err)
		}
	}
}
