package httpapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopdev/shop/handlers/httpapi"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
)

// While the outbox holds OUTBOX_MAX_PENDING unsent rows (no relay runs
// here), a command waits for room; when none comes within its wait it is
// refused 503 with Retry-After and changes nothing, reads still answer,
// and once the relay has caught up commands go through again.
func TestCommandsWaitWhileTheOutboxIsAtItsBound(t *testing.T) {
	t.Parallel()
	var backlog *outbox.Backlog
	a := newAPIWith(t, func(c *httpapi.Config, pool *pgxpool.Pool) {
		var err error
		backlog, err = outbox.NewBacklog(outbox.BacklogConfig{Pool: pool, Max: 2, Poll: 10 * time.Millisecond,
			Wait: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler), Registry: c.Registry})
		testenv.Must(t, err, "backlog")
		c.Backlog = backlog
	})
	_, admin := a.createAdmin(t)
	_, customer := a.registerCustomer(t, "patient@example.com")
	p := a.createProduct(t, admin, "SKU-BACKLOG", 1000, 50)
	relayAll := func() {
		t.Helper()
		_, err := a.pool.Exec(context.Background(), `DELETE FROM outbox`)
		testenv.Must(t, err, "relay the outbox")
	}
	relayAll()
	testenv.Run(t, func(ctx context.Context) error { backlog.Run(ctx); return nil })

	a.placeOrder(t, customer, item(p.ID, 1))
	a.placeOrder(t, customer, item(p.ID, 1)) // the outbox now holds 2: its bound
	waitForMetric(t, a, "shop_outbox_backlog_rows 2")

	before := a.snapshot(t)
	refused := a.do(t, "POST", "/v1/orders", customer, orderBody(item(p.ID, 1)), headers{"Idempotency-Key": "held-1"})
	if got := refused.problem(t, http.StatusServiceUnavailable).Detail; !strings.Contains(got, "retry") {
		t.Errorf("detail %q does not say to retry", got)
	}
	if got := refused.header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	a.unchanged(t, before)
	if line := a.logLine(refused.header.Get("X-Request-Id")); strings.Contains(line, "request failed") {
		t.Errorf("a refusal is logged as a failure: %s", line)
	}
	a.do(t, "GET", "/v1/products/"+p.ID, "", nil, nil).expect(t, http.StatusOK)

	// A command that arrives while the relay catches up waits for it.
	held := make(chan response, 1)
	failed := make(chan error, 1)
	go func() {
		r, err := a.send("POST", "/v1/orders", customer, orderBody(item(p.ID, 1)), headers{"Idempotency-Key": "held-1"})
		if err != nil {
			failed <- err
			return
		}
		held <- r
	}()
	waitForMetric(t, a, "shop_outbox_backlog_held_total 2")
	relayAll()
	select {
	case r := <-held:
		r.expect(t, http.StatusAccepted)
	case err := <-failed:
		t.Fatal(err)
	}
	metrics := a.scrape(t)
	for _, want := range []string{"shop_outbox_backlog_held_total 2", "shop_outbox_backlog_refused_total 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if n := a.count(t, "SELECT count(*) FROM orders"); n != 3 {
		t.Errorf("%d orders, want 3: two before the bound, one after the relay caught up", n)
	}
}
