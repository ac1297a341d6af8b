package product_test

import (
	"errors"
	"math"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/product"
)

const maxSKULength = 64 // product.maxSKULength is unexported; the contract value

var (
	t0 = time.Date(2025, 5, 1, 10, 0, 0, 0, time.FixedZone("UTC+3", 3*60*60))
	t1 = t0.Add(time.Hour)
)

func ptr[T any](v T) *T { return &v }

// assertFields asserts err is a validation error naming exactly the want
// fields (in any order), or nil when want is empty.
func assertFields(t *testing.T, err error, want ...string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("error = %v, want nil", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("error = nil, want a validation error on %v", want)
	}
	if !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("errors.Is(%v, domain.ErrInvalid) = false", err)
	}
	if errors.Is(err, domain.ErrConflict) {
		t.Errorf("validation error %v is also ErrConflict", err)
	}
	var ve *domain.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("%v is not a *domain.ValidationError", err)
	}
	got := make([]string, 0, len(ve.Fields))
	for _, f := range ve.Fields {
		if f.Message == "" {
			t.Errorf("field %q has an empty message", f.Field)
		}
		got = append(got, f.Field)
	}
	sort.Strings(got)
	want = append([]string(nil), want...)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("invalid fields = %v, want %v (error: %v)", got, want, err)
	}
}

// newProduct creates a valid product with the given price and stock and
// drains its product.created event.
func newProduct(t *testing.T, price, stock int64) *product.Product {
	t.Helper()
	p, err := product.Create(uuid.New(), "WID-001", "Widget", price, stock, t0)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if n := len(p.Events()); n != 1 {
		t.Fatalf("Create recorded %d events, want 1", n)
	}
	return p
}

// restored returns a product at version 5 holding stock units, with no
// pending events.
func restored(t *testing.T, stock int64) *product.Product {
	t.Helper()
	p := product.Restore(product.State{ID: uuid.New(), SKU: "WID-001", Name: "Widget", PriceCents: 1000,
		Stock: stock, Version: 5, CreatedAt: t0.UTC(), UpdatedAt: t0.UTC()})
	if n := len(p.Events()); n != 0 {
		t.Fatalf("Restore recorded %d events", n)
	}
	return p
}

// oneEvent asserts exactly one event is pending and returns it.
func oneEvent(t *testing.T, p *product.Product) domain.Event {
	t.Helper()
	events := p.Events()
	if len(events) != 1 {
		t.Fatalf("recorded %d events, want exactly 1", len(events))
	}
	e := events[0]
	if e.AggregateType != "product" {
		t.Errorf("aggregate type = %q, want product", e.AggregateType)
	}
	if e.AggregateID != p.ID() {
		t.Errorf("aggregate id = %v, want %v", e.AggregateID, p.ID())
	}
	if e.AggregateVersion != p.Version() {
		t.Errorf("aggregate version = %d, want the product's version %d", e.AggregateVersion, p.Version())
	}
	if e.ID.Version() != 7 {
		t.Errorf("event id version = %d, want 7", e.ID.Version())
	}
	if e.OccurredAt.Location() != time.UTC {
		t.Errorf("OccurredAt %v is not UTC", e.OccurredAt)
	}
	return e
}

func noEvents(t *testing.T, p *product.Product) {
	t.Helper()
	if events := p.Events(); len(events) != 0 {
		t.Errorf("recorded %d events, want none: %+v", len(events), events)
	}
}

