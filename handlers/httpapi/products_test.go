package httpapi_test

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/shopdev/shop/internal/testenv"
)

// storedProduct is a product row as Postgres holds it.
type storedProduct struct {
	SKU        string
	Name       string
	PriceCents int64
	Stock      int64
	Version    int64
}

func (a *api) storedProduct(t *testing.T, id string) storedProduct {
	t.Helper()
	var p storedProduct
	err := a.pool.QueryRow(t.Context(), `SELECT sku, name, price_cents, stock, version FROM products WHERE id = $1`, id).
		Scan(&p.SKU, &p.Name, &p.PriceCents, &p.Stock, &p.Version)
	testenv.Must(t, err, "load product "+id)
	return p
}

func TestCreateProduct(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)

	r := a.do(t, "POST", "/v1/products", admin, map[string]any{"sku": " MUG-01 ", "name": "  Coffee mug ", "price_cents": 1250, "stock": 40}, nil)

	r.expect(t, http.StatusCreated)
	var p productJSON
	r.into(t, &p)
	if _, err := uuid.Parse(p.ID); err != nil {
		t.Fatalf("id %q is not a UUID", p.ID)
	}
	if loc := r.header.Get("Location"); loc != "/v1/products/"+p.ID {
		t.Errorf("Location %q, want /v1/products/%s", loc, p.ID)
	}
	want := productJSON{ID: p.ID, SKU: "MUG-01", Name: "Coffee mug", PriceCents: 1250, StockAvailable: 40, Version: 1}
	if p != want {
		t.Errorf("product %+v, want %+v", p, want)
	}
	if got, want := a.storedProduct(t, p.ID), (storedProduct{"MUG-01", "Coffee mug", 1250, 40, 1}); got != want {
		t.Errorf("stored %+v, want %+v", got, want)
	}
	if got := routingKeys(a.outbox(t, p.ID)); !slices.Equal(got, []string{"product.created"}) {
		t.Errorf("outbox %q, want [product.created]", got)
	}
}

func TestCreateProductAcceptsTheLimits(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)

	tests := []struct {
		name string
		body map[string]any
	}{
		{"sku of 64 characters with . _ -", map[string]any{"sku": "a._-" + strings.Repeat("Z9", 30), "name": "X", "price_cents": 1, "stock": 1}},
		{"free and out of stock", map[string]any{"sku": "FREE", "name": "X", "price_cents": 0, "stock": 0}},
		{"highest price and stock", map[string]any{"sku": "MAX", "name": strings.Repeat("é", 200), "price_cents": 100_000_000, "stock": 1_000_000_000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.do(t, "POST", "/v1/products", admin, tt.body, nil).expect(t, http.StatusCreated)
		})
	}
}

func TestCreateProductRejectsATakenSKU(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	a.createProduct(t, admin, "TAKEN-1", 100, 1)
	before := a.snapshot(t)

	for _, sku := range []string{"TAKEN-1", "  TAKEN-1  "} {
		r := a.do(t, "POST", "/v1/products", admin, map[string]any{"sku": sku, "name": "Other", "price_cents": 5, "stock": 5}, nil)
		p := r.problem(t, http.StatusConflict)
		if !strings.Contains(p.Detail, "sku") {
			t.Errorf("sku %q: detail %q does not say the sku is taken", sku, p.Detail)
		}
	}
	a.unchanged(t, before)
}

