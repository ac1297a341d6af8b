package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopdev/shop/handlers/httpapi"
)

// TestRateLimitAnswers429PerClient: a client past its burst gets 429
// problem+json with Retry-After (when its next request may go), and its
// limited command writes nothing;
// another client, and the health and metrics endpoints, go on. The clients
// come through a proxy on loopback that names them in X-Forwarded-For.
func TestRateLimitAnswers429PerClient(t *testing.T) {
	t.Parallel()
	// One request in 100 s refills the bucket: within the test, only the
	// burst of 3 goes through.
	a := newAPIWith(t, func(c *httpapi.Config, _ *pgxpool.Pool) { c.RateLimit, c.RateBurst = 0.01, 3 })
	from := func(ip string) headers { return headers{"X-Forwarded-For": ip} }
	unknown := "/v1/products/" + uuid.NewString()

	for i := range 3 {
		if r := a.do(t, http.MethodGet, unknown, "", nil, from("203.0.113.1")); r.status != http.StatusNotFound {
			t.Fatalf("request %d of the burst: status %d, want 404; body: %s", i+1, r.status, r.raw)
		}
	}
	tests := []struct {
		name   string
		method string
		path   string
		body   any
		client string
		want   int
	}{
		{"the burst is spent", http.MethodGet, unknown, nil, "203.0.113.1", http.StatusTooManyRequests},
		{"a command past the burst", http.MethodPost, "/v1/users",
			map[string]any{"email": "late@example.com", "name": "Late", "password": "long enough"}, "203.0.113.1", http.StatusTooManyRequests},
		{"another client", http.MethodGet, unknown, nil, "203.0.113.2", http.StatusNotFound},
		{"the health check", http.MethodGet, "/healthz", nil, "203.0.113.1", http.StatusOK},
		{"the readiness check", http.MethodGet, "/readyz", nil, "203.0.113.1", http.StatusOK},
		{"the metrics", http.MethodGet, "/metrics", nil, "203.0.113.1", http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := a.snapshot(t)
			r := a.do(t, tc.method, tc.path, "", tc.body, from(tc.client))
			if tc.want != http.StatusTooManyRequests {
				r.expect(t, tc.want)
				return
			}
			p := r.problem(t, http.StatusTooManyRequests)
			if p.Detail == "" || r.header.Get("Retry-After") != "100" {
				t.Errorf("429 with detail %q and Retry-After %q; want a detail and Retry-After: 100 (a request per 100 s)", p.Detail, r.header.Get("Retry-After"))
			}
			a.unchanged(t, before)
		})
	}
}

// TestRateLimitIsOffByDefault: without a RateLimit, a client may send more
// than any burst.
func TestRateLimitIsOffByDefault(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	unknown := "/v1/products/" + uuid.NewString()
	for i := range 50 {
		if r := a.do(t, http.MethodGet, unknown, "", nil, nil); r.status != http.StatusNotFound {
			t.Fatalf("request %d: status %d, want 404; body: %s", i+1, r.status, r.raw)
		}
	}
}

func TestRateLimitMustNotBeNegative(t *testing.T) {
	t.Parallel()
	for _, cfg := range []httpapi.Config{{RateLimit: -1}, {RateLimit: 1, RateBurst: -1}} {
		a := newAPIWith(t, nil) // for a valid pool and auth
		valid := newConfig(t, a.pool, a.auth)
		valid.RateLimit, valid.RateBurst = cfg.RateLimit, cfg.RateBurst
		if _, err := httpapi.New(valid); err == nil {
			t.Errorf("New accepted rate limit %v, burst %d", cfg.RateLimit, cfg.RateBurst)
		}
	}
}
