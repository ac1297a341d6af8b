// Package projections owns the read side: the Redis read models the query
// endpoints serve (a product by id, the product list, an order by id, a
// user's orders and everyone's), applying events to them, rebuilding them,
// and the Reader that the endpoints call (Redis first, Postgres behind it).
//
// Events may arrive twice and in any order (replicas, redeliveries), and
// some carry only part of a model (stock.changed only the stock, order.
// confirmed only the status). So each model is a Redis hash whose fields are
// split into groups, each group with the aggregate version that last wrote
// it: a product's catalogue (sku, name, price) and its stock; an order's
// details (user, items, total) and its status. A Lua script applies an
// event's group only if the event is newer than what the group holds, in one
// atomic step, so two replicas racing cannot go backwards, and duplicates
// and shuffled events converge to the latest state. The model's version is
// the highest of its groups'.
package projections

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/shopdev/shop/domain"
)

// Config configures a Store.
type Config struct {
	// Client is the Redis client. Required.
	Client redis.UniversalClient
	// Prefix starts every key, so that several systems (or tests) share a
	// Redis. Default "shop:".
	Prefix string
}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	if c.Client == nil {
		return errors.New("projections: redis client is required")
	}
	if c.Prefix == "" {
		c.Prefix = "shop:"
	}
	return nil
}

// Store reads and writes the read models.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
}

// New returns a Store for cfg.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Store{rdb: cfg.Client, prefix: cfg.Prefix}, nil
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("%w: redis: %w", domain.ErrUnavailable, err)
	}
	return nil
}

// Field groups and their version fields.
const (
	groupCatalog = "catalog"
	groupStock   = "stock"
	groupDetails = "details"
	groupStatus  = "status"
)

func (s *Store) productKey(id uuid.UUID) string { return s.idKey("product:", id) }
func (s *Store) productsKey() string            { return s.prefix + "products" }
func (s *Store) orderKey(id uuid.UUID) string   { return s.idKey("order:", id) }
func (s *Store) ordersKey() string              { return s.prefix + "orders" }
func (s *Store) userOrdersKey(id uuid.UUID) string {
	return s.idKey("user-orders:", id)
}

// idKey is prefix, kind and id in its canonical form, in one allocation
// (id.String() and the concatenation would be two): every read asks for
// one.
func (s *Store) idKey(kind string, id uuid.UUID) string {
	var b [36]byte
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:], id[10:])
	return s.prefix + kind + string(b[:])
}

// ChangesChannel is the Pub/Sub channel on which every applied change is
// announced as "<model key> <version>", for readers waiting for a version.
func (s *Store) ChangesChannel() string { return s.prefix + "changes" }

// Indexes are sorted sets whose members all have score 0, read by lex
// range: the members are UUIDv7 ids, so lex order is creation order.
//
// applyScript writes one field group of a model hash if the event's version
// is newer than the group's, adds the model to its indexes (sorted sets),
// raises the model's version, and announces the change.
//
//	KEYS[1] model hash, KEYS[2..] indexes
//	ARGV[1] group, ARGV[2] version, ARGV[3] index score, ARGV[4] index
//	member, ARGV[5] changes channel, ARGV[6..] field, value pairs
//
// It returns 1 when it wrote, 0 when the group already held that version
// or a newer one.
var applyScript = redis.NewScript(`
local v = tonumber(ARGV[2])
local gv = tonumber(redis.call('HGET', KEYS[1], ARGV[1] .. '_v') or '0')
if v <= gv then return 0 end
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], ARGV[1] .. '_v', v)
local top = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if v > top then
  redis.call('HSET', KEYS[1], 'version', v)
  top = v
end
for i = 2, #KEYS do redis.call('ZADD', KEYS[i], ARGV[3], ARGV[4]) end
redis.call('PUBLISH', ARGV[5], KEYS[1] .. ' ' .. top)
return 1
`)

// write is one run of applyScript: one field group of one model.
type write struct {
	keys []string
	args []any
}

// write returns the write of one field group of the model at key, which
// the indexes list (as member, with score).
func (s *Store) write(key string, indexes []string, group string, version int64, score float64, member string, fields ...string) write {
	args := make([]any, 0, 5+len(fields))
	args = append(args, group, version, score, member, s.ChangesChannel())
	for _, f := range fields {
		args = append(args, f)
	}
	return write{keys: append([]string{key}, indexes...), args: args}
}

// run sends writes in one pipeline and reports for each whether it wrote,
// and Redis's error for it; err is for all of them (Redis unreachable). The
// script goes by its hash; the writes of a Redis that does not know it
// (restarted, flushed) go again with the script itself, as Script.Run does.
func (s *Store) run(ctx context.Context, writes []write) (wrote []bool, failed []error, err error) {
	wrote, failed = make([]bool, len(writes)), make([]error, len(writes))
	todo := make([]int, len(writes))
	for i := range todo {
		todo[i] = i
	}
	for attempt := 0; len(todo) > 0; attempt++ {
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(todo))
		for n, i := range todo {
			if attempt == 0 {
				cmds[n] = applyScript.EvalSha(ctx, pipe, writes[i].keys, writes[i].args...)
			} else {
				cmds[n] = applyScript.Eval(ctx, pipe, writes[i].keys, writes[i].args...)
			}
		}
		_, _ = pipe.Exec(ctx) // each command has its own error
		var again []int
		for n, i := range todo {
			v, err := cmds[n].Int()
			var replied redis.Error
			switch {
			case err == nil:
				wrote[i] = v == 1
			case attempt == 0 && redis.HasErrorPrefix(err, "NOSCRIPT"):
				again = append(again, i)
			case errors.As(err, &replied):
				failed[i] = fmt.Errorf("apply %s of %s: %w", writes[i].args[0], writes[i].keys[0], err)
			default: // Redis did not answer: no write of the pipeline can be known
				return nil, nil, fmt.Errorf("%w: redis: apply %d field groups: %w", domain.ErrUnavailable, len(writes), err)
			}
		}
		todo = again
	}
	return wrote, failed, nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
