package projections

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/shopdev/shop/domain"
)

// Repaired is what Repair found and did.
type Repaired struct {
	// Master is the run_id of the Redis master that answered; Previous,
	// that of the master the read models were last made whole on ("" when
	// none is recorded).
	Master, Previous string
	// Rebuilt says the read models were rebuilt; Products and Orders, how
	// many of each were written (so far, when the rebuild failed); Took,
	// how long it took.
	Rebuilt          bool
	Products, Orders int
	Took             time.Duration
}

// Repair rebuilds the read models from src (see Rebuild) unless they were
// last made whole on the Redis master that answers now and seen, the
// master the caller saw last ("" for none), is that master too; then it
// records that the models are whole on it.
//
// Replication is asynchronous: a replica that a failover promotes may lack
// the last writes the old master acknowledged, and a restarted master what
// it had not persisted. The projector has acknowledged those events, so
// nothing would write their field groups again until the next event of
// each, and the models would lag Postgres until then. The rebuild writes
// every model at its Postgres version, which the version guards let through
// only where Redis is behind; events keep being applied meanwhile.
//
// A master is told by its run_id (INFO server), which a failover and a
// restart both change. The run_id of the master a rebuild started on is
// recorded (in the key MasterKey) once the rebuild has finished: a process
// that dies midway leaves the next Repair to rebuild again, and so does a
// failover during a rebuild, since the record then names the old master.
// seen covers a projector that kept writing to an old master cut off from
// the Sentinels, after another had already repaired the new one: it
// rebuilds once it reaches the new master itself. A FLUSHALL during a
// rebuild makes it fail, and the next Repair rebuild again.
func (s *Store) Repair(ctx context.Context, src Origin, seen string) (Repaired, error) {
	var r Repaired
	info, err := s.rdb.Info(ctx, "server").Result()
	if err != nil {
		return r, fmt.Errorf("%w: redis: info: %w", domain.ErrUnavailable, err)
	}
	if r.Master = runID(info); r.Master == "" {
		return r, errors.New("redis: INFO server has no run_id")
	}
	r.Previous, err = s.rdb.Get(ctx, s.MasterKey()).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return r, fmt.Errorf("%w: redis: read %s: %w", domain.ErrUnavailable, s.MasterKey(), err)
	}
	if r.Previous == r.Master && (seen == "" || seen == r.Master) {
		return r, nil
	}
	r.Rebuilt = true
	// A FLUSHALL during the rebuild erases what it wrote before, with the
	// record, and a record set after it would claim whole models. So the
	// rebuild leaves a mark of its own first, and the record is set only
	// if that mark is still there.
	mark := s.prefix + "rebuilding:" + uuid.NewString()
	if err := s.rdb.Set(ctx, mark, r.Master, markFor).Err(); err != nil {
		return r, fmt.Errorf("%w: redis: mark the rebuild: %w", domain.ErrUnavailable, err)
	}
	start := time.Now()
	r.Products, r.Orders, err = s.Rebuild(ctx, src)
	if r.Took = time.Since(start); err != nil {
		return r, err
	}
	recorded, err := recordScript.Run(ctx, s.rdb, []string{mark, s.MasterKey()}, r.Master).Int()
	switch {
	case err != nil:
		return r, fmt.Errorf("%w: redis: record the master: %w", domain.ErrUnavailable, err)
	case recorded == 0:
		return r, errRebuildErased
	}
	return r, nil
}

// errRebuildErased: Redis lost the mark a rebuild left before it wrote
// anything (a FLUSHALL, say), so maybe some of what it wrote too.
var errRebuildErased = errors.New("redis: the rebuild's writes were erased while it ran (FLUSHALL?)")

// markFor bounds how long the mark of a rebuild whose process died midway
// stays in Redis.
const markFor = 24 * time.Hour

// recordScript records the master (KEYS[2] = ARGV[1]) if the rebuild's mark
// (KEYS[1]) is still there, and removes the mark: 1 if it recorded.
var recordScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 1
`)

// MasterKey holds the run_id of the Redis master the read models were last
// made whole on (see Repair).
func (s *Store) MasterKey() string { return s.prefix + "master" }

// runID returns the run_id line of an INFO reply.
func runID(info string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, "run_id:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
