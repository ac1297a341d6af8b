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
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Client is what the budgets need of Redis: scripts and deletes. A
// *redis.Client, or its AutoPipeliner, which sends the budgets of
// concurrent requests in one round trip with the reads beside them.
type Client interface {
	redis.Scripter
	Del(ctx context.Context, keys ...string) *redis.IntCmd
}

// Config configures a Limiter.
type Config struct {
	// Client is the Redis the replicas share. Required.
	Client Client
	// Prefix starts every key the limiter writes, e.g. "shop:".
	Prefix string
	// Rate is how many requests per second one client may make on
	// average. Required, positive.
	Rate float64
	// Burst is how many requests one client may make at once. Default
	// twice Rate, at least 1.
	Burst int
	// Grant is how many requests of a client's budget one replica may take
	// from Redis in one round trip, to spend in its memory within a
	// second: the next requests of that client cost no round trip. Redis
	// counts them when they are taken, not when they are spent, so over
	// any stretch of time a client gets at most Grant more per replica
	// than its budget (taken before, spent after a refill), and may be
	// refused up to Grant early per replica that holds some it did not
	// spend. Default an eighth of Burst, at most Rate per second, at least
	// 1; 1 asks Redis for every request, and the budget is then exact.
	Grant int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil:
		return errors.New("limit: a redis client is required")
	case !(c.Rate > 0) || math.IsInf(c.Rate, 0):
		return errors.New("limit: the rate must be a positive number of requests per second")
	case c.Burst < 0 || c.Grant < 0:
		return errors.New("limit: the burst and the grant must not be negative")
	}
	if c.Burst == 0 {
		c.Burst = max(1, int(2*c.Rate))
	}
	if c.Grant == 0 {
		c.Grant = max(1, min(c.Burst/8, int(c.Rate)))
	}
	c.Grant = min(c.Grant, c.Burst)
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Limiter is the request rate limit, one budget per client key for all
// replicas.
type Limiter struct {
	cfg     Config
	limiter *redis_rate.Limiter
	limit   redis_rate.Limit

	mu     sync.RWMutex
	leases map[string]*lease
	swept  time.Time // when leases that ended were last dropped
}

// maxLeases bounds the clients whose leases a replica keeps: a few words
// each.
const maxLeases = 100_000

// lease is what this replica holds of one client's budget: requests taken
// from Redis and not spent yet, or a refusal Redis gave, each until a time
// (Unix ns). It is read and spent without a lock: every request of a busy
// client goes through it. A token is spent by one compare-and-swap, so
// each request Redis granted is spent at most once.
type lease struct {
	tokens       atomic.Int64
	remaining    atomic.Int64 // what Redis said remained besides them
	until        atomic.Int64
	refusedUntil atomic.Int64
	granting     atomic.Bool // a request is taking a grant for the lease
}

// leaseFor is how long requests taken from Redis may be spent.
const leaseFor = time.Second

// New returns the limiter of cfg.
func New(cfg Config) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Limiter{
		cfg:     cfg,
		limiter: redis_rate.NewLimiter(prefixed{Client: cfg.Client, prefix: cfg.Prefix}),
		limit:   limitOf(cfg.Rate, cfg.Burst),
		leases:  map[string]*lease{},
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

// Allow spends one request of key's budget, if there is one left: from
// what this replica holds of it, else from Redis, taking up to Grant.
// Remaining and Reset are as of the last round trip for key.
func (l *Limiter) Allow(ctx context.Context, key string) (Decision, error) {
	e := l.lease(key)
	now := l.cfg.Now().UnixNano()
	if until := e.refusedUntil.Load(); now < until {
		wait := time.Duration(until - now)
		return Decision{Limit: l.limit.Burst, RetryAfter: wait, Reset: wait}, nil
	}
	if now < e.until.Load() {
		for n := e.tokens.Load(); n > 0; n = e.tokens.Load() {
			if e.tokens.CompareAndSwap(n, n-1) {
				return l.allowed(int(e.remaining.Load() + n - 1)), nil
			}
		}
	}
	// Concurrent requests of a client that find nothing left each ask
	// Redis rather than wait for one another's round trip, but only one
	// of them takes a grant for the lease; the others take one request
	// each. Were each to take a grant, a wave of n requests would take n
	// grants, most of them to be dropped unspent when the lease ends, and
	// a client with many requests waiting at once (long polls) would be
	// refused far below its rate.
	granting := e.granting.CompareAndSwap(false, true)
	take := 1
	if granting {
		defer e.granting.Store(false)
		take = l.cfg.Grant
	}
	res, err := l.limiter.AllowAtMost(ctx, "req:"+key, l.limit, take)
	if err != nil {
		return Decision{}, fmt.Errorf("rate limit: %w", err)
	}
	if res.Allowed == 0 {
		// Redis will refuse until then whatever this replica asks; the
		// others can only spend more of the budget meanwhile.
		e.refusedUntil.Store(now + int64(res.RetryAfter))
		return Decision{Limit: l.limit.Burst, RetryAfter: res.RetryAfter, Reset: res.ResetAfter}, nil
	}
	if !granting {
		return l.allowed(res.Remaining + int(max(0, e.tokens.Load()))), nil
	}
	if now >= e.until.Load() {
		e.tokens.Store(0) // what was left of an ended lease: dropped
	}
	e.remaining.Store(int64(res.Remaining))
	e.until.Store(now + int64(leaseFor))
	left := e.tokens.Add(int64(res.Allowed - 1))
	return l.allowed(res.Remaining + int(left)), nil
}

func (l *Limiter) allowed(remaining int) Decision {
	return Decision{Allowed: true, Limit: l.limit.Burst, Remaining: remaining,
		Reset: time.Duration(float64(l.limit.Burst-remaining) / l.cfg.Rate * float64(time.Second))}
}

// lease returns key's lease, made on first use. Once maxLeases are held,
// the ones that ended are dropped, at most once per leaseFor; while it is
// still full, a new client's lease is not kept (its requests ask Redis each
// time, as with a grant of 1).
func (l *Limiter) lease(key string) *lease {
	l.mu.RLock()
	e, ok := l.leases[key]
	l.mu.RUnlock()
	if ok {
		return e
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.leases[key]; ok {
		return e
	}
	if len(l.leases) >= maxLeases {
		if now := l.cfg.Now(); now.Sub(l.swept) >= leaseFor {
			l.swept = now
			for k, e := range l.leases {
				if now.UnixNano() > e.until.Load() && now.UnixNano() > e.refusedUntil.Load() {
					delete(l.leases, k)
				}
			}
		}
		if len(l.leases) >= maxLeases {
			return &lease{}
		}
	}
	e = &lease{}
	l.leases[key] = e
	return e
}

// prefixed is the client redis_rate sends its script through, with every
// key behind the configured prefix (redis_rate adds only its own "rate:").
type prefixed struct {
	Client
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
