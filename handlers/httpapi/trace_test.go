package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopdev/shop/handlers/httpapi"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
)

// TestServerSpans: with Tracing set, each request is a server span named
// after its route, a child of the caller's valid traceparent or the root
// of a trace of its own, with its status code, marked failed for a 5xx
// only; the probes are not traced. The events a traced command appends
// carry its span's context.
func TestServerSpans(t *testing.T) {
	t.Parallel()
	tp, rec := testenv.Recorder(t)
	a := newAPIWith(t, func(c *httpapi.Config, _ *pgxpool.Pool) { c.Tracing = tp })
	_, admin := a.createAdmin(t)
	product := a.createProduct(t, admin, "TRACED-1", 500, 10)
	_, customer := a.registerCustomer(t, "traced@shop.test")

	const caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	placed := a.do(t, http.MethodPost, "/v1/orders", customer, orderBody(item(product.ID, 1)), headers{"Traceparent": caller}).expect(t, http.StatusAccepted)
	var order orderJSON
	placed.into(t, &order)
	a.do(t, http.MethodPost, "/v1/orders", customer, orderBody(item(product.ID, 1)), headers{"Traceparent": "00-garbage"}).expect(t, http.StatusAccepted)
	a.do(t, http.MethodGet, "/v1/orders/not-a-uuid", customer, nil, nil).expect(t, http.StatusNotFound)
	a.do(t, http.MethodGet, "/healthz", "", nil, nil).expect(t, http.StatusOK)

	var orders []sdktrace.ReadOnlySpan
	for _, sp := range rec.Ended() {
		if strings.Contains(sp.Name(), "healthz") {
			t.Errorf("the probe was traced: %s", sp.Name())
		}
		if sp.SpanKind() == trace.SpanKindServer && sp.Name() == "POST /v1/orders" {
			orders = append(orders, sp)
		}
	}
	if len(orders) != 2 {
		t.Fatalf("%d server spans named POST /v1/orders, want 2", len(orders))
	}
	continued, fresh := orders[0], orders[1]
	if got := continued.Parent(); got.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || got.SpanID().String() != "00f067aa0ba902b7" || !got.IsRemote() {
		t.Errorf("the span of a request with a valid traceparent has parent %v, want the caller's", got)
	}
	if fresh.Parent().IsValid() || fresh.SpanContext().TraceID() == continued.SpanContext().TraceID() {
		t.Errorf("the span of a request with an invalid traceparent has parent %v: want a trace of its own", fresh.Parent())
	}
	attrs := map[string]string{}
	for _, kv := range continued.Attributes() {
		attrs[string(kv.Key)] = kv.Value.String()
	}
	for k, want := range map[string]string{"http.request.method": "POST", "http.route": "/v1/orders", "url.path": "/v1/orders", "http.response.status_code": "202"} {
		if attrs[k] != want {
			t.Errorf("%s = %q, want %q", k, attrs[k], want)
		}
	}
	if continued.Status().Code != codes.Unset {
		t.Errorf("a 202 marked the span %v", continued.Status())
	}
	for _, sp := range rec.Ended() {
		if sp.SpanKind() == trace.SpanKindServer && sp.Name() == "GET /v1/orders/:id" && sp.Status().Code != codes.Unset {
			t.Errorf("a 404 marked the span failed: %v", sp.Status())
		}
	}
	rows := a.outbox(t, order.ID)
	if len(rows) == 0 {
		t.Fatal("the order appended no event")
	}
	want := "00-" + continued.SpanContext().TraceID().String() + "-" + continued.SpanContext().SpanID().String() + "-01"
	for _, r := range rows {
		var env outbox.Envelope
		testenv.Must(t, json.Unmarshal(r.Payload, &env), "decode envelope")
		if got := env.Trace["traceparent"]; got != want {
			t.Errorf("%s carries traceparent %q, want the request span's %q", r.RoutingKey, got, want)
		}
	}
}
