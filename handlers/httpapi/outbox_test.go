package httpapi_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
)

// envelope is the outbox payload as the relay publishes it.
type envelope struct {
	ID               uuid.UUID         `json:"id"`
	Type             string            `json:"type"`
	SchemaVersion    int               `json:"schema_version"`
	AggregateType    string            `json:"aggregate_type"`
	AggregateID      uuid.UUID         `json:"aggregate_id"`
	AggregateVersion int64             `json:"aggregate_version"`
	OccurredAt       time.Time         `json:"occurred_at"`
	CorrelationID    string            `json:"correlation_id"`
	CausationID      string            `json:"causation_id"`
	Trace            map[string]string `json:"trace"`
	Data             map[string]any    `json:"data"`
}

var envelopeKeys = []string{"aggregate_id", "aggregate_type", "aggregate_version", "causation_id", "correlation_id", "data", "id", "occurred_at", "schema_version", "type"}

func TestCommandsAppendTheirEventsToTheOutbox(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

	start := time.Now().Add(-time.Second)
	created := a.do(t, "POST", "/v1/products", admin, map[string]any{"sku": "OBX-1", "name": "Lamp", "price_cents": 4500, "stock": 5},
		headers{"X-Correlation-Id": "checkout-flow-1"})
	created.expect(t, http.StatusCreated)
	var p productJSON
	created.into(t, &p)
	patched := a.do(t, "PATCH", "/v1/products/"+p.ID, admin, map[string]any{"name": "Desk lamp"}, nil)
	patched.expect(t, http.StatusOK)
	restocked := a.do(t, "POST", "/v1/products/"+p.ID+"/restock", admin, map[string]any{"quantity": 10},
		headers{"X-Correlation-Id": "restock-run-7", "Traceparent": traceparent})
	restocked.expect(t, http.StatusAccepted)
	end := time.Now().Add(time.Second)

	rows := a.outbox(t, p.ID)
	want := []struct {
		typ         string
		version     int64
		correlation string // "" means: the request id, as none was sent
		response    response
		data        map[string]any
	}{
		{"product.created", 1, "checkout-flow-1", created,
			map[string]any{"product_id": p.ID, "sku": "OBX-1", "name": "Lamp", "price_cents": 4500.0, "stock_available": 5.0}},
		{"product.updated", 2, "", patched,
			map[string]any{"product_id": p.ID, "sku": "OBX-1", "name": "Desk lamp", "price_cents": 4500.0}},
		{"stock.changed", 3, "restock-run-7", restocked,
			map[string]any{"product_id": p.ID, "stock_available": 15.0, "delta": 10.0, "reason": "restocked"}},
	}
	if got := routingKeys(rows); len(got) != len(want) || got[0] != want[0].typ || got[1] != want[1].typ || got[2] != want[2].typ {
		t.Fatalf("outbox for the product in id order %q, want [product.created product.updated stock.changed]", got)
	}
	seen := map[uuid.UUID]bool{}
	for i, w := range want {
		row := rows[i]
		t.Run(w.typ, func(t *testing.T) {
			if row.AggregateVersion != w.version || row.AggregateType != "product" || row.AggregateID.String() != p.ID {
				t.Errorf("row aggregate %s %s v%d, want product %s v%d", row.AggregateType, row.AggregateID, row.AggregateVersion, p.ID, w.version)
			}
			if row.Partition != rows[0].Partition {
				t.Errorf("partition %d, want %d: one aggregate's events share a partition", row.Partition, rows[0].Partition)
			}
			if row.Partition != outbox.Partition(uuid.MustParse(p.ID)) || row.Partition < 0 || row.Partition >= outbox.Partitions {
				t.Errorf("partition %d, want outbox.Partition(id) = %d", row.Partition, outbox.Partition(uuid.MustParse(p.ID)))
			}

			var keys map[string]json.RawMessage
			testenv.Must(t, json.Unmarshal(row.Payload, &keys), "decode payload")
			var got []string
			for k := range keys {
				got = append(got, k)
			}
			slices.Sort(got)
			wantKeys := envelopeKeys
			if w.typ == "stock.changed" {
				wantKeys = append(slices.Clone(envelopeKeys), "trace")
				slices.Sort(wantKeys)
			}
			if !slices.Equal(got, wantKeys) {
				t.Errorf("envelope keys %q, want %q", got, wantKeys)
			}

			var env envelope
			testenv.Must(t, json.Unmarshal(row.Payload, &env), "decode envelope")
			if env.ID != row.EventID || env.ID.Version() != 7 || seen[env.ID] {
				t.Errorf("envelope id %s (v%d), want the row's event_id %s, a fresh UUIDv7", env.ID, env.ID.Version(), row.EventID)
			}
			seen[env.ID] = true
			if env.Type != w.typ || env.Type != row.RoutingKey {
				t.Errorf("type %q, want %q (the routing key)", env.Type, w.typ)
			}
			if env.SchemaVersion != 1 {
				t.Errorf("schema_version %d, want 1", env.SchemaVersion)
			}
			if env.AggregateType != "product" || env.AggregateID.String() != p.ID || env.AggregateVersion != w.version {
				t.Errorf("envelope aggregate %s %s v%d, want product %s v%d", env.AggregateType, env.AggregateID, env.AggregateVersion, p.ID, w.version)
			}
			if env.OccurredAt.Before(start) || env.OccurredAt.After(end) {
				t.Errorf("occurred_at %s, want between %s and %s", env.OccurredAt, start, end)
			}
			requestID := w.response.header.Get("X-Request-Id")
			if requestID == "" {
				t.Fatal("the response has no X-Request-Id")
			}
			wantCorrelation := w.correlation
			if wantCorrelation == "" {
				wantCorrelation = requestID
			}
			if env.CorrelationID != wantCorrelation {
				t.Errorf("correlation_id %q, want %q", env.CorrelationID, wantCorrelation)
			}
			if env.CausationID != requestID {
				t.Errorf("causation_id %q, want the request id %q", env.CausationID, requestID)
			}
			for k, v := range w.data {
				if env.Data[k] != v {
					t.Errorf("data.%s = %v, want %v (data %v)", k, env.Data[k], v, env.Data)
				}
			}
			if w.typ == "stock.changed" && env.Trace["traceparent"] != traceparent {
				t.Errorf("trace %v, want the request's traceparent", env.Trace)
			}
		})
	}

	t.Run("an oversized correlation id is replaced by the request id", func(t *testing.T) {
		r := a.do(t, "POST", "/v1/products", admin, map[string]any{"sku": "OBX-2", "name": "Chair", "price_cents": 1, "stock": 1},
			headers{"X-Correlation-Id": strings.Repeat("c", 129)})
		r.expect(t, http.StatusCreated)
		var q productJSON
		r.into(t, &q)
		rows := a.outbox(t, q.ID)
		if len(rows) != 1 {
			t.Fatalf("%d outbox rows, want 1", len(rows))
		}
		var env envelope
		testenv.Must(t, json.Unmarshal(rows[0].Payload, &env), "decode envelope")
		if env.CorrelationID != r.header.Get("X-Request-Id") {
			t.Errorf("correlation_id %q, want the request id %q", env.CorrelationID, r.header.Get("X-Request-Id"))
		}
	})
}