func TestCreateProductRejectsInvalidFields(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	before := a.snapshot(t)

	valid := map[string]any{"sku": "OK-1", "name": "Fine", "price_cents": 100, "stock": 10}
	with := func(field string, value any) map[string]any {
		body := maps.Clone(valid)
		body[field] = value
		return body
	}
	tests := []struct {
		name       string
		body       any
		wantFields []string
	}{
		{"sku empty", with("sku", ""), []string{"sku"}},
		{"sku only spaces", with("sku", "   "), []string{"sku"}},
		{"sku with a space inside", with("sku", "BAD SKU"), []string{"sku"}},
		{"sku with a slash", with("sku", "A/B"), []string{"sku"}},
		{"sku with a non-ASCII letter", with("sku", "CAFÉ"), []string{"sku"}},
		{"sku starting with a dash", with("sku", "-A"), []string{"sku"}},
		{"sku of 65 characters", with("sku", strings.Repeat("S", 65)), []string{"sku"}},
		{"name empty", with("name", ""), []string{"name"}},
		{"name only spaces", with("name", "  "), []string{"name"}},
		{"name of 201 characters", with("name", strings.Repeat("n", 201)), []string{"name"}},
		{"price negative", with("price_cents", -1), []string{"price_cents"}},
		{"price above the maximum", with("price_cents", 100_000_001), []string{"price_cents"}},
		{"price as a string", with("price_cents", "100"), []string{"price_cents"}},
		{"price with a fraction", with("price_cents", 9.99), []string{"price_cents"}},
		{"price beyond int64", `{"sku":"OK-1","name":"Fine","price_cents":1e30,"stock":10}`, []string{"price_cents"}},
		{"stock negative", with("stock", -1), []string{"stock"}},
		{"stock above the maximum", with("stock", 1_000_000_001), []string{"stock"}},
		{"an unknown field", with("currency", "EUR"), []string{"currency"}},
		{"a client-chosen id", with("id", uuid.NewString()), []string{"id"}},
		{"everything wrong", map[string]any{"sku": "", "name": "", "price_cents": -5, "stock": -5}, []string{"sku", "name", "price_cents", "stock"}},
		{"price left out", map[string]any{"sku": "OK-1", "name": "Fine", "stock": 10}, []string{"price_cents"}},
		{"stock left out", map[string]any{"sku": "OK-1", "name": "Fine", "price_cents": 100}, []string{"stock"}},
		{"numbers left out and the rest wrong", map[string]any{"sku": "", "name": ""}, []string{"sku", "name", "price_cents", "stock"}},
		{"an empty object", map[string]any{}, []string{"sku", "name", "price_cents", "stock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.do(t, "POST", "/v1/products", admin, tt.body, nil).invalid(t, tt.wantFields...)
			a.unchanged(t, before)
		})
	}
	t.Run("not JSON", func(t *testing.T) {
		a.do(t, "POST", "/v1/products", admin, "sku=OK-1", nil).problem(t, http.StatusBadRequest)
		a.unchanged(t, before)
	})
}

func TestUpdateProduct(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	p := a.createProduct(t, admin, "UPD-1", 1000, 7)
	path := "/v1/products/" + p.ID

	steps := []struct {
		name string
		body map[string]any
		want storedProduct
	}{
		{"name only", map[string]any{"name": "  Better name "}, storedProduct{"UPD-1", "Better name", 1000, 7, 2}},
		{"price only", map[string]any{"price_cents": 1500}, storedProduct{"UPD-1", "Better name", 1500, 7, 3}},
		{"both", map[string]any{"name": "Best name", "price_cents": 0}, storedProduct{"UPD-1", "Best name", 0, 7, 4}},
		{"nothing changes: no new version", map[string]any{"name": "Best name", "price_cents": 0}, storedProduct{"UPD-1", "Best name", 0, 7, 4}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			r := a.do(t, "PATCH", path, admin, st.body, nil)
			r.expect(t, http.StatusOK)
			var got productJSON
			r.into(t, &got)
			want := productJSON{ID: p.ID, SKU: st.want.SKU, Name: st.want.Name, PriceCents: st.want.PriceCents,
				StockAvailable: st.want.Stock, Version: st.want.Version}
			if got != want {
				t.Errorf("product %+v, want %+v", got, want)
			}
			if stored := a.storedProduct(t, p.ID); stored != st.want {
				t.Errorf("stored %+v, want %+v", stored, st.want)
			}
		})
	}
	want := []string{"product.created", "product.updated", "product.updated", "product.updated"}
	if got := routingKeys(a.outbox(t, p.ID)); !slices.Equal(got, want) {
		t.Errorf("outbox %q, want %q (an update that changes nothing records nothing)", got, want)
	}
}

