package httpapi_test

import (
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopdev/shop/handlers/httpapi"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/limit"
)

// throttled tunes an API to refuse the logins of an account after max
// failures within window, from whatever address (its clients come through
// a trusted proxy).
func throttled(t *testing.T, max int, window time.Duration) tuning {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	l, err := limit.NewLogins(limit.LoginsConfig{Client: rdb, Prefix: prefix, MaxFailures: max, Window: window})
	testenv.Must(t, err, "login throttle")
	return func(c *httpapi.Config, _ *pgxpool.Pool) {
		c.Logins = l
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
}

// hashes reads how many bcrypt computations the API has run.
func (a *api) hashes(t *testing.T) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^shop_auth_password_hashes_total (\d+)$`).FindStringSubmatch(a.scrape(t))
	if m == nil {
		t.Fatal("/metrics has no shop_auth_password_hashes_total")
	}
	n, err := strconv.Atoi(m[1])
	testenv.Must(t, err, "parse hashes")
	return n
}

// TestLoginsAreThrottledPerAccount: after ten failed logins to one
// account, from ten addresses, the eleventh is 429 with Retry-After and
// runs no bcrypt, with the right password too; an unknown email is
// throttled the same way; once the window has passed the right password
// works, and a success starts the count again.
func TestLoginsAreThrottledPerAccount(t *testing.T) {
	t.Parallel()
	// Long enough for ten logins on a 2-core machine that also runs the
	// other packages' tests (a CI run took over 3 s for them, another close
	// to 10 s); the test waits for it to pass once.
	const window = 10 * time.Second
	a := newAPIWith(t, throttled(t, 10, window))
	login := func(email, pw string, from int) response {
		return a.do(t, "POST", "/v1/tokens", "", map[string]any{"email": email, "password": pw},
			headers{"X-Forwarded-For": fmt.Sprintf("198.51.100.%d", from)})
	}

	for _, who := range []struct {
		email      string
		registered bool
	}{{"gina", true}, {"nobody", false}} {
		// The window runs from the first failure: the throttled logins
		// prove something only if they were answered within it. On a
		// machine too slow for that, the account's count may have ended
		// already, and the test tries again with another account.
		for try := 1; ; try++ {
			email := fmt.Sprintf("%s%d@example.com", who.email, try)
			if who.registered {
				a.registerCustomer(t, email)
			}
			start := time.Now()
			login(email, "wrong password", 0).problem(t, http.StatusUnauthorized)
			counted := time.Now() // the count exists, and ends a window after it began, before now
			for i := 1; i < 10; i++ {
				login(email, "wrong password", i).problem(t, http.StatusUnauthorized)
			}
			hashes := a.hashes(t)
			var throttledLogins []response
			for _, pw := range []string{"wrong password", password} {
				throttledLogins = append(throttledLogins, login(email, pw, 11))
			}
			if took := time.Since(start); took >= window {
				if try == 3 {
					t.Fatalf("%s: three times, the eleventh login came %s after the first, past the window (%s)", who.email, took.Round(time.Millisecond), window)
				}
				t.Logf("%s: the eleventh login came %s after the first, past the window (%s): again, with another account", email, took.Round(time.Millisecond), window)
				continue
			}
			for _, r := range throttledLogins {
				r.problem(t, http.StatusTooManyRequests)
				if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > int(window.Seconds()) {
					t.Errorf("%s: Retry-After %q, want 1 to %d seconds", email, r.header.Get("Retry-After"), int(window.Seconds()))
				}
			}
			if got := a.hashes(t); got != hashes {
				t.Errorf("%s: %d bcrypt computations for throttled logins, want none", email, got-hashes)
			}
			if who.registered {
				time.Sleep(time.Until(counted.Add(window + 100*time.Millisecond)))
				login(email, password, 12).expect(t, http.StatusOK)

				// A success starts the count again: nine failures, a
				// success, nine more, and the right password still works.
				for range 2 {
					for i := range 9 {
						login(email, "wrong password", i).problem(t, http.StatusUnauthorized)
					}
					login(email, password, 99).expect(t, http.StatusOK)
				}
			}
			break
		}
	}
}

// TestLoginsFailClosedWithoutTheThrottle: when the throttle's Redis does
// not answer, no login goes through: 503, and no bcrypt runs.
func TestLoginsFailClosedWithoutTheThrottle(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.registerCustomer(t, "hana@example.com")
	down, err := limit.NewLogins(limit.LoginsConfig{Client: unreachableRedis(t)})
	testenv.Must(t, err, "throttle")
	cfg := newConfig(t, a.pool, a.auth)
	cfg.Logins = down
	b := a.replica(t, cfg)
	hashes := b.hashes(t)
	r := b.do(t, "POST", "/v1/tokens", "", map[string]any{"email": "hana@example.com", "password": password}, nil)
	r.problem(t, http.StatusServiceUnavailable)
	if got := b.hashes(t); got != hashes {
		t.Errorf("%d bcrypt computations while the throttle was down, want none", got-hashes)
	}
}
