package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopdev/shop/handlers/httpapi"
)

// With MaxInFlight requests in hand, one more is refused at once with 503
// and Retry-After, the probes still answer, and once a request is done the
// API takes new ones again.
func TestABusyAPIRefusesAtOnceAndStillAnswersItsProbes(t *testing.T) {
	a := newAPIWith(t, func(c *httpapi.Config, _ *pgxpool.Pool) { c.MaxInFlight = 1 })
	_, adminToken := a.createAdmin(t)
	_, customer := a.registerCustomer(t, "busy@example.com")
	p := a.createProduct(t, adminToken, "SKU-BUSY", 1000, 5)

	// Hold the orders table, so that an order stays in hand.
	ctx := context.Background()
	lock, err := a.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lock.Rollback(ctx) })
	if _, err := lock.Exec(ctx, "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	placed := make(chan response, 1)
	failed := make(chan error, 1)
	go func() {
		r, err := a.send("POST", "/v1/orders", customer, orderBody(item(p.ID, 1)), nil)
		if err != nil {
			failed <- err
			return
		}
		placed <- r
	}()
	waitForMetric(t, a, "shop_http_requests_in_flight 1")

	busy := a.do(t, "GET", "/v1/products/"+p.ID, "", nil, nil)
	if got := busy.problem(t, http.StatusServiceUnavailable).Detail; got != "the server is busy; retry later" {
		t.Errorf("detail %q", got)
	}
	if got := busy.header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	for _, probe := range []string{"/healthz", "/readyz"} {
		a.do(t, "GET", probe, "", nil, nil).expect(t, http.StatusOK)
	}
	if line := a.logLine(busy.header.Get("X-Request-Id")); strings.Contains(line, "request failed") {
		t.Errorf("a refusal is logged as a failure: %s", line)
	}

	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-placed:
		r.expect(t, http.StatusAccepted)
	case err := <-failed:
		t.Fatal(err)
	}
	a.do(t, "GET", "/v1/products/"+p.ID, "", nil, nil).expect(t, http.StatusOK)
	metrics := a.scrape(t)
	for _, want := range []string{"shop_http_busy_refused_total 1", "shop_http_requests_in_flight 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// A negative bound is refused.
func TestRequestsInFlightBoundConfig(t *testing.T) {
	a := newAPI(t)
	cfg := newConfig(t, a.pool, a.auth)
	cfg.MaxInFlight = -1
	if _, err := httpapi.New(cfg); err == nil || !strings.Contains(err.Error(), "requests in flight") {
		t.Errorf("MaxInFlight -1: got %v, want an error naming it", err)
	}
}

// waitForMetric waits until /metrics shows line.
func waitForMetric(t *testing.T, a *api, line string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(a.scrape(t), line) {
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never showed %q", line)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
