package api_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shopdev/shop/api"
)

// designKeys are the routing keys DESIGN.md lists, in its order.
var designKeys = []string{"user.registered", "product.created", "product.updated", "stock.changed",
	"order.placed", "stock.reserved", "stock.rejected", "order.confirmed", "order.rejected",
	"order.cancelled", "stock.released"}

// These tests need no service: go test -short runs them.

// TestEventsDocumentParses: api/asyncapi.yaml parses into one event per
// routing key of the design, in its order, each with a one-line summary,
// its subscribers and schema version 1.
func TestEventsDocumentParses(t *testing.T) {
	t.Parallel()
	events, err := api.Events()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range events {
		keys = append(keys, e.RoutingKey)
		if e.Summary == "" || len(e.Groups) == 0 || e.SchemaVersion != 1 {
			t.Errorf("%s: summary %q, groups %v, schema version %d; want a summary, a group, version 1", e.RoutingKey, e.Summary, e.Groups, e.SchemaVersion)
		}
	}
	if !slices.Equal(keys, designKeys) {
		t.Errorf("events %v, want %v", keys, designKeys)
	}
}

// TestOperationsSayWhoSubscribes: each receive operation's description
// names the groups of its x-consumer-groups, which a reader sees.
func TestOperationsSayWhoSubscribes(t *testing.T) {
	t.Parallel()
	var doc struct {
		Operations map[string]struct {
			Action      string   `yaml:"action"`
			Description string   `yaml:"description"`
			Groups      []string `yaml:"x-consumer-groups"`
		} `yaml:"operations"`
	}
	if err := yaml.Unmarshal(api.AsyncAPIYAML(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Operations) != len(designKeys) {
		t.Errorf("%d operations, want one per channel (%d)", len(doc.Operations), len(designKeys))
	}
	for name, op := range doc.Operations {
		if op.Action != "receive" || !strings.HasPrefix(op.Description, "Subscribed by shop's consumer groups: ") {
			t.Errorf("operation %s: action %q, description %q; want a receive saying who subscribes", name, op.Action, op.Description)
		}
		for _, g := range op.Groups {
			if !strings.Contains(op.Description, g+" (") {
				t.Errorf("operation %s: description %q does not name group %s", name, op.Description, g)
			}
		}
	}
}

// valid returns a valid message of each event: its envelope (as a map, for
// the tests to break) and its AMQP properties, as the relay sends them.
func valid(t *testing.T, key string) (map[string]any, api.Delivery) {
	t.Helper()
	const (
		eventID = "0190f5a2-7c3e-7d4a-9b1c-2e3f4a5b6c7d"
		orderID = "0190f5a2-0000-7000-8000-00000000000a"
		userID  = "0190f5a2-0000-7000-8000-00000000000b"
		prodID  = "0190f5a2-0000-7000-8000-00000000000c"
	)
	stockLines := []any{map[string]any{"product_id": prodID, "quantity": 2}}
	events := map[string]struct {
		aggregate, id string
		version       int
		data          map[string]any
	}{
		"user.registered": {"user", userID, 1, map[string]any{"user_id": userID, "email": "ann@example.com", "name": "Ann", "role": "customer"}},
		"product.created": {"product", prodID, 1, map[string]any{"product_id": prodID, "sku": "MUG-1", "name": "Mug", "price_cents": 1200, "stock_available": 10}},
		"product.updated": {"product", prodID, 2, map[string]any{"product_id": prodID, "sku": "MUG-1", "name": "Big mug", "price_cents": 1500}},
		"stock.changed":   {"product", prodID, 3, map[string]any{"product_id": prodID, "stock_available": 8, "delta": -2, "reason": "reserved", "order_id": orderID}},
		"order.placed": {"order", orderID, 1, map[string]any{"order_id": orderID, "user_id": userID, "status": "pending", "total_cents": 2400,
			"items": []any{map[string]any{"product_id": prodID, "sku": "MUG-1", "name": "Mug", "quantity": 2, "unit_price_cents": 1200}}}},
		"stock.reserved":  {"reservation", orderID, 1, map[string]any{"order_id": orderID, "items": stockLines}},
		"stock.rejected":  {"reservation", orderID, 1, map[string]any{"order_id": orderID, "items": stockLines, "reason": "not enough stock: MUG-1: 2 wanted, 1 available"}},
		"order.confirmed": {"order", orderID, 2, map[string]any{"order_id": orderID, "user_id": userID, "status": "confirmed", "from": "pending"}},
		"order.rejected":  {"order", orderID, 2, map[string]any{"order_id": orderID, "user_id": userID, "status": "rejected", "from": "pending", "reason": "not enough stock: MUG-1: 2 wanted, 1 available"}},
		"order.cancelled": {"order", orderID, 3, map[string]any{"order_id": orderID, "user_id": userID, "status": "cancelled", "from": "confirmed"}},
		"stock.released":  {"reservation", orderID, 2, map[string]any{"order_id": orderID, "items": stockLines}},
	}
	e, ok := events[key]
	if !ok {
		t.Fatalf("no valid %s in the test", key)
	}
	env := map[string]any{
		"id": eventID, "type": key, "schema_version": 1, "aggregate_type": e.aggregate, "aggregate_id": e.id,
		"aggregate_version": e.version, "occurred_at": "2026-03-01T12:00:00.123456Z",
		"correlation_id": "3f1c2b7a9e8d4c6b", "causation_id": "3f1c2b7a9e8d4c6b",
		"trace": map[string]any{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		"data":  e.data,
	}
	props := api.Delivery{ContentType: "application/json", DeliveryMode: 2, MessageID: eventID, Type: key,
		Timestamp: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		Headers:   map[string]any{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01", "tracestate": "shop=1"}}
	return env, props
}

func encode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadSchemas(t *testing.T) *api.EventSchemas {
	t.Helper()
	s, err := api.LoadEventSchemas()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestEveryEventHasASchema: each routing key has a compiled schema, which a
// valid message passes, whole (with its properties and headers) or its
// body alone; and a message without trace context and headers passes too.
func TestEveryEventHasASchema(t *testing.T) {
	t.Parallel()
	s := loadSchemas(t)
	if got := s.RoutingKeys(); !slices.Equal(got, designKeys) {
		t.Fatalf("schemas for %v, want %v", got, designKeys)
	}
	for _, key := range designKeys {
		t.Run(key, func(t *testing.T) {
			t.Parallel()
			env, props := valid(t, key)
			if err := s.ValidateDelivery(key, props, encode(t, env)); err != nil {
				t.Errorf("valid message refused: %v", err)
			}
			if err := s.Validate(key, encode(t, env)); err != nil {
				t.Errorf("valid body refused: %v", err)
			}
			delete(env, "trace")
			props.Headers = nil
			if err := s.ValidateDelivery(key, props, encode(t, env)); err != nil {
				t.Errorf("valid message without trace context refused: %v", err)
			}
		})
	}
}

// TestBrokenEventsFail: each way a message can break its contract fails,
// with an error naming the routing key and where it breaks.
func TestBrokenEventsFail(t *testing.T) {
	t.Parallel()
	s := loadSchemas(t)
	data := func(env map[string]any) map[string]any { return env["data"].(map[string]any) }
	tests := []struct {
		name      string
		key       string
		breakIt   func(env map[string]any, d *api.Delivery)
		wantWhere string // a violation's Where
	}{
		{"unknown field in data", "order.placed", func(env map[string]any, _ *api.Delivery) { data(env)["coupon"] = "FREE" }, "payload /data"},
		{"unknown field in the envelope", "order.placed", func(env map[string]any, _ *api.Delivery) { env["tenant"] = "x" }, "payload /"},
		{"unknown field in a line", "order.placed", func(env map[string]any, _ *api.Delivery) {
			data(env)["items"].([]any)[0].(map[string]any)["discount"] = 1
		}, "payload /data/items/0"},
		{"missing required field in data", "user.registered", func(env map[string]any, _ *api.Delivery) { delete(data(env), "email") }, "payload /data"},
		{"missing envelope field", "stock.reserved", func(env map[string]any, _ *api.Delivery) { delete(env, "correlation_id") }, "payload /"},
		{"wrong type", "order.placed", func(env map[string]any, _ *api.Delivery) { data(env)["total_cents"] = "2400" }, "payload /data/total_cents"},
		{"a fraction for an integer", "product.created", func(env map[string]any, _ *api.Delivery) { data(env)["price_cents"] = 12.5 }, "payload /data/price_cents"},
		{"wrong type const", "order.placed", func(env map[string]any, _ *api.Delivery) { env["type"] = "order.confirmed" }, "payload /type"},
		{"wrong aggregate type", "stock.reserved", func(env map[string]any, _ *api.Delivery) { env["aggregate_type"] = "order" }, "payload /aggregate_type"},
		{"another schema version", "order.placed", func(env map[string]any, _ *api.Delivery) { env["schema_version"] = 2 }, "payload /schema_version"},
		{"an event id that is not a UUIDv7", "order.placed", func(env map[string]any, d *api.Delivery) {
			env["id"], d.MessageID = "6ba7b810-9dad-41d1-80b4-00c04fd430c8", "6ba7b810-9dad-41d1-80b4-00c04fd430c8"
		}, "payload /id"},
		{"an id that is no UUID", "order.placed", func(env map[string]any, _ *api.Delivery) { data(env)["user_id"] = "ann" }, "payload /data/user_id"},
		{"a time that is no date-time", "order.placed", func(env map[string]any, _ *api.Delivery) { env["occurred_at"] = "yesterday" }, "payload /occurred_at"},
		{"an unknown status", "order.cancelled", func(env map[string]any, _ *api.Delivery) { data(env)["from"] = "rejected" }, "payload /data/from"},
		{"an unknown role", "user.registered", func(env map[string]any, _ *api.Delivery) { data(env)["role"] = "root" }, "payload /data/role"},
		{"a quantity below 1", "stock.released", func(env map[string]any, _ *api.Delivery) {
			data(env)["items"].([]any)[0].(map[string]any)["quantity"] = 0
		}, "payload /data/items/0/quantity"},
		{"an order without lines", "order.placed", func(env map[string]any, _ *api.Delivery) { data(env)["items"] = []any{} }, "payload /data/items"},
		{"a negative stock", "product.created", func(env map[string]any, _ *api.Delivery) { data(env)["stock_available"] = -1 }, "payload /data/stock_available"},
		{"a reservation without its order", "stock.changed", func(env map[string]any, _ *api.Delivery) { delete(data(env), "order_id") }, "payload /data"},
		{"a reservation that adds stock", "stock.changed", func(env map[string]any, _ *api.Delivery) { data(env)["delta"] = 2 }, "payload /data/delta"},
		{"a restock that names an order", "stock.changed", func(env map[string]any, _ *api.Delivery) {
			data(env)["reason"], data(env)["delta"] = "restocked", 2
		}, "payload /data"},
		{"a name with a control character", "product.updated", func(env map[string]any, _ *api.Delivery) { data(env)["name"] = "Mug\x07" }, "payload /data/name"},
		{"a reason on a confirmation", "order.confirmed", func(env map[string]any, _ *api.Delivery) { data(env)["reason"] = "because" }, "payload /data"},
		{"a malformed trace context", "order.placed", func(env map[string]any, _ *api.Delivery) {
			env["trace"] = map[string]any{"traceparent": "not-a-traceparent"}
		}, "payload /trace/traceparent"},
		{"a version the aggregate cannot be at", "order.confirmed", func(env map[string]any, _ *api.Delivery) { env["aggregate_version"] = 1 }, "payload /aggregate_version"},
		{"non-persistent delivery", "order.placed", func(_ map[string]any, d *api.Delivery) { d.DeliveryMode = 1 }, "property delivery_mode"},
		{"wrong content type", "order.placed", func(_ map[string]any, d *api.Delivery) { d.ContentType = "text/plain" }, "property content_type"},
		{"a content encoding", "order.placed", func(_ map[string]any, d *api.Delivery) { d.ContentEncoding = "gzip" }, "property content_encoding"},
		{"no content type", "order.placed", func(_ map[string]any, d *api.Delivery) { d.ContentType = "" }, "property content_type"},
		{"a type property other than the routing key", "order.placed", func(_ map[string]any, d *api.Delivery) { d.Type = "order" }, "property type"},
		{"a message id other than the event id", "order.placed", func(_ map[string]any, d *api.Delivery) { d.MessageID = "42" }, "property message_id"},
		{"no timestamp", "order.placed", func(_ map[string]any, d *api.Delivery) { d.Timestamp = time.Time{} }, "property timestamp"},
		{"an undocumented property", "order.placed", func(_ map[string]any, d *api.Delivery) { d.AppID = "shop" }, "property app_id"},
		{"an undocumented header", "order.placed", func(_ map[string]any, d *api.Delivery) { d.Headers["x-tenant"] = "a" }, "headers /"},
		{"a malformed traceparent header", "order.placed", func(_ map[string]any, d *api.Delivery) { d.Headers["traceparent"] = "00-1-2-3" }, "headers /traceparent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, props := valid(t, tt.key)
			tt.breakIt(env, &props)
			err := s.ValidateDelivery(tt.key, props, encode(t, env))
			var ee *api.EventError
			if !errors.As(err, &ee) {
				t.Fatalf("err = %v, want an *api.EventError", err)
			}
			if ee.RoutingKey != tt.key || !strings.Contains(err.Error(), tt.key) {
				t.Errorf("error %q does not name %s", err, tt.key)
			}
			if !slices.ContainsFunc(ee.Violations, func(v api.Violation) bool { return v.Where == tt.wantWhere }) {
				t.Errorf("violations %v, want one at %q", ee.Violations, tt.wantWhere)
			}
			if strings.HasPrefix(tt.wantWhere, "payload") {
				if err := s.Validate(tt.key, encode(t, env)); err == nil {
					t.Error("Validate passed the body that ValidateDelivery refused")
				}
			}
		})
	}
}

// TestUnknownOrUnparsableEventsFail: a routing key the document does not
// have, and a body that is not JSON, fail.
func TestUnknownOrUnparsableEventsFail(t *testing.T) {
	t.Parallel()
	s := loadSchemas(t)
	env, props := valid(t, "order.placed")
	for _, err := range []error{s.Validate("nobody.listens", encode(t, env)), s.ValidateDelivery("nobody.listens", props, encode(t, env))} {
		if !errors.Is(err, api.ErrUnknownEvent) || !strings.Contains(err.Error(), "nobody.listens") {
			t.Errorf("err = %v, want ErrUnknownEvent naming the key", err)
		}
	}
	for _, body := range []string{"", "not json", `{"id": 1} trailing`, "[]"} {
		if err := s.Validate("order.placed", []byte(body)); err == nil {
			t.Errorf("body %q passed", body)
		}
	}
}

// TestEventsAgreeWithSchemas: the catalogue and the schemas name the same
// events, and each event's groups are listed once.
func TestEventsAgreeWithSchemas(t *testing.T) {
	t.Parallel()
	events, err := api.Events()
	if err != nil {
		t.Fatal(err)
	}
	s := loadSchemas(t)
	var keys []string
	for _, e := range events {
		keys = append(keys, e.RoutingKey)
		set := map[string]bool{}
		for _, g := range e.Groups {
			set[g] = true
		}
		if len(set) != len(e.Groups) {
			t.Errorf("%s: groups %v repeat", e.RoutingKey, e.Groups)
		}
	}
	if !slices.Equal(keys, s.RoutingKeys()) {
		t.Errorf("catalogue %v, schemas %v", keys, s.RoutingKeys())
	}
}
