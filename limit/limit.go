// Package limit owns the budgets that every API replica shares, kept in
// Redis so that N replicas allow what one would: the request rate limit of
// each client (GCRA, by github.com/go-redis/redis_rate) and the throttle of
// failed logins per account.
package limit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Config configures a Limiter.
type Config struct {
	// Client is the Redis the replicas share. Required.
	Client *redis.Client
	// Prefix starts every key the limiter writes, e.g. "shop:".
	Prefix string
	// Rate is how many requests per second one client may make on
	// average. Required, positive.
	Rate float64
	// Burst is how many requests one client may make at once. Default
	// twice Rate, at least 1.
	Burst int
}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil:
		return errors.New("limit: a redis client is required")
	case !(c.Rate > 0) || math.IsInf(c.Rate, 0):
		return errors.New("limit: the rate must be a positive number of requests per second")
	case c.Burst < 0:
		return errors.New("limit: the burst must not be negative")
	}
	if c.Burst == 0 {
		c.Burst = max(1, int(2*c.Rate))
	}
	return nil
}

// Limiter is the request rate limit, one budget per client key for all
// replicas.
type Limiter struct {
	limiter *redis_rate.Limiter
	limit   redis_rate.Limit
}

// New returns the limiter of cfg.
func New(cfg Config) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Limiter{
		limiter: redis_rate.NewLimiter(prefixed{Client: cfg.Client, prefix: cfg.Prefix}),
		limit:   limitOf(cfg.Rate, cfg.Burst),
	}, nil
}

// limitOf writes a rate per second as redis_rate's whole number of
// requests per period: 0.01/s is 1 per 100 s, 2.5/s 3 per 1.2 s.
func limitOf(rate float64, burst int) redis_rate.Limit {
	n := max(1, int(math.Round(rate)))
	return redis_rate.Limit{Rate: n, Burst: burst, Period: time.Duration(float64(n) / rate * float64(time.Second))}
}

// Decision is what the limiter decided about one request.
type Decision struct {
	Allowed   bool
	Limit     int           // the burst: requests allowed at once
	Remaining int           // requests allowed at once now
	Reset     time.Duration // until Remaining is Limit again
	// RetryAfter is when the next request will be allowed; 0 when this
	// one was.
	RetryAfter time.Duration
}

// Allow spends one request of key's budget, if there is one left.
func (l *Limiter) Allow(ctx context.Context, key string) (Decision, error) {
	res, err := l.limiter.Allow(ctx, "req:"+key, l.limit)
	if err != nil {
		return Decision{}, fmt.Errorf("rate limit: %w", err)
	}
	d := Decision{Allowed: res.Allowed > 0, Limit: l.limit.Burst, Remaining: res.Remaining, Reset: res.ResetAfter}
	if !d.Allowed {
		d.RetryAfter = res.RetryAfter
	}
	return d, nil
}

// prefixed is the client redis_rate sends its script through, with every
// key behind the configured prefix (redis_rate adds only its own "rate:").
type prefixed struct {
	*redis.Client
	prefix string
}

func (p prefixed) keys(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = p.prefix + k
	}
	return out
}

func (p prefixed) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return p.Client.Eval(ctx, script, p.keys(keys), args...)
}

func (p prefixed) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return p.Client.EvalSha(ctx, sha1, p.keys(keys), args...)
}

func (p prefixed) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return p.Client.EvalRO(ctx, script, p.keys(keys), args...)
}

func (p prefixed) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return p.Client.EvalShaRO(ctx, sha1, p.keys(keys), args...)
}

func (p prefixed) Del(ctx context.Context, keys ...string) *redis.IntCmd {
	return p.Client.Del(ctx, p.keys(keys)...)
}