func TestCreate(t *testing.T) {
	long := strings.Repeat("x", product.MaxNameLength+1)
	tests := []struct {
		name       string
		id         uuid.UUID
		sku        string
		pname      string
		price      int64
		stock      int64
		wantSKU    string
		wantName   string
		wantFields []string
	}{
		{name: "valid", sku: "WID-001", pname: "Widget", price: 1999, stock: 10, wantSKU: "WID-001", wantName: "Widget"},
		{name: "trims sku and name", sku: "  WID-001 ", pname: "  Widget  ", price: 1, stock: 1, wantSKU: "WID-001", wantName: "Widget"},
		{name: "sku with dot underscore dash", sku: "a.b_c-D9", pname: "Widget", wantSKU: "a.b_c-D9", wantName: "Widget"},
		{name: "sku of max length", sku: strings.Repeat("S", maxSKULength), pname: "Widget", wantSKU: strings.Repeat("S", maxSKULength), wantName: "Widget"},
		{name: "sku single digit", sku: "7", pname: "Widget", wantSKU: "7", wantName: "Widget"},
		{name: "name of max runes (multibyte)", sku: "S", pname: strings.Repeat("ü", product.MaxNameLength), wantSKU: "S", wantName: strings.Repeat("ü", product.MaxNameLength)},
		{name: "zero price and stock", sku: "S", pname: "Free", price: 0, stock: 0, wantSKU: "S", wantName: "Free"},
		{name: "max price and stock", sku: "S", pname: "Dear", price: product.MaxPriceCents, stock: product.MaxStock, wantSKU: "S", wantName: "Dear"},

		{name: "nil id", id: uuid.Nil, sku: "S", pname: "Widget", wantFields: []string{"id"}},
		{name: "sku empty", sku: "", pname: "Widget", wantFields: []string{"sku"}},
		{name: "sku only spaces", sku: "   ", pname: "Widget", wantFields: []string{"sku"}},
		{name: "sku too long", sku: strings.Repeat("S", maxSKULength+1), pname: "Widget", wantFields: []string{"sku"}},
		{name: "sku with inner space", sku: "WID 001", pname: "Widget", wantFields: []string{"sku"}},
		{name: "sku with slash", sku: "WID/001", pname: "Widget", wantFields: []string{"sku"}},
		{name: "sku starting with dash", sku: "-WID", pname: "Widget", wantFields: []string{"sku"}},
		{name: "sku starting with dot", sku: ".WID", pname: "Widget", wantFields: []string{"sku"}},
		{name: "sku with non-ascii letter", sku: "WÜD", pname: "Widget", wantFields: []string{"sku"}},
		{name: "sku with newline", sku: "WID\n001", pname: "Widget", wantFields: []string{"sku"}},
		{name: "name empty", sku: "S", pname: "", wantFields: []string{"name"}},
		{name: "name only spaces", sku: "S", pname: " \t ", wantFields: []string{"name"}},
		{name: "name too long", sku: "S", pname: long, wantFields: []string{"name"}},
		{name: "name too long (multibyte)", sku: "S", pname: strings.Repeat("ü", product.MaxNameLength+1), wantFields: []string{"name"}},
		{name: "name invalid utf-8", sku: "S", pname: "Wid\xffget", wantFields: []string{"name"}},
		{name: "price negative", sku: "S", pname: "Widget", price: -1, wantFields: []string{"price_cents"}},
		{name: "price too high", sku: "S", pname: "Widget", price: product.MaxPriceCents + 1, wantFields: []string{"price_cents"}},
		{name: "price min int64", sku: "S", pname: "Widget", price: math.MinInt64, wantFields: []string{"price_cents"}},
		{name: "stock negative", sku: "S", pname: "Widget", stock: -1, wantFields: []string{"stock"}},
		{name: "stock too high", sku: "S", pname: "Widget", stock: product.MaxStock + 1, wantFields: []string{"stock"}},
		{name: "stock max int64", sku: "S", pname: "Widget", stock: math.MaxInt64, wantFields: []string{"stock"}},
		{name: "sku and price", sku: "", pname: "Widget", price: -5, wantFields: []string{"sku", "price_cents"}},
		{name: "everything", id: uuid.Nil, sku: "!", pname: "", price: -1, stock: -1, wantFields: []string{"id", "sku", "name", "price_cents", "stock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := tt.id
			if id == uuid.Nil && !contains(tt.wantFields, "id") {
				id = uuid.New()
			}
			p, err := product.Create(id, tt.sku, tt.pname, tt.price, tt.stock, t0)
			assertFields(t, err, tt.wantFields...)
			if err != nil {
				if p != nil {
					t.Errorf("Create returned a product with an error: %+v", p.State())
				}
				return
			}
			want := product.State{ID: id, SKU: tt.wantSKU, Name: tt.wantName, PriceCents: tt.price,
				Stock: tt.stock, Version: 1, CreatedAt: t0.UTC(), UpdatedAt: t0.UTC()}
			if got := p.State(); got != want {
				t.Errorf("State() = %+v, want %+v", got, want)
			}
			if p.CreatedAt().Location() != time.UTC || p.UpdatedAt().Location() != time.UTC {
				t.Errorf("times not UTC: %v, %v", p.CreatedAt(), p.UpdatedAt())
			}
			e := oneEvent(t, p)
			if e.Type != "product.created" {
				t.Errorf("event type = %q, want product.created", e.Type)
			}
			if e.AggregateVersion != 1 {
				t.Errorf("aggregate version = %d, want 1", e.AggregateVersion)
			}
			if !e.OccurredAt.Equal(t0) {
				t.Errorf("OccurredAt = %v, want %v", e.OccurredAt, t0)
			}
			wantData := product.Created{ProductID: id, SKU: tt.wantSKU, Name: tt.wantName,
				PriceCents: tt.price, StockAvailable: tt.stock}
			if e.Data != wantData {
				t.Errorf("event data = %#v, want %#v", e.Data, wantData)
			}
			noEvents(t, p)
		})
	}
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func TestUpdate(t *testing.T) {
	const (
		oldName  = "Widget"
		oldPrice = int64(1000)
	)
	tests := []struct {
		name       string
		newName    *string
		newPrice   *int64
		wantName   string
		wantPrice  int64
		wantEvent  bool
		wantFields []string
	}{
		{name: "name only", newName: ptr("Gadget"), wantName: "Gadget", wantPrice: oldPrice, wantEvent: true},
		{name: "name is trimmed", newName: ptr("  Gadget "), wantName: "Gadget", wantPrice: oldPrice, wantEvent: true},
		{name: "price only", newPrice: ptr(int64(1500)), wantName: oldName, wantPrice: 1500, wantEvent: true},
		{name: "price to zero", newPrice: ptr(int64(0)), wantName: oldName, wantPrice: 0, wantEvent: true},
		{name: "price to max", newPrice: ptr(int64(product.MaxPriceCents)), wantName: oldName, wantPrice: product.MaxPriceCents, wantEvent: true},
		{name: "both", newName: ptr("Gadget"), newPrice: ptr(int64(1)), wantName: "Gadget", wantPrice: 1, wantEvent: true},
		{name: "same name changes price", newName: ptr(oldName), newPrice: ptr(int64(2)), wantName: oldName, wantPrice: 2, wantEvent: true},

		{name: "same name is a no-op", newName: ptr(oldName), wantName: oldName, wantPrice: oldPrice},
		{name: "same name with spaces is a no-op", newName: ptr(" " + oldName + " "), wantName: oldName, wantPrice: oldPrice},
		{name: "same price is a no-op", newPrice: ptr(oldPrice), wantName: oldName, wantPrice: oldPrice},
		{name: "same both is a no-op", newName: ptr(oldName), newPrice: ptr(oldPrice), wantName: oldName, wantPrice: oldPrice},

		{name: "nothing", wantName: oldName, wantPrice: oldPrice, wantFields: []string{"name"}},
		{name: "empty name", newName: ptr(""), wantName: oldName, wantPrice: oldPrice, wantFields: []string{"name"}},
		{name: "blank name", newName: ptr("   "), wantName: oldName, wantPrice: oldPrice, wantFields: []string{"name"}},
		{name: "name too long", newName: ptr(strings.Repeat("n", product.MaxNameLength+1)), wantName: oldName, wantPrice: oldPrice, wantFields: []string{"name"}},
		{name: "name invalid utf-8", newName: ptr("\xff"), wantName: oldName, wantPrice: oldPrice, wantFields: []string{"name"}},
		{name: "price negative", newPrice: ptr(int64(-1)), wantName: oldName, wantPrice: oldPrice, wantFields: []string{"price_cents"}},
		{name: "price too high", newPrice: ptr(int64(product.MaxPriceCents + 1)), wantName: oldName, wantPrice: oldPrice, wantFields: []string{"price_cents"}},
		{name: "valid name, bad price changes nothing", newName: ptr("Gadget"), newPrice: ptr(int64(-1)), wantName: oldName, wantPrice: oldPrice, wantFields: []string{"price_cents"}},
		{name: "bad name, valid price changes nothing", newName: ptr(""), newPrice: ptr(int64(5)), wantName: oldName, wantPrice: oldPrice, wantFields: []string{"name"}},
		{name: "both bad", newName: ptr(""), newPrice: ptr(int64(-1)), wantName: oldName, wantPrice: oldPrice, wantFields: []string{"name", "price_cents"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProduct(t, oldPrice, 7)
			before := p.State()
			err := p.Update(tt.newName, tt.newPrice, t1)
			assertFields(t, err, tt.wantFields...)
			if p.Name() != tt.wantName || p.PriceCents() != tt.wantPrice {
				t.Errorf("name, price = %q, %d; want %q, %d", p.Name(), p.PriceCents(), tt.wantName, tt.wantPrice)
			}
			if p.SKU() != before.SKU || p.Stock() != before.Stock || p.ID() != before.ID || !p.CreatedAt().Equal(before.CreatedAt) {
				t.Errorf("Update changed sku, stock, id or created_at: %+v -> %+v", before, p.State())
			}
			if !tt.wantEvent {
				if got := p.State(); got != before {
					t.Errorf("state changed from %+v to %+v", before, got)
				}
				noEvents(t, p)
				return
			}
			if p.Version() != before.Version+1 {
				t.Errorf("version = %d, want %d", p.Version(), before.Version+1)
			}
			if !p.UpdatedAt().Equal(t1) || p.UpdatedAt().Location() != time.UTC {
				t.Errorf("UpdatedAt = %v, want %v in UTC", p.UpdatedAt(), t1.UTC())
			}
			e := oneEvent(t, p)
			if e.Type != "product.updated" {
				t.Errorf("event type = %q, want product.updated", e.Type)
			}
			if !e.OccurredAt.Equal(t1) {
				t.Errorf("OccurredAt = %v, want %v", e.OccurredAt, t1)
			}
			want := product.Updated{ProductID: p.ID(), SKU: before.SKU, Name: tt.wantName, PriceCents: tt.wantPrice}
			if e.Data != want {
				t.Errorf("event data = %#v, want %#v", e.Data, want)
			}
		})
	}
}

func TestRestock(t *testing.T) {
	tests := []struct {
		name      string
		stock     int64
		quantity  int64
		wantStock int64
		wantErr   bool
	}{
		{name: "one", stock: 0, quantity: 1, wantStock: 1},
		{name: "some", stock: 10, quantity: 5, wantStock: 15},
		{name: "max restock", stock: 0, quantity: product.MaxRestock, wantStock: product.MaxRestock},
		{name: "up to max stock exactly", stock: product.MaxStock - 3, quantity: 3, wantStock: product.MaxStock},

		{name: "zero", stock: 10, quantity: 0, wantStock: 10, wantErr: true},
		{name: "negative", stock: 10, quantity: -1, wantStock: 10, wantErr: true},
		{name: "min int64", stock: 10, quantity: math.MinInt64, wantStock: 10, wantErr: true},
		{name: "above max restock", stock: 0, quantity: product.MaxRestock + 1, wantStock: 0, wantErr: true},
		{name: "max int64", stock: 0, quantity: math.MaxInt64, wantStock: 0, wantErr: true},
		{name: "past max stock", stock: product.MaxStock - 3, quantity: 4, wantStock: product.MaxStock - 3, wantErr: true},
		{name: "at max stock", stock: product.MaxStock, quantity: 1, wantStock: product.MaxStock, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := restored(t, tt.stock)
			before := p.State()
			err := p.Restock(tt.quantity, t1)
			if tt.wantErr {
				assertFields(t, err, "quantity")
				if got := p.State(); got != before {
					t.Errorf("failed restock changed state %+v -> %+v", before, got)
				}
				noEvents(t, p)
				return
			}
			if err != nil {
				t.Fatalf("Restock(%d): %v", tt.quantity, err)
			}
			if p.Stock() != tt.wantStock {
				t.Errorf("stock = %d, want %d", p.Stock(), tt.wantStock)
			}
			if p.Version() != before.Version+1 {
				t.Errorf("version = %d, want %d", p.Version(), before.Version+1)
			}
			if !p.UpdatedAt().Equal(t1) {
				t.Errorf("UpdatedAt = %v, want %v", p.UpdatedAt(), t1)
			}
			e := oneEvent(t, p)
			if e.Type != "stock.changed" {
				t.Errorf("event type = %q, want stock.changed", e.Type)
			}
			want := product.StockChanged{ProductID: p.ID(), StockAvailable: tt.wantStock, Delta: tt.quantity, Reason: "restocked"}
			if !reflect.DeepEqual(e.Data, want) {
				t.Errorf("event data = %#v, want %#v", e.Data, want)
			}
		})
	}
}

