package stock_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/product"
	"github.com/shopdev/shop/domain/stock"
)

var t0 = time.Date(2025, 7, 1, 9, 0, 0, 0, time.UTC)

// catalogue returns products with the given stock levels, by id, in the
// order given.
func catalogue(t *testing.T, levels ...int64) (map[uuid.UUID]*product.Product, []uuid.UUID) {
	t.Helper()
	out := make(map[uuid.UUID]*product.Product, len(levels))
	ids := make([]uuid.UUID, len(levels))
	for i, n := range levels {
		id := uuid.Must(uuid.NewV7())
		p, err := product.Create(id, "SKU-"+string(rune('A'+i)), "Item", 100, n, t0)
		if err != nil {
			t.Fatalf("create product: %v", err)
		}
		p.Events() // drop product.created
		out[id], ids[i] = p, id
	}
	return out, ids
}

func TestReserve(t *testing.T) {
	order := uuid.Must(uuid.NewV7())
	tests := []struct {
		name       string
		levels     []int64
		quantities []int64
		missing    bool // the last line names a product that does not exist
		wantStatus stock.Status
		wantStock  []int64
		wantReason string
	}{
		{name: "one line with enough stock", levels: []int64{5}, quantities: []int64{5},
			wantStatus: stock.StatusReserved, wantStock: []int64{0}},
		{name: "every line with enough stock", levels: []int64{5, 10}, quantities: []int64{2, 10},
			wantStatus: stock.StatusReserved, wantStock: []int64{3, 0}},
		{name: "one short line takes nothing from the others", levels: []int64{5, 1}, quantities: []int64{2, 3},
			wantStatus: stock.StatusRejected, wantStock: []int64{5, 1}, wantReason: "SKU-B: 3 wanted, 1 available"},
		{name: "an unknown product rejects", levels: []int64{5, 0}, quantities: []int64{1, 1}, missing: true,
			wantStatus: stock.StatusRejected, wantStock: []int64{5}, wantReason: "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			products, ids := catalogue(t, tt.levels...)
			if tt.missing {
				delete(products, ids[len(ids)-1])
			}
			lines := make([]stock.Line, len(tt.quantities))
			for i, q := range tt.quantities {
				lines[i] = stock.Line{ProductID: ids[i], Quantity: q}
			}
			r, err := stock.Reserve(order, lines, products, t0)
			if err != nil {
				t.Fatalf("Reserve: %v", err)
			}
			if r.Status() != tt.wantStatus || r.Version() != 1 || r.OrderID() != order {
				t.Fatalf("reservation = %s v%d of %s, want %s v1 of %s", r.Status(), r.Version(), r.OrderID(), tt.wantStatus, order)
			}
			if !strings.Contains(r.Reason(), tt.wantReason) {
				t.Errorf("reason = %q, want it to contain %q", r.Reason(), tt.wantReason)
			}
			for i, want := range tt.wantStock {
				p := products[ids[i]]
				if p.Stock() != want {
					t.Errorf("product %d stock = %d, want %d", i, p.Stock(), want)
				}
				changed := p.Events()
				if tt.wantStatus == stock.StatusReserved {
					if len(changed) != 1 || changed[0].Type != product.EventStockChanged {
						t.Errorf("product %d events = %v, want one stock.changed", i, changed)
					}
				} else if len(changed) != 0 {
					t.Errorf("product %d recorded %d events on a rejection", i, len(changed))
				}
			}
			events := r.Events()
			wantType := stock.EventReserved
			if tt.wantStatus == stock.StatusRejected {
				wantType = stock.EventRejected
			}
			if len(events) != 1 || events[0].Type != wantType || events[0].AggregateID != order ||
				events[0].AggregateType != stock.AggregateType || events[0].AggregateVersion != 1 {
				t.Fatalf("events = %+v, want one %s of reservation %s v1", events, wantType, order)
			}
		})
	}
}

