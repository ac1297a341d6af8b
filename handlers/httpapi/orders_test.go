package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/shopdev/shop/internal/testenv"
)

// noOrderWritten fails the test when any order, order line or order.placed
// event exists.
func (a *api) noOrderWritten(t *testing.T) {
	t.Helper()
	for what, sql := range map[string]string{
		"orders":                      `SELECT count(*) FROM orders`,
		"order_items":                 `SELECT count(*) FROM order_items`,
		"order.placed outbox rows":    `SELECT count(*) FROM outbox WHERE routing_key = 'order.placed'`,
		"order aggregate outbox rows": `SELECT count(*) FROM outbox WHERE aggregate_type = 'order'`,
	} {
		if n := a.count(t, sql); n != 0 {
			t.Errorf("%d %s after a rejected order, want 0", n, what)
		}
	}
}

func TestPlaceOrder(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	customerID, customer := a.registerCustomer(t, "heidi@example.com")
	mug := a.createProduct(t, admin, "MUG", 1250, 10)
	tea := a.createProduct(t, admin, "TEA", 399, 100)

	r := a.do(t, "POST", "/v1/orders", customer, orderBody(item(mug.ID, 2), item(tea.ID, 3)), nil)

	r.expect(t, http.StatusAccepted)
	var o orderJSON
	r.into(t, &o)
	if _, err := uuid.Parse(o.ID); err != nil {
		t.Fatalf("id %q is not a UUID", o.ID)
	}
	if loc := r.header.Get("Location"); loc != "/v1/orders/"+o.ID {
		t.Errorf("Location %q, want /v1/orders/%s", loc, o.ID)
	}
	if o.Status != "pending" || o.Version != 1 || o.UserID != customerID.String() {
		t.Errorf("order status %q version %d user %s, want pending 1 %s", o.Status, o.Version, o.UserID, customerID)
	}
	wantItems := []orderLineJSON{
		{ProductID: mug.ID, SKU: "MUG", Name: "Product MUG", Quantity: 2, UnitPriceCents: 1250},
		{ProductID: tea.ID, SKU: "TEA", Name: "Product TEA", Quantity: 3, UnitPriceCents: 399},
	}
	if !slices.Equal(o.Items, wantItems) {
		t.Errorf("items %+v, want %+v", o.Items, wantItems)
	}
	if want := int64(2*1250 + 3*399); o.TotalCents != want {
		t.Errorf("total_cents %d, want %d", o.TotalCents, want)
	}

	var status string
	var total int64
	var userID uuid.UUID
	err := a.pool.QueryRow(t.Context(), `SELECT status, total_cents, user_id FROM orders WHERE id = $1`, o.ID).Scan(&status, &total, &userID)
	testenv.Must(t, err, "load order row")
	if status != "pending" || total != o.TotalCents || userID != customerID {
		t.Errorf("stored order %s %d %s, want pending %d %s", status, total, userID, o.TotalCents, customerID)
	}
	if n := a.count(t, `SELECT count(*) FROM order_items WHERE order_id = $1`, o.ID); n != 2 {
		t.Errorf("%d order_items, want 2", n)
	}
	events := a.outbox(t, o.ID)
	if got := routingKeys(events); !slices.Equal(got, []string{"order.placed"}) {
		t.Fatalf("outbox %q, want [order.placed]", got)
	}
	var env struct {
		Data struct {
			TotalCents int64           `json:"total_cents"`
			Items      []orderLineJSON `json:"items"`
		} `json:"data"`
	}
	testenv.Must(t, json.Unmarshal(events[0].Payload, &env), "decode order.placed")
	if env.Data.TotalCents != o.TotalCents || !slices.Equal(env.Data.Items, wantItems) {
		t.Errorf("order.placed data %+v, want the priced lines and total", env.Data)
	}
	// Stock is reserved later, by the inventory consumer, not by the API.
	if got := a.storedProduct(t, mug.ID).Stock; got != 10 {
		t.Errorf("stock of MUG %d after placing, want 10 (untouched by the API)", got)
	}

	t.Run("prices are read at order time", func(t *testing.T) {
		a.do(t, "PATCH", "/v1/products/"+mug.ID, admin, map[string]any{"price_cents": 2000}, nil).expect(t, http.StatusOK)
		o2 := a.placeOrder(t, customer, item(mug.ID, 1))
		if o2.TotalCents != 2000 || o2.Items[0].UnitPriceCents != 2000 {
			t.Errorf("after a price change: total %d unit %d, want 2000 2000", o2.TotalCents, o2.Items[0].UnitPriceCents)
		}
		var first int64
		testenv.Must(t, a.pool.QueryRow(t.Context(), `SELECT total_cents FROM orders WHERE id = $1`, o.ID).Scan(&first), "load first order")
		if first != o.TotalCents {
			t.Errorf("the first order's total changed to %d, want %d", first, o.TotalCents)
		}
	})
}

