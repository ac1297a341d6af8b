package testenv

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// RedisAddr is the Redis the tests use: TEST_REDIS_ADDR, by default the
// local server.
func RedisAddr() string { return envOr("TEST_REDIS_ADDR", "127.0.0.1:6379") }

// Redis returns a client of the tests' Redis and a key prefix of t's own:
// every key that starts with it is deleted when t ends, and the client
// closed. Tests share one Redis, so each keeps to its prefix.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	NeedServices(t)
	rdb := redis.NewClient(&redis.Options{Addr: RedisAddr()})
	prefix := "shop_test_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12] + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		_ = rdb.Close()
	})
	return rdb, prefix
}
