package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/google/uuid"
)

// Guarantee 6: bad input gets a clear 4xx and changes nothing. These inputs
// pass the JSON decoder but are hostile to what lies behind it.
func TestHostileInputIsA4xxAndChangesNothing(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	_, customer := a.registerCustomer(t, "yara@example.com")
	p := a.createProduct(t, admin, "HOST-1", 100, 5)
	before := a.snapshot(t)

	tests := []struct {
		name         string
		token        string
		method, path string
		body         any
		hdr          headers
		wantStatus   int
		wantFields   []string
	}{
		{name: "a NUL byte in a user's name", method: "POST", path: "/v1/users",
			body: `{"email":"nul@example.com","name":"A\u0000B","password":"long-enough"}`, wantStatus: 422, wantFields: []string{"name"}},
		{name: "a NUL byte in an email", method: "POST", path: "/v1/users",
			body: `{"email":"n\u0000ul@example.com","name":"A","password":"long-enough"}`, wantStatus: 422, wantFields: []string{"email"}},
		{name: "a NUL byte in a product's name", token: admin, method: "POST", path: "/v1/products",
			body: `{"sku":"NUL-1","name":"Lamp\u0000","price_cents":1,"stock":1}`, wantStatus: 422, wantFields: []string{"name"}},
		{name: "a NUL byte in a product's new name", token: admin, method: "PATCH", path: "/v1/products/" + p.ID,
			body: `{"name":"\u0000"}`, wantStatus: 422, wantFields: []string{"name"}},
		{name: "a NUL byte in a sku", token: admin, method: "POST", path: "/v1/products",
			body: `{"sku":"NUL\u00002","name":"Lamp","price_cents":1,"stock":1}`, wantStatus: 422, wantFields: []string{"sku"}},
		{name: "SQL in a sku", token: admin, method: "POST", path: "/v1/products",
			body: map[string]any{"sku": "'; DROP TABLE products;--", "name": "X", "price_cents": 1, "stock": 1}, wantStatus: 422, wantFields: []string{"sku"}},
		{name: "SQL in a path id", token: admin, method: "PATCH", path: "/v1/products/1'%20OR%20'1'='1",
			body: map[string]any{"name": "X"}, wantStatus: 404},
		{name: "an Idempotency-Key that is not UTF-8", token: customer, method: "POST", path: "/v1/orders",
			body: orderBody(item(p.ID, 1)), hdr: headers{"Idempotency-Key": "key-\xff\xfe"}, wantStatus: 422, wantFields: []string{"Idempotency-Key"}},
		{name: "the largest int64 price", token: admin, method: "POST", path: "/v1/products",
			body: `{"sku":"BIG-1","name":"X","price_cents":9223372036854775807,"stock":1}`, wantStatus: 422, wantFields: []string{"price_cents"}},
		{name: "a price one past int64", token: admin, method: "POST", path: "/v1/products",
			body: `{"sku":"BIG-2","name":"X","price_cents":9223372036854775808,"stock":1}`, wantStatus: 422, wantFields: []string{"price_cents"}},
		{name: "a restock that would overflow", token: admin, method: "POST", path: "/v1/products/" + p.ID + "/restock",
			body: `{"quantity":9223372036854775807}`, wantStatus: 422, wantFields: []string{"quantity"}},
		{name: "cancel with a path id of the nil UUID", token: customer, method: "POST", path: "/v1/orders/" + uuid.Nil.String() + "/cancel",
			wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.do(t, tt.method, tt.path, tt.token, tt.body, tt.hdr)
			if r.status >= 500 {
				t.Fatalf("status %d for bad input, want %d (guarantee 6: bad input is a clear 4xx, never a 5xx); %s\nserver log: %s",
					r.status, tt.wantStatus, r.raw, a.logLine(r.header.Get("X-Request-Id")))
			}
			if tt.wantStatus == http.StatusUnprocessableEntity {
				r.invalid(t, tt.wantFields...)
			} else {
				r.problem(t, tt.wantStatus)
			}
			a.unchanged(t, before)
		})
	}
	if got := a.storedProduct(t, p.ID); got.Name != "Product HOST-1" || got.Stock != 5 {
		t.Errorf("product is now %+v, want it untouched", got)
	}
}
