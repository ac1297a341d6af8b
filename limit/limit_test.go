package limit_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
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

// TestReplicasNeverLetThroughMoreThanTheBudget: replicas that take
// requests from Redis several at a time (Grant) together let a client
// through at most its burst, however the requests fall on them; the
// requests a replica took and did not spend are the only ones lost.
func TestReplicasNeverLetThroughMoreThanTheBudget(t *testing.T) {
	t.Parallel()
	rng := testenv.Rand(t)
	for round := range 20 {
		rdb, prefix := testenv.Redis(t)
		burst, grant, replicas := 4+rng.IntN(30), 1+rng.IntN(8), 1+rng.IntN(4)
		var ls []*limit.Limiter
		for range replicas {
			// 0.001/s: within the test the budget is the burst, no more.
			l, err := limit.New(limit.Config{Client: rdb, Prefix: prefix, Rate: 0.001, Burst: burst, Grant: grant})
			testenv.Must(t, err, "limiter")
			ls = append(ls, l)
		}
		allowed := 0
		for range 3 * burst {
			d, err := ls[rng.IntN(replicas)].Allow(context.Background(), "client")
			testenv.Must(t, err, "allow")
			if d.Allowed {
				allowed++
			} else if d.RetryAfter <= 0 {
				t.Fatalf("round %d: a refusal without RetryAfter: %+v", round, d)
			}
		}
		// Each replica may hold at most grant-1 requests it took and did
		// not spend when the budget runs out.
		if lost := min(burst, replicas*(grant-1)); allowed > burst || allowed < burst-lost {
			t.Errorf("round %d: burst %d, grant %d, %d replicas: %d let through, want %d at most and %d at least",
				round, burst, grant, replicas, allowed, burst, burst-lost)
		}
	}
}

// TestGrantsMakeOneRoundTripServeMany: with a grant of 10, ten requests of
// one client cost Redis one decision: its budget moved by ten at once.
func TestGrantsMakeOneRoundTripServeMany(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.Redis(t)
	l, err := limit.New(limit.Config{Client: rdb, Prefix: prefix, Rate: 0.001, Burst: 100, Grant: 10})
	testenv.Must(t, err, "limiter")
	other, err := limit.New(limit.Config{Client: rdb, Prefix: prefix, Rate: 0.001, Burst: 100, Grant: 1})
	testenv.Must(t, err, "second replica")
	for i := range 10 {
		if d, err := l.Allow(context.Background(), "c"); err != nil || !d.Allowed || d.Remaining != 99-i {
			t.Fatalf("request %d: %+v, %v; want allowed with %d remaining", i, d, err, 99-i)
		}
	}
	// The other replica sees the budget as Redis has it: 100 - 10 taken.
	d, err := other.Allow(context.Background(), "c")
	testenv.Must(t, err, "allow")
	if !d.Allowed || d.Remaining != 89 {
		t.Errorf("the other replica: %+v, want allowed with 89 remaining (10 taken at once, then its own)", d)
	}
}

// TestConcurrentRequestsNeverExceedTheBudget: many requests of one client
// at once, on several replicas, are never let through more often than the
// budget allows.
func TestConcurrentRequestsNeverExceedTheBudget(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.Redis(t)
	const burst = 50
	var ls []*limit.Limiter
	for range 3 {
		l, err := limit.New(limit.Config{Client: rdb, Prefix: prefix, Rate: 0.001, Burst: burst, Grant: 7})
		testenv.Must(t, err, "limiter")
		ls = append(ls, l)
	}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := range 24 {
		wg.Go(func() {
			for range 20 {
				d, err := ls[g%len(ls)].Allow(context.Background(), "client")
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n > burst || n == 0 {
		t.Errorf("%d of 480 requests let through, want at most the burst of %d (and some)", n, burst)
	}
}

// TestAWaveOfRequestsTakesOneGrant: many requests of one client arriving
// at once at a replica whose lease is empty take one grant from Redis
// between them, and one request each for the rest: not a grant each, which
// would spend the client's budget on requests it never made.
func TestAWaveOfRequestsTakesOneGrant(t *testing.T) {
	t.Parallel()
	for _, n := range []int{2, 10, 40} {
		rdb, prefix := testenv.Redis(t)
		const burst, grant = 500, 25
		l, err := limit.New(limit.Config{Client: rdb, Prefix: prefix, Rate: 0.001, Burst: burst, Grant: grant})
		testenv.Must(t, err, "limiter")
		exact, err := limit.New(limit.Config{Client: rdb, Prefix: prefix, Rate: 0.001, Burst: burst, Grant: 1})
		testenv.Must(t, err, "second replica")
		var refused atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range n {
			wg.Go(func() {
				<-start
				d, err := l.Allow(context.Background(), "client")
				if err != nil {
					t.Error(err)
				} else if !d.Allowed {
					refused.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if refused.Load() > 0 {
			t.Fatalf("%d requests at once: %d refused within a budget of %d", n, refused.Load(), burst)
		}
		d, err := exact.Allow(context.Background(), "client")
		testenv.Must(t, err, "allow")
		if least := burst - (grant + n - 1) - 1; d.Remaining < least {
			t.Errorf("%d requests at once left %d of the budget of %d, want at least %d: one grant of %d and one request for each of the others",
				n, d.Remaining, burst, least, grant)
		}
	}
}