func TestPlaceOrderAcceptsTheLimits(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	_, customer := a.registerCustomer(t, "ivan@example.com")

	items := make([]map[string]any, 100)
	var want int64
	for i := range items {
		p := a.createProduct(t, admin, fmt.Sprintf("LIM-%03d", i), int64(i+1), 0)
		items[i] = item(strings.ToUpper(p.ID), 1000) // any UUID spelling
		want += 1000 * int64(i+1)
	}
	o := a.placeOrder(t, customer, items...)
	if len(o.Items) != 100 || o.TotalCents != want {
		t.Errorf("order of 100 lines × 1000: %d lines total %d, want 100 lines total %d", len(o.Items), o.TotalCents, want)
	}
}

func TestPlaceOrderRejectsClientPrices(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	_, customer := a.registerCustomer(t, "judy@example.com")
	p := a.createProduct(t, admin, "PRICED", 5000, 10)

	withExtra := func(key string, value any) map[string]any {
		it := item(p.ID, 1)
		it[key] = value
		return orderBody(it)
	}
	tests := []struct {
		name      string
		body      any
		wantField string
	}{
		{"unit_price_cents in an item", withExtra("unit_price_cents", 1), "items[0].unit_price_cents"},
		{"price_cents in an item", withExtra("price_cents", 1), "items[0].price_cents"},
		{"total_cents on the order", map[string]any{"items": []any{item(p.ID, 1)}, "total_cents": 1}, "total_cents"},
		{"status on the order", map[string]any{"items": []any{item(p.ID, 1)}, "status": "confirmed"}, "status"},
		{"user_id on the order", map[string]any{"items": []any{item(p.ID, 1)}, "user_id": uuid.NewString()}, "user_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.do(t, "POST", "/v1/orders", customer, tt.body, nil).invalid(t, tt.wantField)
			a.noOrderWritten(t)
		})
	}
}

func TestPlaceOrderRejectsInvalidItems(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	_, customer := a.registerCustomer(t, "ken@example.com")
	p := a.createProduct(t, admin, "ITEM-1", 100, 10)
	q := a.createProduct(t, admin, "ITEM-2", 200, 10)
	unknown := uuid.NewString()

	lines101 := make([]map[string]any, 101)
	for i := range lines101 {
		lines101[i] = item(uuid.NewString(), 1)
	}
	// Fields are named by their JSON path (domain.FieldError), whichever rule
	// a value breaks: a quantity of the wrong type is items[0].quantity, just
	// like a quantity out of range.
	tests := []struct {
		name       string
		body       any
		wantFields []string
	}{
		{"quantity 0", orderBody(item(p.ID, 0)), []string{"items[0].quantity"}},
		{"quantity negative", orderBody(item(p.ID, -1)), []string{"items[0].quantity"}},
		{"quantity 1001", orderBody(item(p.ID, 1001)), []string{"items[0].quantity"}},
		{"quantity missing", orderBody(map[string]any{"product_id": p.ID}), []string{"items[0].quantity"}},
		{"quantity 0 on the second line", orderBody(item(p.ID, 1), item(q.ID, 0)), []string{"items[1].quantity"}},
		{"quantity 1e30", fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1e30}]}`, p.ID), []string{"items[0].quantity"}},
		{"quantity 1.5", fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1.5}]}`, p.ID), []string{"items[0].quantity"}},
		{"quantity as a string", orderBody(item(p.ID, "2")), []string{"items[0].quantity"}},
		{"unknown product", orderBody(item(unknown, 1)), []string{"items[0].product_id"}},
		{"unknown product on the second line", orderBody(item(p.ID, 1), item(unknown, 1)), []string{"items[1].product_id"}},
		{"malformed product_id", orderBody(item("not-a-uuid", 1)), []string{"items[0].product_id"}},
		{"product_id missing", orderBody(map[string]any{"quantity": 1}), []string{"items[0].product_id"}},
		{"product_id the nil UUID", orderBody(item(uuid.Nil.String(), 1)), []string{"items[0].product_id"}},
		{"product_id a number", `{"items":[{"product_id":42,"quantity":1}]}`, []string{"items[0].product_id"}},
		{"malformed product_id and quantity 0", orderBody(item("nope", 0)), []string{"items[0].product_id", "items[0].quantity"}},
		{"empty items", map[string]any{"items": []any{}}, []string{"items"}},
		{"missing items", map[string]any{}, []string{"items"}},
		{"null items", `{"items":null}`, []string{"items"}},
		{"items an object", `{"items":{}}`, []string{"items"}},
		{"101 lines", orderBody(lines101...), []string{"items"}},
		{"the same product twice", orderBody(item(p.ID, 1), item(p.ID, 2)), []string{"items[1].product_id"}},
		{"the same product twice in another spelling", orderBody(item(p.ID, 1), item(strings.ToUpper(p.ID), 2)), []string{"items[1].product_id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.do(t, "POST", "/v1/orders", customer, tt.body, nil).invalid(t, tt.wantFields...)
			a.noOrderWritten(t)
		})
	}
	for _, body := range []string{"", "items", `[]`, `{"items":[]} {}`} {
		t.Run(fmt.Sprintf("not one JSON object %q", body), func(t *testing.T) {
			a.do(t, "POST", "/v1/orders", customer, body, nil).problem(t, http.StatusBadRequest)
			a.noOrderWritten(t)
		})
	}
}