func TestReserveRejectsInvalidInput(t *testing.T) {
	products, ids := catalogue(t, 10)
	order := uuid.Must(uuid.NewV7())
	tests := []struct {
		name  string
		order uuid.UUID
		lines []stock.Line
		field string
	}{
		{"no order id", uuid.Nil, []stock.Line{{ids[0], 1}}, "order_id"},
		{"no lines", order, nil, "items"},
		{"zero quantity", order, []stock.Line{{ids[0], 0}}, "items[0].quantity"},
		{"negative quantity", order, []stock.Line{{ids[0], -3}}, "items[0].quantity"},
		{"no product id", order, []stock.Line{{uuid.Nil, 1}}, "items[0].product_id"},
		{"a product twice", order, []stock.Line{{ids[0], 1}, {ids[0], 1}}, "items[1].product_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := stock.Reserve(tt.order, tt.lines, products, t0)
			var ve *domain.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Reserve error = %v, want a validation error", err)
			}
			if ve.Fields[0].Field != tt.field {
				t.Errorf("field = %q, want %q", ve.Fields[0].Field, tt.field)
			}
			if p := products[ids[0]]; p.Stock() != 10 || len(p.Events()) != 0 {
				t.Errorf("stock = %d after invalid input, want 10 and no events", p.Stock())
			}
		})
	}
}

func TestRelease(t *testing.T) {
	order := uuid.Must(uuid.NewV7())
	t1 := t0.Add(time.Minute)
	tests := []struct {
		name        string
		levels      []int64
		quantities  []int64
		wantChanged bool
		wantStatus  stock.Status
		wantStock   []int64
	}{
		{name: "a reserved order gives every unit back", levels: []int64{5, 3}, quantities: []int64{2, 3},
			wantChanged: true, wantStatus: stock.StatusReleased, wantStock: []int64{5, 3}},
		{name: "a rejected order has nothing to give back", levels: []int64{5, 1}, quantities: []int64{2, 3},
			wantStatus: stock.StatusRejected, wantStock: []int64{5, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			products, ids := catalogue(t, tt.levels...)
			lines := make([]stock.Line, len(tt.quantities))
			for i, q := range tt.quantities {
				lines[i] = stock.Line{ProductID: ids[i], Quantity: q}
			}
			r, err := stock.Reserve(order, lines, products, t0)
			if err != nil {
				t.Fatalf("Reserve: %v", err)
			}
			r.Events()
			changed, err := r.Release(products, t1)
			if err != nil || changed != tt.wantChanged || r.Status() != tt.wantStatus {
				t.Fatalf("Release = %v, %v; status %s; want %v, nil; %s", changed, err, r.Status(), tt.wantChanged, tt.wantStatus)
			}
			for i, want := range tt.wantStock {
				if got := products[ids[i]].Stock(); got != want {
					t.Errorf("product %d stock = %d, want %d", i, got, want)
				}
			}
			events := r.Events()
			if !tt.wantChanged {
				if len(events) != 0 || r.Version() != 1 {
					t.Fatalf("a release that changed nothing recorded %v, version %d", events, r.Version())
				}
				return
			}
			if len(events) != 1 || events[0].Type != stock.EventReleased || events[0].AggregateVersion != 2 || r.Version() != 2 {
				t.Fatalf("events = %+v, want one stock.released v2", events)
			}
			again, err := r.Release(products, t1)
			if again || err != nil || len(r.Events()) != 0 {
				t.Errorf("second Release = %v, %v; want false, nil and no event", again, err)
			}
		})
	}
}

func TestCancelBeforePlaced(t *testing.T) {
	order := uuid.Must(uuid.NewV7())
	r, err := stock.CancelBeforePlaced(order, t0)
	if err != nil {
		t.Fatalf("CancelBeforePlaced: %v", err)
	}
	if r.Status() != stock.StatusCancelled || len(r.Events()) != 0 || len(r.Lines()) != 0 {
		t.Fatalf("reservation = %+v, want cancelled, holding nothing, no events", r.State())
	}
	products, _ := catalogue(t, 5)
	if changed, err := r.Release(products, t0); changed || err != nil {
		t.Errorf("Release of a cancelled reservation = %v, %v; want false, nil", changed, err)
	}
	if _, err := stock.CancelBeforePlaced(uuid.Nil, t0); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("CancelBeforePlaced(nil id) error = %v, want invalid", err)
	}
}

func TestRestoreRoundTrips(t *testing.T) {
	products, ids := catalogue(t, 4)
	r, err := stock.Reserve(uuid.Must(uuid.NewV7()), []stock.Line{{ids[0], 3}}, products, t0)
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	back := stock.Restore(r.State())
	if got, want := back.State(), r.State(); got.OrderID != want.OrderID || got.Status != want.Status ||
		got.Version != want.Version || len(got.Lines) != 1 || got.Lines[0] != want.Lines[0] {
		t.Fatalf("Restore(State()) = %+v, want %+v", got, want)
	}
	if len(back.Events()) != 0 {
		t.Error("a restored reservation has recorded events")
	}
}
