package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shopdev/shop/internal/testenv"
)

// sendAs makes one request whose Content-Type is contentType exactly (none
// when empty), with body sent as is; chunked says whether it goes without a
// Content-Length.
func (a *api) sendAs(t *testing.T, method, path, token, contentType, body string, chunked bool) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var reader io.Reader = strings.NewReader(body)
	if chunked {
		reader = io.MultiReader(reader) // a reader of unknown length
	}
	if body == "" && !chunked {
		reader = nil
	}
	req, err := http.NewRequestWithContext(ctx, method, a.srv.URL+path, reader)
	testenv.Must(t, err, "new request")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := a.srv.Client().Do(req)
	testenv.Must(t, err, method+" "+path)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	testenv.Must(t, err, "read response")
	return response{status: res.StatusCode, header: res.Header, raw: raw}
}

// Bodies are application/json, else 415, on every route that takes one; a
// route that takes none accepts a bodiless request without a Content-Type.
func TestBodiesMustBeSentAsJSON(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	_, customer := a.registerCustomer(t, "cora@example.com")
	p := a.createProduct(t, admin, "CT-1", 100, 5)
	o := a.placeOrder(t, customer, item(p.ID, 1))
	before := a.snapshot(t)

	user := `{"email":"ct@example.com","name":"A","password":"long-enough"}`
	restock := "/v1/products/" + p.ID + "/restock"
	cancel := "/v1/orders/" + o.ID + "/cancel"
	t.Run("anything else is 415 and changes nothing", func(t *testing.T) {
		tests := []struct {
			name, token, method, path, contentType, body string
		}{
			{"no Content-Type", "", "POST", "/v1/users", "", user},
			{"text/plain", "", "POST", "/v1/users", "text/plain", user},
			{"a form", "", "POST", "/v1/users", "application/x-www-form-urlencoded", user},
			{"a JSON-like type", "", "POST", "/v1/users", "application/json-seq", user},
			{"a problem document", "", "POST", "/v1/users", "application/problem+json", user},
			{"text/json", "", "POST", "/v1/users", "text/json", user},
			{"a malformed Content-Type", "", "POST", "/v1/users", "application/json; charset", user},
			{"JSON that is not UTF-8", "", "POST", "/v1/users", "application/json; charset=iso-8859-1", user},
			{"a token request as text", "", "POST", "/v1/tokens", "text/plain", `{"email":"cora@example.com","password":"` + password + `"}`},
			{"a product as text", admin, "POST", "/v1/products", "text/plain", `{"sku":"CT-2","name":"X","price_cents":1,"stock":1}`},
			{"a product update as text", admin, "PATCH", "/v1/products/" + p.ID, "text/plain", `{"name":"Renamed"}`},
			{"a restock without a Content-Type", admin, "POST", restock, "", `{"quantity":1}`},
			{"an empty restock without a Content-Type", admin, "POST", restock, "", ""},
			{"an order as text", customer, "POST", "/v1/orders", "text/plain", fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1}]}`, p.ID)},
			{"a body on a cancel, as text", customer, "POST", cancel, "text/plain", "{}"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				pr := a.sendAs(t, tt.method, tt.path, tt.token, tt.contentType, tt.body, false).problem(t, http.StatusUnsupportedMediaType)
				if !strings.Contains(pr.Detail, "application/json") && !strings.Contains(pr.Detail, "UTF-8") {
					t.Errorf("detail %q does not say what the body must be", pr.Detail)
				}
				a.unchanged(t, before)
			})
		}
	})

	t.Run("application/json with parameters, in any case, is accepted", func(t *testing.T) {
		for i, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON", `APPLICATION/JSON ; Charset="UTF-8"`} {
			body := fmt.Sprintf(`{"email":"ct%d@example.com","name":"A","password":"long-enough"}`, i)
			if r := a.sendAs(t, "POST", "/v1/users", "", ct, body, false); r.status != http.StatusCreated {
				t.Errorf("Content-Type %q: status %d, want 201; %s", ct, r.status, r.raw)
			}
		}
	})

	t.Run("a bodiless cancel needs no Content-Type", func(t *testing.T) {
		a.sendAs(t, "POST", cancel, customer, "", "", false).expect(t, http.StatusAccepted)
	})
}

// Keys are matched exactly (encoding/json alone would match them ignoring
// case) and once, at every level; a null body is not an object.
func TestBodiesAreStrictJSON(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	_, customer := a.registerCustomer(t, "sid@example.com")
	p := a.createProduct(t, admin, "STRICT-1", 100, 5)
	before := a.snapshot(t)

	line := fmt.Sprintf(`{"product_id":%q,"quantity":1}`, p.ID)
	tests := []struct {
		name, token, method, path, body string
		wantFields                      []string
		wantMessage                     string // in the first field's message
	}{
		{name: "a key in another case", method: "POST", path: "/v1/users",
			body: `{"Email":"a@example.com","name":"A","password":"long-enough"}`, wantFields: []string{"Email"}, wantMessage: `"email"`},
		{name: "a key in capitals", token: admin, method: "PATCH", path: "/v1/products/" + p.ID,
			body: `{"NAME":"Renamed"}`, wantFields: []string{"NAME"}, wantMessage: `"name"`},
		{name: "a key of a product in another case", token: admin, method: "POST", path: "/v1/products",
			body: `{"Sku":"STRICT-2","name":"X","price_cents":1,"stock":1}`, wantFields: []string{"Sku"}},
		{name: "a key given twice", method: "POST", path: "/v1/users",
			body: `{"email":"a@example.com","name":"A","password":"long-enough","email":"b@example.com"}`, wantFields: []string{"email"}, wantMessage: "more than once"},
		{name: "a key given twice, once escaped", method: "POST", path: "/v1/users",
			body: `{"email":"a@example.com","name":"A","password":"long-enough","e\u006dail":"b@example.com"}`, wantFields: []string{"email"}},
		{name: "a password given twice", method: "POST", path: "/v1/tokens",
			body: `{"email":"sid@example.com","password":"x","password":"` + password + `"}`, wantFields: []string{"password"}},
		{name: "a price given twice", token: admin, method: "PATCH", path: "/v1/products/" + p.ID,
			body: `{"price_cents":1,"price_cents":2}`, wantFields: []string{"price_cents"}},
		{name: "a quantity twice, in two cases", token: admin, method: "POST", path: "/v1/products/" + p.ID + "/restock",
			body: `{"quantity":1,"Quantity":2}`, wantFields: []string{"Quantity"}},
		{name: "items given twice", token: customer, method: "POST", path: "/v1/orders",
			body: `{"items":[` + line + `],"items":[` + line + `]}`, wantFields: []string{"items"}},
		{name: "a key of an item in another case", token: customer, method: "POST", path: "/v1/orders",
			body: fmt.Sprintf(`{"items":[%s,{"product_id":%q,"Quantity":1}]}`, line, p.ID), wantFields: []string{"items[1].Quantity"}},
		{name: "a key of an item given twice", token: customer, method: "POST", path: "/v1/orders",
			body: fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1,"quantity":2}]}`, p.ID), wantFields: []string{"items[0].quantity"}},
		{name: "a key given twice deeper down", token: customer, method: "POST", path: "/v1/orders",
			body: fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":{"n":1,"n":2}}]}`, p.ID), wantFields: []string{"items[0].quantity.n"}},
		{name: "an item that is null", token: customer, method: "POST", path: "/v1/orders",
			body: `{"items":[` + line + `,null]}`, wantFields: []string{"items[1]"}},
		{name: "a null user", method: "POST", path: "/v1/users", body: `null`},
		{name: "a null order", token: customer, method: "POST", path: "/v1/orders", body: ` null `},
		{name: "a null update", token: admin, method: "PATCH", path: "/v1/products/" + p.ID, body: `null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pr := a.sendAs(t, tt.method, tt.path, tt.token, "application/json", tt.body, false).invalid(t, tt.wantFields...)
			if tt.wantMessage != "" && len(pr.Errors) > 0 && !strings.Contains(pr.Errors[0].Message, tt.wantMessage) {
				t.Errorf("message %q, want it to contain %q", pr.Errors[0].Message, tt.wantMessage)
			}
			if len(tt.wantFields) == 0 && !strings.Contains(pr.Detail, "object") {
				t.Errorf("detail %q does not say that the body must be an object", pr.Detail)
			}
			a.unchanged(t, before)
		})
	}
	if got := a.storedProduct(t, p.ID); got.Name != "Product STRICT-1" || got.PriceCents != 100 || got.Stock != 5 {
		t.Errorf("product is now %+v, want it untouched", got)
	}
}

// The body limit is 1 MiB exactly, whether or not the body says its length.
func TestBodyLimitIsOneMebibyte(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	const limit = 1 << 20
	// A valid registration padded with trailing whitespace, which JSON allows.
	padded := func(email string, size int) string {
		body := fmt.Sprintf(`{"email":%q,"name":"A","password":"long-enough"}`, email)
		return body + strings.Repeat(" ", size-len(body))
	}
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked %v", chunked), func(t *testing.T) {
			email := fmt.Sprintf("limit-%v@example.com", chunked)
			before := a.snapshot(t)
			a.sendAs(t, "POST", "/v1/users", "", "application/json", padded(email, limit+1), chunked).problem(t, http.StatusRequestEntityTooLarge)
			a.unchanged(t, before)
			a.sendAs(t, "POST", "/v1/users", "", "application/json", padded(email, limit), chunked).expect(t, http.StatusCreated)
		})
	}
}