func TestCancelOrder(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	_, owner := a.registerCustomer(t, "leo@example.com")
	_, other := a.registerCustomer(t, "mia@example.com")
	p := a.createProduct(t, admin, "CNL-1", 100, 10)
	o := a.placeOrder(t, owner, item(p.ID, 1))
	o2 := a.placeOrder(t, owner, item(p.ID, 2))
	cancel := func(id string) string { return "/v1/orders/" + id + "/cancel" }

	storedStatus := func(t *testing.T, id string) (string, int64) {
		t.Helper()
		var status string
		var version int64
		testenv.Must(t, a.pool.QueryRow(t.Context(), `SELECT status, version FROM orders WHERE id = $1`, id).Scan(&status, &version), "load order")
		return status, version
	}

	t.Run("another customer gets 404 and changes nothing", func(t *testing.T) {
		before := a.snapshot(t)
		a.do(t, "POST", cancel(o.ID), other, nil, nil).problem(t, http.StatusNotFound)
		a.unchanged(t, before)
		if status, version := storedStatus(t, o.ID); status != "pending" || version != 1 {
			t.Errorf("order is %s v%d, want pending v1", status, version)
		}
	})

	for _, tt := range []struct {
		name   string
		body   string
		status int
	}{
		{"a body that is not JSON", "cancel please", http.StatusBadRequest},
		{"a body with a field", `{"reason":"changed my mind"}`, http.StatusUnprocessableEntity},
		{"a null body", `null`, http.StatusUnprocessableEntity},
	} {
		t.Run(tt.name+" is refused and changes nothing", func(t *testing.T) {
			before := a.snapshot(t)
			a.do(t, "POST", cancel(o.ID), owner, tt.body, nil).problem(t, tt.status)
			a.unchanged(t, before)
		})
	}

	t.Run("the owner cancels", func(t *testing.T) {
		r := a.do(t, "POST", cancel(o.ID), owner, "{}", nil)
		r.expect(t, http.StatusAccepted)
		var got orderJSON
		r.into(t, &got)
		if got.ID != o.ID || got.Status != "cancelled" || got.Version != 2 {
			t.Errorf("cancelled order %s %s v%d, want %s cancelled v2", got.ID, got.Status, got.Version, o.ID)
		}
		if loc := r.header.Get("Location"); loc != "/v1/orders/"+o.ID {
			t.Errorf("Location %q, want /v1/orders/%s", loc, o.ID)
		}
		if status, version := storedStatus(t, o.ID); status != "cancelled" || version != 2 {
			t.Errorf("stored order %s v%d, want cancelled v2", status, version)
		}
		events := a.outbox(t, o.ID)
		if got := routingKeys(events); !slices.Equal(got, []string{"order.placed", "order.cancelled"}) {
			t.Errorf("outbox %q, want [order.placed order.cancelled]", got)
		} else if events[1].AggregateVersion != 2 {
			t.Errorf("order.cancelled aggregate_version %d, want 2", events[1].AggregateVersion)
		}
	})

	t.Run("cancelling again is 409 and changes nothing", func(t *testing.T) {
		before := a.snapshot(t)
		a.do(t, "POST", cancel(o.ID), owner, nil, nil).problem(t, http.StatusConflict)
		a.do(t, "POST", cancel(o.ID), admin, nil, nil).problem(t, http.StatusConflict)
		a.unchanged(t, before)
	})

	t.Run("an admin cancels a customer's order", func(t *testing.T) {
		r := a.do(t, "POST", cancel(o2.ID), admin, nil, nil)
		r.expect(t, http.StatusAccepted)
		var got orderJSON
		r.into(t, &got)
		if got.Status != "cancelled" || got.Version != 2 {
			t.Errorf("order %s v%d, want cancelled v2", got.Status, got.Version)
		}
	})

	for _, tt := range []struct{ name, id string }{
		{"an unknown id", uuid.NewString()},
		{"a malformed id", "not-a-uuid"},
		{"an empty-looking id", "%20"},
	} {
		t.Run(tt.name+" is 404", func(t *testing.T) {
			before := a.snapshot(t)
			a.do(t, "POST", cancel(tt.id), owner, nil, nil).problem(t, http.StatusNotFound)
			a.do(t, "POST", cancel(tt.id), admin, nil, nil).problem(t, http.StatusNotFound)
			a.unchanged(t, before)
		})
	}
}