func TestReserve(t *testing.T) {
	orderID := uuid.New()
	tests := []struct {
		name      string
		stock     int64
		quantity  int64
		wantStock int64
		wantErr   string // "", "invalid", "out of stock"
	}{
		{name: "one of many", stock: 10, quantity: 1, wantStock: 9},
		{name: "all of it", stock: 10, quantity: 10, wantStock: 0},
		{name: "max quantity", stock: product.MaxStock, quantity: product.MaxStock, wantStock: 0},

		{name: "one more than available", stock: 10, quantity: 11, wantStock: 10, wantErr: "out of stock"},
		{name: "from empty", stock: 0, quantity: 1, wantStock: 0, wantErr: "out of stock"},
		{name: "max int64", stock: 10, quantity: math.MaxInt64, wantStock: 10, wantErr: "out of stock"},
		{name: "zero", stock: 10, quantity: 0, wantStock: 10, wantErr: "invalid"},
		{name: "negative", stock: 10, quantity: -3, wantStock: 10, wantErr: "invalid"},
		{name: "min int64", stock: 10, quantity: math.MinInt64, wantStock: 10, wantErr: "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := restored(t, tt.stock)
			before := p.State()
			err := p.Reserve(orderID, tt.quantity, t1)
			switch tt.wantErr {
			case "out of stock":
				if !errors.Is(err, product.ErrOutOfStock) {
					t.Fatalf("error = %v, want ErrOutOfStock", err)
				}
				if !errors.Is(err, domain.ErrConflict) {
					t.Errorf("errors.Is(%v, domain.ErrConflict) = false", err)
				}
				if errors.Is(err, domain.ErrInvalid) {
					t.Errorf("out of stock error %v is also ErrInvalid", err)
				}
			case "invalid":
				assertFields(t, err, "quantity")
				if errors.Is(err, product.ErrOutOfStock) {
					t.Errorf("invalid quantity error %v is ErrOutOfStock", err)
				}
			default:
				if err != nil {
					t.Fatalf("Reserve(%d): %v", tt.quantity, err)
				}
			}
			if p.Stock() != tt.wantStock {
				t.Errorf("stock = %d, want %d", p.Stock(), tt.wantStock)
			}
			if p.Stock() < 0 {
				t.Errorf("stock went negative: %d", p.Stock())
			}
			if tt.wantErr != "" {
				if got := p.State(); got != before {
					t.Errorf("failed reserve changed state %+v -> %+v", before, got)
				}
				noEvents(t, p)
				return
			}
			if p.Version() != before.Version+1 {
				t.Errorf("version = %d, want %d", p.Version(), before.Version+1)
			}
			e := oneEvent(t, p)
			if e.Type != "stock.changed" {
				t.Errorf("event type = %q, want stock.changed", e.Type)
			}
			data, ok := e.Data.(product.StockChanged)
			if !ok {
				t.Fatalf("event data is %T, want product.StockChanged", e.Data)
			}
			if data.ProductID != p.ID() || data.StockAvailable != tt.wantStock || data.Delta != -tt.quantity || data.Reason != "reserved" {
				t.Errorf("event data = %+v, want stock %d, delta %d, reason reserved", data, tt.wantStock, -tt.quantity)
			}
			if data.OrderID == nil || *data.OrderID != orderID {
				t.Errorf("event order id = %v, want %v", data.OrderID, orderID)
			}
		})
	}
}

