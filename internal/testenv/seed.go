package testenv

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
)

// Rand returns a random source for a randomised test, seeded from
// SHOP_TEST_SEED when it is set (to replay a failure), else from the clock;
// it logs the seed, so that a failing run says how to replay it.
func Rand(t testing.TB) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SHOP_TEST_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SHOP_TEST_SEED=%q: want an unsigned integer", s)
		}
		seed = n
	}
	t.Logf("random seed %d (replay: SHOP_TEST_SEED=%d go test -run '^%s$')", seed, seed, t.Name())
	return rand.New(rand.NewPCG(seed, seed>>32|1))
}

// NeedServices skips t under -short: it needs Postgres, Redis or RabbitMQ,
// and `go test -short ./...` runs only what needs none of them.
func NeedServices(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Postgres, Redis and RabbitMQ (skipped with -short)")
	}
}

// envOr returns the environment variable name, or def when it is unset.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
