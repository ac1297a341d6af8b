package limit_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/limit"
)

// TestLimiterSpendsOneBudgetPerKey: a key gets its burst at once, then one
// request per 1/rate seconds; another key has its own budget; every key
// it writes starts with the prefix.
func TestLimiterSpendsOneBudgetPerKey(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.Redis(t)
	l, err := limit.New(limit.Config{Client: rdb, Prefix: prefix, Rate: 0.5, Burst: 3}) // one per 2 s
	testenv.Must(t, err, "limiter")
	ctx := context.Background()
	for i, want := range []bool{true, true, true, false, false} {
		d, err := l.Allow(ctx, "a")
		testenv.Must(t, err, "allow")
		if d.Allowed != want || d.Limit != 3 {
			t.Fatalf("request %d: allowed %v (limit %d), want %v (3)", i+1, d.Allowed, d.Limit, want)
		}
		if want && d.Remaining != 2-i {
			t.Errorf("request %d: remaining %d, want %d", i+1, d.Remaining, 2-i)
		}
		if !want && (d.RetryAfter <= 0 || d.RetryAfter > 2*time.Second) {
			t.Errorf("request %d refused with RetryAfter %s, want within the 2 s of one request", i+1, d.RetryAfter)
		}
	}
	if d, err := l.Allow(ctx, "b"); err != nil || !d.Allowed {
		t.Errorf("another key: %+v, %v; want allowed", d, err)
	}
	keys, err := rdb.Keys(ctx, "*rate:req:*").Result()
	testenv.Must(t, err, "keys")
	var ours int
	for _, k := range keys {
		if strings.Contains(k, prefix) {
			ours++
			if !strings.HasPrefix(k, prefix) {
				t.Errorf("key %q does not start with the prefix %q", k, prefix)
			}
		}
	}
	if ours != 2 {
		t.Errorf("%d keys under the prefix, want 2 (a and b)", ours)
	}
}

func TestLimiterConfig(t *testing.T) {
	t.Parallel()
	rdb, _ := testenv.Redis(t)
	for _, tc := range []struct {
		name string
		cfg  limit.Config
	}{
		{"no client", limit.Config{Rate: 1}},
		{"no rate", limit.Config{Client: rdb}},
		{"a negative rate", limit.Config{Client: rdb, Rate: -1}},
		{"a negative burst", limit.Config{Client: rdb, Rate: 1, Burst: -1}},
	} {
		if _, err := limit.New(tc.cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// TestLoginsCloseAfterMaxFailures: MaxFailures attempts go through, the
// next is an *ExceededError until the window ends; a success starts the
// count again; accounts do not share counts.
func TestLoginsCloseAfterMaxFailures(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.Redis(t)
	l, err := limit.NewLogins(limit.LoginsConfig{Client: rdb, Prefix: prefix, MaxFailures: 3, Window: time.Minute})
	testenv.Must(t, err, "logins")
	ctx := context.Background()
	for range 3 {
		testenv.Must(t, l.Attempt(ctx, "a@example.com"), "attempt")
	}
	var ex *limit.ExceededError
	if err := l.Attempt(ctx, "a@example.com"); !errors.As(err, &ex) || ex.RetryAfter <= 0 || ex.RetryAfter > time.Minute {
		t.Fatalf("fourth attempt: %v, want an ExceededError within the window", err)
	}
	testenv.Must(t, l.Attempt(ctx, "b@example.com"), "another account")
	testenv.Must(t, l.Succeeded(ctx, "a@example.com"), "success")
	testenv.Must(t, l.Attempt(ctx, "a@example.com"), "an attempt after a success")
	keys, err := rdb.Keys(ctx, prefix+"login:*").Result()
	testenv.Must(t, err, "keys")
	for _, k := range keys {
		if strings.Contains(k, "example.com") {
			t.Errorf("key %q holds an email address", k)
		}
	}
}
