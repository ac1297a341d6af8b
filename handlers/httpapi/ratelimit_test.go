package httpapi_test

import (
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/shopdev/shop/handlers/httpapi"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/limit"
)

// limited tunes an API to the shared rate limit of rate requests per
// second and burst at once per client, in Redis under prefix (a fresh one
// when empty), with its clients named by a proxy on loopback when
// behindProxy.
func limited(t *testing.T, rdb *redis.Client, prefix string, rate float64, burst int, behindProxy bool) tuning {
	t.Helper()
	l, err := limit.New(limit.Config{Client: rdb, Prefix: prefix, Rate: rate, Burst: burst})
	testenv.Must(t, err, "limiter")
	return func(c *httpapi.Config, _ *pgxpool.Pool) {
		c.Limiter = l
		if behindProxy {
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
		}
	}
}

// TestRateLimitAnswers429PerClient: a client past its burst gets 429
// problem+json with Retry-After (when its next request may go), and its
// limited command writes nothing; every limited answer carries
// RateLimit-Limit, -Remaining and -Reset; another client, and the health
// endpoints, go on. The clients come through a trusted proxy on loopback
// that names them in X-Forwarded-For.
func TestRateLimitAnswers429PerClient(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.Redis(t)
	// One request in 100 s refills the bucket: within the test, only the
	// burst of 3 goes through.
	a := newAPIWith(t, limited(t, rdb, prefix, 0.01, 3, true))
	from := func(ip string) headers { return headers{"X-Forwarded-For": ip} }
	unknown := "/v1/products/" + uuid.NewString()

	// The bucket refills from the burst's first request: a request in 100 s.
	start := time.Now()
	for i := range 3 {
		r := a.do(t, http.MethodGet, unknown, "", nil, from("203.0.113.1"))
		r.expect(t, http.StatusNotFound)
		if got, want := r.header.Get("RateLimit-Remaining"), []string{"2", "1", "0"}[i]; got != want || r.header.Get("RateLimit-Limit") != "3" || r.header.Get("RateLimit-Reset") == "" {
			t.Errorf("request %d: RateLimit-Limit %q, -Remaining %q, -Reset %q; want 3, %s and a reset", i+1,
				r.header.Get("RateLimit-Limit"), got, r.header.Get("RateLimit-Reset"), want)
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
			// 100 s less what has passed since the burst began (a second
			// or more on a loaded machine).
			least := 100 - int(time.Since(start).Seconds()) - 1
			if ra, err := strconv.Atoi(r.header.Get("Retry-After")); p.Detail == "" || err != nil || ra < least || ra > 100 {
				t.Errorf("429 with detail %q and Retry-After %q; want a detail and Retry-After: %d to 100 (a request per 100 s)", p.Detail, r.header.Get("Retry-After"), least)
			}
			a.unchanged(t, before)
		})
	}
}