func TestReserveNeverGoesNegative(t *testing.T) {
	p := restored(t, 7)
	order := uuid.New()
	var ok, refused int
	for _, q := range []int64{3, 3, 3, 2, 1, 1, 1} {
		err := p.Reserve(order, q, t1)
		switch {
		case err == nil:
			ok++
		case errors.Is(err, product.ErrOutOfStock):
			refused++
		default:
			t.Fatalf("Reserve(%d): unexpected error %v", q, err)
		}
		if p.Stock() < 0 {
			t.Fatalf("stock went negative (%d) after reserving %d", p.Stock(), q)
		}
	}
	// 3+3 = 6, then 3 refused, 2 refused, 1 → 0, then two refused.
	if ok != 3 || refused != 4 || p.Stock() != 0 {
		t.Errorf("ok=%d refused=%d stock=%d, want ok=3 refused=4 stock=0", ok, refused, p.Stock())
	}
	if n := len(p.Events()); n != ok {
		t.Errorf("recorded %d events, want one per successful reserve (%d)", n, ok)
	}
}

func TestRelease(t *testing.T) {
	orderID := uuid.New()
	tests := []struct {
		name      string
		stock     int64
		quantity  int64
		wantStock int64
		wantErr   bool
	}{
		{name: "one", stock: 0, quantity: 1, wantStock: 1},
		{name: "some", stock: 4, quantity: 6, wantStock: 10},
		{name: "zero", stock: 4, quantity: 0, wantStock: 4, wantErr: true},
		{name: "negative", stock: 4, quantity: -1, wantStock: 4, wantErr: true},
		{name: "min int64", stock: 4, quantity: math.MinInt64, wantStock: 4, wantErr: true},
		{
			name: "overflowing int64 is refused", stock: 1, quantity: math.MaxInt64, wantStock: 1, wantErr: true,
		},
		{
			name: "past max stock is refused", stock: product.MaxStock, quantity: 1, wantStock: product.MaxStock, wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := restored(t, tt.stock)
			before := p.State()
			err := p.Release(orderID, tt.quantity, t1)
			if tt.wantErr {
				assertFields(t, err, "quantity")
				if got := p.State(); got != before {
					t.Errorf("failed release changed state %+v -> %+v", before, got)
				}
				noEvents(t, p)
				return
			}
			if err != nil {
				t.Fatalf("Release(%d): %v", tt.quantity, err)
			}
			if p.Stock() != tt.wantStock {
				t.Errorf("stock = %d, want %d", p.Stock(), tt.wantStock)
			}
			if p.Version() != before.Version+1 {
				t.Errorf("version = %d, want %d", p.Version(), before.Version+1)
			}
			e := oneEvent(t, p)
			if e.Type != "stock.changed" {
				t.Errorf("event type = %q, want stock.changed", e.Type)
			}
			want := product.StockChanged{ProductID: p.ID(), StockAvailable: tt.wantStock, Delta: tt.quantity,
				Reason: "released", OrderID: &orderID}
			if !reflect.DeepEqual(e.Data, want) {
				t.Errorf("event data = %#v, want %#v", e.Data, want)
			}
		})
	}
}