func TestUpdateProductRejects(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	p := a.createProduct(t, admin, "UPD-2", 1000, 7)
	path := "/v1/products/" + p.ID
	before := a.snapshot(t)

	invalid := []struct {
		name       string
		body       any
		wantFields []string
	}{
		{"an empty object", map[string]any{}, []string{"name"}},
		{"both null", `{"name":null,"price_cents":null}`, []string{"name"}},
		{"name empty", map[string]any{"name": ""}, []string{"name"}},
		{"name of 201 characters", map[string]any{"name": strings.Repeat("n", 201)}, []string{"name"}},
		{"price negative", map[string]any{"price_cents": -1}, []string{"price_cents"}},
		{"price above the maximum", map[string]any{"price_cents": 100_000_001}, []string{"price_cents"}},
		{"price as a string", map[string]any{"price_cents": "5"}, []string{"price_cents"}},
		{"the sku cannot change", map[string]any{"sku": "OTHER"}, []string{"sku"}},
		{"stock is changed by restocking only", map[string]any{"stock": 100}, []string{"stock"}},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			a.do(t, "PATCH", path, admin, tt.body, nil).invalid(t, tt.wantFields...)
			a.unchanged(t, before)
		})
	}

	notFound := []struct {
		name, path string
	}{
		{"an unknown id", "/v1/products/" + uuid.NewString()},
		{"a malformed id", "/v1/products/not-a-uuid"},
		{"an id with trailing junk", "/v1/products/" + p.ID + "x"},
	}
	for _, tt := range notFound {
		t.Run(tt.name, func(t *testing.T) {
			a.do(t, "PATCH", tt.path, admin, map[string]any{"name": "X"}, nil).problem(t, http.StatusNotFound)
			a.unchanged(t, before)
		})
	}
	t.Run("not JSON", func(t *testing.T) {
		a.do(t, "PATCH", path, admin, "name=X", nil).problem(t, http.StatusBadRequest)
		a.do(t, "PATCH", path, admin, "", nil).problem(t, http.StatusBadRequest)
		a.unchanged(t, before)
	})
	if got, want := a.storedProduct(t, p.ID), (storedProduct{"UPD-2", "Product UPD-2", 1000, 7, 1}); got != want {
		t.Errorf("stored %+v, want it untouched %+v", got, want)
	}
}

func TestRestockProduct(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	p := a.createProduct(t, admin, "RST-1", 300, 5)
	path := "/v1/products/" + p.ID + "/restock"

	r := a.do(t, "POST", path, admin, map[string]any{"quantity": 20}, nil)

	r.expect(t, http.StatusAccepted)
	var got productJSON
	r.into(t, &got)
	if got.StockAvailable != 25 || got.Version != 2 || got.ID != p.ID {
		t.Errorf("after restocking 20 of 5: %+v, want stock_available 25 version 2", got)
	}
	if loc := r.header.Get("Location"); loc != "/v1/products/"+p.ID {
		t.Errorf("Location %q, want /v1/products/%s", loc, p.ID)
	}
	a.do(t, "POST", path, admin, map[string]any{"quantity": 1_000_000}, nil).expect(t, http.StatusAccepted)
	if stored := a.storedProduct(t, p.ID); stored.Stock != 1_000_025 || stored.Version != 3 {
		t.Errorf("stored stock %d version %d, want 1000025 3", stored.Stock, stored.Version)
	}
	before := a.snapshot(t)

	invalid := []struct {
		name string
		body any
	}{
		{"quantity 0", map[string]any{"quantity": 0}},
		{"quantity negative", map[string]any{"quantity": -3}},
		{"quantity above the maximum", map[string]any{"quantity": 1_000_001}},
		{"quantity missing", map[string]any{}},
		{"quantity as a string", map[string]any{"quantity": "5"}},
		{"quantity beyond int64", `{"quantity": 1e30}`},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			a.do(t, "POST", path, admin, tt.body, nil).invalid(t, "quantity")
			a.unchanged(t, before)
		})
	}
	for _, bad := range []string{uuid.NewString(), "not-a-uuid"} {
		t.Run("unknown product "+bad, func(t *testing.T) {
			a.do(t, "POST", "/v1/products/"+bad+"/restock", admin, map[string]any{"quantity": 1}, nil).problem(t, http.StatusNotFound)
			a.unchanged(t, before)
		})
	}
	if stored := a.storedProduct(t, p.ID); stored.Stock != 1_000_025 {
		t.Errorf("stored stock %d after rejected restocks, want 1000025", stored.Stock)
	}
}