// TestRateLimitWhoIsTheClient: X-Forwarded-For is believed only from a
// trusted proxy; a client that reaches the API directly cannot pick its
// budget with it, nor spend another's. A signed-in client's budget is its
// user's, wherever it sends from.
func TestRateLimitWhoIsTheClient(t *testing.T) {
	t.Parallel()
	unknown := "/v1/products/" + uuid.NewString()
	statuses := func(t *testing.T, a *api, token string, hdrs ...headers) []int {
		t.Helper()
		var out []int
		for _, h := range hdrs {
			out = append(out, a.do(t, http.MethodGet, unknown, token, nil, h).status)
		}
		return out
	}
	xff := func(ip string) headers { return headers{"X-Forwarded-For": ip} }

	t.Run("spoofed X-Forwarded-For from an untrusted peer changes nothing", func(t *testing.T) {
		t.Parallel()
		rdb, prefix := testenv.Redis(t)
		a := newAPIWith(t, limited(t, rdb, prefix, 0.01, 2, false))
		got := statuses(t, a, "", xff("203.0.113.1"), xff("203.0.113.2"), xff("203.0.113.3"), xff("203.0.113.4"))
		if want := []int{404, 404, 429, 429}; !slices.Equal(got, want) {
			t.Errorf("statuses %v, want %v: every request is the peer's", got, want)
		}
	})
	t.Run("from a trusted proxy it is honoured, right to left", func(t *testing.T) {
		t.Parallel()
		rdb, prefix := testenv.Redis(t)
		a := newAPIWith(t, limited(t, rdb, prefix, 0.01, 1, true))
		// The client can write the left of the header, not what the
		// proxy appended: 198.51.100.7 is the client each time.
		got := statuses(t, a, "", xff("198.51.100.7"), xff("203.0.113.9, 198.51.100.7"), xff("198.51.100.8"))
		if want := []int{404, 429, 404}; !slices.Equal(got, want) {
			t.Errorf("statuses %v, want %v", got, want)
		}
	})
	t.Run("a signed-in client's budget is its user's", func(t *testing.T) {
		t.Parallel()
		rdb, prefix := testenv.Redis(t)
		a := newAPIWith(t, limited(t, rdb, prefix, 0.01, 2, true))
		_, token := a.registerCustomer(t, "una@example.com") // spends the peer's budget, not 203.0.113.x's
		got := statuses(t, a, token, xff("203.0.113.1"), xff("203.0.113.2"), xff("203.0.113.3"))
		if want := []int{404, 404, 429}; !slices.Equal(got, want) {
			t.Errorf("statuses %v, want %v: one user, three addresses, one budget", got, want)
		}
		if r := a.do(t, http.MethodGet, unknown, "", nil, xff("203.0.113.3")); r.status != http.StatusNotFound {
			t.Errorf("anonymous from 203.0.113.3 after the user's budget: %d, want 404 (its own budget)", r.status)
		}
	})
}

// TestRateLimitIsOneBudgetForAllReplicas: two API servers that share Redis
// let a client through as often as one would.
func TestRateLimitIsOneBudgetForAllReplicas(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.Redis(t)
	a := newAPIWith(t, limited(t, rdb, prefix, 0.01, 2, false))
	cfg := newConfig(t, a.pool, a.auth)
	limited(t, rdb, prefix, 0.01, 2, false)(&cfg, a.pool)
	b := a.replica(t, cfg)

	unknown := "/v1/products/" + uuid.NewString()
	var got []int
	for _, replica := range []*api{a, b, a, b} {
		got = append(got, replica.do(t, http.MethodGet, unknown, "", nil, nil).status)
	}
	if want := []int{404, 404, 429, 429}; !slices.Equal(got, want) {
		t.Errorf("statuses from replicas a, b, a, b: %v, want %v", got, want)
	}
}

// TestRateLimitWithoutRedis: when Redis does not answer, reads go on (the
// limiter fails open) and the routes that cost a password hash answer 503
// (it fails closed there).
func TestRateLimitWithoutRedis(t *testing.T) {
	t.Parallel()
	a := newAPIWith(t, limited(t, unreachableRedis(t), "x:", 10, 10, false))
	before := a.snapshot(t)
	tests := []struct {
		name, method, path string
		body               any
		want               int
	}{
		{"a read", http.MethodGet, "/v1/products", nil, http.StatusOK},
		{"a login", http.MethodPost, "/v1/tokens", map[string]any{"email": adminEmail, "password": adminPassword}, http.StatusServiceUnavailable},
		{"a registration", http.MethodPost, "/v1/users", map[string]any{"email": "x@example.com", "name": "X", "password": "long enough"}, http.StatusServiceUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := a.do(t, tc.method, tc.path, "", tc.body, nil)
			r.expect(t, tc.want)
			if tc.want == http.StatusServiceUnavailable && r.header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
	a.unchanged(t, before)
}

// unreachableRedis is a client of a Redis that does not answer.
func unreachableRedis(t *testing.T) *redis.Client {
	t.Helper()
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = down.Close() })
	return down
}

// TestRateLimitIsOffByDefault: without a Limiter, a client may send more
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