func TestReserveThenReleaseRestoresStock(t *testing.T) {
	p := restored(t, 10)
	order := uuid.New()
	if err := p.Reserve(order, 4, t1); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	if err := p.Release(order, 4, t1); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if p.Stock() != 10 {
		t.Errorf("stock = %d, want 10", p.Stock())
	}
	var sum int64
	for _, e := range p.Events() {
		sum += e.Data.(product.StockChanged).Delta
	}
	if sum != 0 {
		t.Errorf("sum of deltas = %d, want 0", sum)
	}
}

func TestEventVersionsIncreaseInRecordedOrder(t *testing.T) {
	p, err := product.Create(uuid.New(), "WID-1", "Widget", 100, 5, t0)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	order := uuid.New()
	var all []domain.Event
	drain := func() { all = append(all, p.Events()...) }
	steps := []struct {
		name string
		do   func() error
		fail bool
	}{
		{"rename", func() error { return p.Update(ptr("Gadget"), nil, t1) }, false},
		{"no-op update", func() error { return p.Update(ptr("Gadget"), nil, t1) }, false},
		{"restock", func() error { return p.Restock(10, t1) }, false},
		{"reserve", func() error { return p.Reserve(order, 15, t1) }, false},
		{"reserve too many", func() error { return p.Reserve(order, 1, t1) }, true},
		{"reprice", func() error { return p.Update(nil, ptr(int64(200)), t1) }, false},
		{"invalid update", func() error { return p.Update(nil, nil, t1) }, true},
		{"release", func() error { return p.Release(order, 15, t1) }, false},
	}
	drain()
	for i, s := range steps {
		err := s.do()
		if (err != nil) != s.fail {
			t.Fatalf("step %s: error = %v, want failure %v", s.name, err, s.fail)
		}
		if i%2 == 0 {
			drain() // drain at different moments; order must not depend on it
		}
	}
	drain()

	wantTypes := []string{"product.created", "product.updated", "stock.changed", "stock.changed", "product.updated", "stock.changed"}
	if len(all) != len(wantTypes) {
		t.Fatalf("recorded %d events, want %d", len(all), len(wantTypes))
	}
	seen := make(map[uuid.UUID]bool)
	for i, e := range all {
		if e.Type != wantTypes[i] {
			t.Errorf("event %d type = %q, want %q", i, e.Type, wantTypes[i])
		}
		if want := int64(i + 1); e.AggregateVersion != want {
			t.Errorf("event %d (%s) version = %d, want %d", i, e.Type, e.AggregateVersion, want)
		}
		if i > 0 && e.AggregateVersion <= all[i-1].AggregateVersion {
			t.Errorf("event %d version %d does not increase on %d", i, e.AggregateVersion, all[i-1].AggregateVersion)
		}
		if seen[e.ID] {
			t.Errorf("event %d reuses id %v", i, e.ID)
		}
		seen[e.ID] = true
	}
	if last := all[len(all)-1].AggregateVersion; p.Version() != last {
		t.Errorf("product version = %d, want the last event's %d", p.Version(), last)
	}
}

func TestRestoreStateRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		state product.State
	}{
		{"typical", product.State{ID: uuid.New(), SKU: "WID-1", Name: "Widget", PriceCents: 1999, Stock: 3, Version: 9, CreatedAt: t0.UTC(), UpdatedAt: t1.UTC()}},
		{"zero", product.State{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := product.Restore(tt.state)
			if got := p.State(); got != tt.state {
				t.Errorf("State() = %+v, want %+v", got, tt.state)
			}
			if p.ID() != tt.state.ID || p.SKU() != tt.state.SKU || p.Name() != tt.state.Name ||
				p.PriceCents() != tt.state.PriceCents || p.Stock() != tt.state.Stock || p.Version() != tt.state.Version ||
				!p.CreatedAt().Equal(tt.state.CreatedAt) || !p.UpdatedAt().Equal(tt.state.UpdatedAt) {
				t.Errorf("accessors disagree with state %+v", tt.state)
			}
			noEvents(t, p)
		})
	}
}

func TestErrorKinds(t *testing.T) {
	kinds := []error{domain.ErrInvalid, domain.ErrNotFound, domain.ErrConflict, domain.ErrUnauthorized, domain.ErrForbidden}
	tests := []struct {
		name string
		err  error
		kind error
	}{
		{"not found", product.ErrNotFound, domain.ErrNotFound},
		{"sku taken", product.ErrSKUTaken, domain.ErrConflict},
		{"out of stock", product.ErrOutOfStock, domain.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range kinds {
				if got, want := errors.Is(tt.err, k), k == tt.kind; got != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", tt.err, k, got, want)
				}
			}
		})
	}
}

func TestContractNames(t *testing.T) {
	tests := []struct{ got, want string }{
		{product.AggregateType, "product"},
		{product.EventCreated, "product.created"},
		{product.EventUpdated, "product.updated"},
		{product.EventStockChanged, "stock.changed"},
		{product.ReasonRestocked, "restocked"},
		{product.ReasonReserved, "reserved"},
		{product.ReasonReleased, "released"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("constant = %q, want %q", tt.got, tt.want)
		}
	}
}