func TestOutboxKeepsEachAggregateInVersionOrder(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	_, customer := a.registerCustomer(t, "wendy@example.com")
	p := a.createProduct(t, admin, "ORD-1", 100, 5)
	q := a.createProduct(t, admin, "ORD-2", 100, 5)
	// interleave two products and an order
	a.do(t, "POST", "/v1/products/"+q.ID+"/restock", admin, map[string]any{"quantity": 1}, nil).expect(t, http.StatusAccepted)
	o := a.placeOrder(t, customer, item(p.ID, 1), item(q.ID, 1))
	a.do(t, "POST", "/v1/products/"+p.ID+"/restock", admin, map[string]any{"quantity": 1}, nil).expect(t, http.StatusAccepted)
	a.do(t, "POST", "/v1/orders/"+o.ID+"/cancel", customer, nil, nil).expect(t, http.StatusAccepted)
	a.do(t, "PATCH", "/v1/products/"+q.ID, admin, map[string]any{"price_cents": 7}, nil).expect(t, http.StatusOK)

	for _, id := range []string{p.ID, q.ID, o.ID} {
		rows := a.outbox(t, id)
		for i, row := range rows {
			if row.AggregateVersion != int64(i+1) {
				t.Errorf("aggregate %s: row %d (%s) has version %d, want %d", id, i, row.RoutingKey, row.AggregateVersion, i+1)
			}
			if row.Partition != rows[0].Partition {
				t.Errorf("aggregate %s: row %d in partition %d, want %d", id, i, row.Partition, rows[0].Partition)
			}
		}
	}
	if got := routingKeys(a.outbox(t, o.ID)); !slices.Equal(got, []string{"order.placed", "order.cancelled"}) {
		t.Errorf("order events %q, want [order.placed order.cancelled]", got)
	}
}
