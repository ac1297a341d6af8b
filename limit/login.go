package limit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ExceededError means a budget is spent: the request is refused, and the
// next one may go after RetryAfter.
type ExceededError struct {
	// Detail says which budget, for the client.
	Detail     string
	RetryAfter time.Duration
}

func (e *ExceededError) Error() string { return e.Detail }

// LoginsConfig configures the login throttle.
type LoginsConfig struct {
	// Client is the Redis the replicas share. Required.
	Client Client
	// Prefix starts every key the throttle writes.
	Prefix string
	// MaxFailures is how many logins to one account may fail in a row
	// before the next ones are refused. Default 10.
	MaxFailures int
	// Window is how long failures count: MaxFailures within Window from
	// the first of them close the account's logins until Window has
	// passed. Default 15m.
	Window time.Duration
}

// Validate fills defaults and checks the configuration.
func (c *LoginsConfig) Validate() error {
	if c.Client == nil {
		return errors.New("limit: a redis client is required")
	}
	if c.MaxFailures == 0 {
		c.MaxFailures = 10
	}
	if c.Window == 0 {
		c.Window = 15 * time.Minute
	}
	if c.MaxFailures < 1 || c.Window < time.Second {
		return errors.New("limit: logins need at least 1 failure in a window of at least 1s")
	}
	return nil
}

// Logins throttles failed logins per account, whatever address they come
// from: password guessing against one account is refused before any hash
// is computed.
type Logins struct {
	cfg LoginsConfig
}

// NewLogins returns the throttle of cfg.
func NewLogins(cfg LoginsConfig) (*Logins, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Logins{cfg: cfg}, nil
}

// attempt counts one attempt and answers, atomically, how long the
// account stays closed: 0 while it has had at most MaxFailures attempts
// since its last success. The window starts at the first of them.
var attempt = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n <= tonumber(ARGV[1]) then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return ttl`)

// Attempt counts a login to the account of email, before its password is
// checked; an *ExceededError when the account has had MaxFailures
// attempts since its last success within the window. Unknown emails count
// the same, so the answer does not tell which exist.
func (l *Logins) Attempt(ctx context.Context, email string) error {
	ms, err := attempt.Run(ctx, l.cfg.Client, []string{l.key(email)}, l.cfg.MaxFailures, l.cfg.Window.Milliseconds()).Int64()
	if err != nil {
		return fmt.Errorf("login throttle: %w", err)
	}
	if ms > 0 {
		return &ExceededError{Detail: "too many failed logins for this account; retry after the time in Retry-After",
			RetryAfter: time.Duration(ms) * time.Millisecond}
	}
	return nil
}

// Succeeded forgets the account's attempts: a login with the right
// password starts its count again.
func (l *Logins) Succeeded(ctx context.Context, email string) error {
	if err := l.cfg.Client.Del(ctx, l.key(email)).Err(); err != nil {
		return fmt.Errorf("login throttle: %w", err)
	}
	return nil
}

// key is the account's counter: a digest of the normalized email, so
// that Redis holds no addresses and every key has one length.
func (l *Logins) key(email string) string {
	sum := sha256.Sum256([]byte(email))
	return l.cfg.Prefix + "login:" + hex.EncodeToString(sum[:16])
}
