package main_test

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"

	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/loadtest"
)

// TestLoadtestAgainstARunningShop: shop loadtest sets up its customers and
// products through the API of a running shop run, sends the whole mix at a
// fixed rate, follows every accepted order to its decision, and reports it
// all (as JSON here), exiting 0: no 5xx, every order decided. Against an
// address where no shop answers, it says so and exits non-zero.
func TestLoadtestAgainstARunningShop(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	env := maps.Clone(s.env)
	env["LOG_LEVEL"], env["HTTP_ADDR"] = "info", "127.0.0.1:0"
	_, addrs := startListening(t, env, "run")
	if out, stderr, code := shop(t, env, "user", "add", "--email", "admin@load.test", "--password", "admin password", "--admin"); code != 0 {
		t.Fatalf("user add: %s %s", out, stderr)
	}

	stdout, stderr, code := shop(t, nil, "loadtest", "--url", "http://"+addrs["api"], "--rate", "100", "--duration", "3s",
		"--customers", "5", "--products", "5", "--admin-email", "admin@load.test", "--admin-password", "admin password",
		"--settle", "30s", "--json", "--seed", "17")
	if code != 0 {
		t.Fatalf("shop loadtest exited %d: %s\n%s", code, stderr, stdout)
	}
	var r loadtest.Report
	testenv.Must(t, json.Unmarshal([]byte(stdout), &r), "parse the JSON report")
	if r.Seed != 17 || r.Rate != 100 {
		t.Errorf("the report says seed %d and rate %v, want 17 and 100", r.Seed, r.Rate)
	}
	seen := map[string]int{}
	for _, e := range r.Endpoints {
		seen[e.Endpoint] = e.Requests
		for status, n := range e.Statuses {
			if !strings.HasPrefix(status, "2") && status != "409" { // 409: an order decided before its cancel
				t.Errorf("%s: %d answers %s", e.Endpoint, n, status)
			}
		}
	}
	for _, e := range []string{loadtest.EndpointPlace, loadtest.EndpointProduct} {
		if seen[e] == 0 {
			t.Errorf("no %s in the report: %v", e, seen)
		}
	}
	if r.Accepted == 0 || r.Decided != r.Accepted || r.ServerErrors != 0 {
		t.Errorf("%d orders accepted, %d decided, %d 5xx; want every accepted order decided and no 5xx", r.Accepted, r.Decided, r.ServerErrors)
	}
	if got := s.count(t, `SELECT count(*) FROM orders`); int64(got) != r.Accepted {
		t.Errorf("%d orders in Postgres, the report accepted %d", got, r.Accepted)
	}
	if !strings.Contains(stderr, "req/s") {
		t.Errorf("no progress line on stderr:\n%s", stderr)
	}

	_, stderr, code = shop(t, nil, "loadtest", "--url", "http://"+testenv.RefusedAddr(t), "--duration", "1s", "--mix", "read=1")
	if code == 0 || !strings.Contains(stderr, "set up") {
		t.Errorf("shop loadtest against nothing exited %d: %s; want non-zero and a set-up error", code, stderr)
	}
}
