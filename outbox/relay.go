package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopdev/shop/internal/retry"
)

// NotifyChannel is the Postgres channel a Notifier notifies after rows were
// committed, with the partitions as payload ("3,7,12").
const NotifyChannel = "shop_outbox"

// lockClass is the first key of the advisory locks that give one relay
// replica a partition for one round ("outb").
const lockClass = 0x6f757462

// RelayConfig configures a Relay.
type RelayConfig struct {
	// Pool is the Postgres pool. Required.
	Pool *pgxpool.Pool
	// Broker reaches RabbitMQ and knows the topology: the relay publishes
	// only the events some group's queue is bound to. Required.
	Broker *Broker
	// Logger receives the relay's logs. Required.
	Logger *slog.Logger
	// Metrics receives the relay's metrics; default none.
	Metrics *Metrics
	// BatchSize is how many rows one round publishes at most, shared
	// evenly among the partitions it relays. Default 2,000: under a
	// backlog, fewer and bigger rounds cost the relay and Postgres less per
	// row (BENCHMARKS.md, machine W); a crash publishes at most one round
	// again.
	BatchSize int
	// Workers is how many rounds this replica runs at once, each on its own
	// AMQP channel; a round relays every partition marked when it starts.
	// Default 1: one round at a time takes everything marked while it
	// ran, which costs the least CPU per event; more drain a backlog
	// faster (BENCHMARKS.md).
	Workers int
	// Linger is how long a worker waits, once a partition was marked, for
	// more to be marked before its round starts: fewer, bigger rounds cost
	// Postgres and RabbitMQ less per event, at the price of that wait.
	// 0: no wait (RELAY_LINGER's default is 2ms).
	Linger time.Duration
	// PollInterval is how often every partition is looked at even without a
	// notification, so a lost one only delays a row. Default 1s.
	PollInterval time.Duration
	// ConfirmTimeout bounds the wait for a batch's publisher confirms; a
	// batch not confirmed in time is rolled back and published again.
	// Default 10s.
	ConfirmTimeout time.Duration
	// VacuumAfter is how many rows this replica deletes before it vacuums
	// the outbox itself (checked every second), so that dead rows never pile
	// up between autovacuum's visits (once a minute by default) and the
	// table stays small under sustained load. Default 5,000; -1 never.
	VacuumAfter int
	// Backoff paces the retries after RabbitMQ or Postgres failed, or a
	// row could not be published. Default 100ms doubling to 5s.
	Backoff retry.Backoff
	// Tracing records the spans of every round and message (trace.go) and
	// sends each message's trace context in its headers. nil: none, at no
	// cost.
	Tracing trace.TracerProvider
}

// Validate fills defaults and checks the configuration.
func (c *RelayConfig) Validate() error {
	switch {
	case c.Pool == nil:
		return errors.New("relay: pool is required")
	case c.Broker == nil:
		return errors.New("relay: broker is required")
	case c.Logger == nil:
		return errors.New("relay: logger is required")
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.BatchSize == 0 {
		c.BatchSize = 2000
	}
	if c.Workers == 0 {
		c.Workers = 1
	}
	if c.VacuumAfter == 0 {
		c.VacuumAfter = 5000
	}
	def(&c.PollInterval, time.Second)
	def(&c.ConfirmTimeout, 10*time.Second)
	if c.Backoff == (retry.Backoff{}) {
		c.Backoff = retry.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	}
	if c.BatchSize < 1 || c.Workers < 1 || c.Workers > Partitions || c.PollInterval < 0 || c.Linger < 0 || c.Backoff.Min > c.Backoff.Max {
		return fmt.Errorf("relay: batch size and workers (1..%d) must be positive, linger not negative, min backoff <= max backoff", Partitions)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	return nil
}

// Relay forwards committed outbox rows to RabbitMQ: per partition, in id
// order, in batches published with publisher confirms, deleting the rows in
// the transaction that claimed them once every message of the batch is
// confirmed. Any number of replicas may run: a partition is claimed with an
// advisory lock for one round, so no row is published by two replicas at
// once. Delivery is at least once: a crash between the confirms and the
// commit publishes that batch again.
type Relay struct {
	cfg     RelayConfig
	sched   *scheduler
	deleted atomic.Int64 // rows deleted since the last vacuum
	local   atomic.Bool  // commits of this process wake it (Wake), and notify nobody else
	tracer  trace.Tracer // nil: tracing off
}

// NewRelay returns a relay for cfg.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Relay{
		cfg:   cfg,
		sched: newScheduler(),
	}
	if cfg.Tracing != nil {
		r.tracer = cfg.Tracing.Tracer("github.com/shopdev/shop/outbox")
	}
	return r, nil
}

// Wake marks partitions that a commit of this process wrote to, so that the
// relay starts on them at once (Notifier.WakeLocal); no other replica hears
// of that commit, so a partition another replica holds when this relay's
// round starts is tried again shortly after (heldRetry), as that replica
// may have read the partition before the commit.
func (r *Relay) Wake(partitions []int16) {
	r.local.Store(true)
	for _, p := range partitions {
		if p >= 0 && int(p) < Partitions {
			r.sched.mark(int(p))
		}
	}
}

// Connected reports whether the relay holds an open RabbitMQ connection.
func (r *Relay) Connected() bool { return r.cfg.Broker.Connected() }

// Run relays until ctx ends, then finishes the rounds in flight and returns
// nil. RabbitMQ or Postgres being down is not an error: it retries.
func (r *Relay) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	loops := []func(context.Context){r.listen, r.poll, r.observe, r.vacuum}
	for range r.cfg.Workers {
		loops = append(loops, r.work)
	}
	for _, loop := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(ctx)
		}()
	}
	wg.Wait()
	return r.cfg.Broker.Close()
}

// listen marks partitions as the appender notifies them. Every
// (re)connection marks all partitions, since notifications may have been
// missed meanwhile.
func (r *Relay) listen(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		err := r.listenOnce(ctx, func() { attempt = 0 })
		if ctx.Err() != nil {
			return
		}
		wait := r.cfg.Backoff.Delay(attempt)
		r.cfg.Logger.Warn("outbox notifications lost; relying on polling until reconnected", "error", err.Error(), "retry_in", wait)
		retry.Sleep(ctx, wait)
	}
}

func (r *Relay) listenOnce(ctx context.Context, connected func()) error {
	conn, err := r.cfg.Pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire listen connection: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// The connection goes back to the pool after UNLISTEN (or is closed by
	// the pool if the error broke it).
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "UNLISTEN "+NotifyChannel) }()
	connected()
	r.sched.markAll()
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("wait for notification: %w", err)
		}
		payload := n.Payload
		if _, parts, ok := strings.Cut(payload, ":"); ok {
			// An earlier version's `shop run` named its origin: the
			// partitions follow it.
			payload = parts
		}
		for field := range strings.SplitSeq(payload, ",") {
			if p, err := strconv.Atoi(field); err == nil && p >= 0 && p < Partitions {
				r.sched.mark(p)
			} else {
				r.sched.markAll()
			}
		}
	}
}

// poll marks every partition every PollInterval.
func (r *Relay) poll(ctx context.Context) {
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.sched.markAll()
		}
	}
}

// observe refreshes the pending-rows metrics.
func (r *Relay) observe(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		if status, err := ReadStatus(ctx, r.cfg.Pool); err == nil {
			r.cfg.Metrics.observe(status)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// vacuum vacuums the outbox whenever this replica deleted VacuumAfter rows
// since the last time. Replicas take turns through a session advisory lock,
// so two never queue up VACUUMs of the same table.
func (r *Relay) vacuum(ctx context.Context) {
	if r.cfg.VacuumAfter < 0 {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := r.deleted.Load()
		if n < int64(r.cfg.VacuumAfter) {
			continue
		}
		start := time.Now()
		done, err := r.vacuumOnce(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.cfg.Logger.Warn("outbox vacuum failed; autovacuum remains", "error", err.Error())
		case done:
			r.deleted.Add(-n)
			r.cfg.Metrics.Vacuums.Inc()
			r.cfg.Metrics.VacuumTime.Observe(time.Since(start).Seconds())
		}
	}
}

func (r *Relay) vacuumOnce(ctx context.Context) (bool, error) {
	conn, err := r.cfg.Pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, -1)`, lockClass).Scan(&locked); err != nil {
		return false, fmt.Errorf("vacuum lock: %w", err)
	}
	if !locked {
		return false, nil // another replica is vacuuming
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1, -1)`, lockClass) }()
	// No truncation: truncating the emptied tail takes an ACCESS EXCLUSIVE
	// lock that stalls writers and relays, every few seconds under load.
	// The free pages are reused; autovacuum still truncates now and then.
	if _, err := conn.Exec(ctx, `VACUUM (TRUNCATE false) outbox`); err != nil {
		return false, fmt.Errorf("vacuum outbox: %w", err)
	}
	return true, nil
}

// work runs rounds over the partitions the scheduler hands it, one round at
// a time, on an AMQP channel of its own.
func (r *Relay) work(ctx context.Context) {
	var ch *amqp.Channel
	var returns chan amqp.Return
	defer func() {
		if ch != nil {
			_ = ch.Close()
		}
	}()
	failures := 0
	for {
		parts, ok := r.sched.next(ctx, r.cfg.Linger)
		if !ok {
			return
		}
		// A partition whose last round failed or left a row unpublished
		// retries its first row alone: the rows behind a refused row, which
		// that round published already, are published again only once it
		// went through, not on every retry. The others share one round, at
		// most BatchSize rows in all.
		var healthy []int
		var jobs []roundJob
		for _, p := range parts {
			if r.sched.strikes(p) > 0 {
				jobs = append(jobs, roundJob{parts: []int{p}, limit: 1})
			} else {
				healthy = append(healthy, p)
			}
		}
		if len(healthy) > 0 {
			limit := max(1, r.cfg.BatchSize/len(healthy))
			jobs = append(jobs, roundJob{parts: healthy, limit: limit})
		}
		for i, job := range jobs {
			if ch == nil || ch.IsClosed() {
				var err error
				if ch, err = r.cfg.Broker.Channel(ctx); err != nil {
					r.giveBack(jobs[i:])
					return // ctx ended
				}
				returns = ch.NotifyReturn(make(chan amqp.Return, r.cfg.BatchSize+Partitions))
			}
			// A round in flight finishes after ctx ends (SIGTERM), within
			// the confirm timeout, so a graceful stop publishes nothing twice.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ConfirmTimeout+5*time.Second)
			results, err := r.round(rctx, ch, returns, job.parts, job.limit)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					r.giveBack(jobs[i:])
					return
				}
				failures++
				wait := r.cfg.Backoff.Delay(failures - 1)
				r.cfg.Metrics.Failures.WithLabelValues("round").Inc()
				r.cfg.Logger.Warn("outbox round failed; retrying", "partitions", job.parts, "error", err.Error(), "retry_in", wait)
				_ = ch.Close()
				ch = nil
				for _, p := range job.parts {
					r.sched.retryLater(p, wait)
				}
				retry.Sleep(ctx, wait)
				continue
			}
			failures = 0
			for _, res := range results {
				if res.held && r.local.Load() {
					r.sched.markLater(res.partition, heldRetry, false)
					continue
				}
				if res.stuck == nil {
					r.sched.done(res.partition, res.full)
					continue
				}
				// A row of p cannot be published: p waits, the others go on.
				r.cfg.Logger.Error("outbox row not published; its partition waits and retries",
					"partition", res.partition, "event_id", res.stuck.eventID, "routing_key", res.stuck.key, "reason", res.reason)
				if res.reason == "nacked" && ch != nil {
					// A channel a quorum queue refused (reject-publish
					// overflow) refuses that queue's publishes itself until
					// the queue tells it to go on, which the queue does only
					// when it falls back under its limit, not when the limit
					// is lifted: seen here as nacks for 30 s and more while
					// fresh channels published fine. The retry gets a fresh
					// channel.
					_ = ch.Close()
					ch = nil
				}
				r.sched.retryLater(res.partition, r.cfg.Backoff.Delay(r.sched.strikes(res.partition)))
			}
		}
	}
}

// giveBack hands the partitions of rounds that will not run back to the
// scheduler, marked.
func (r *Relay) giveBack(jobs []roundJob) {
	for _, job := range jobs {
		for _, p := range job.parts {
			r.sched.done(p, true)
		}
	}
}

// roundJob is what one round relays: the oldest rows, at most limit of
// each, of the partitions.
type roundJob struct {
	parts []int
	limit int
}

type row struct {
	id        int64
	partition int
	eventID   string
	key       string
	payload   []byte
	created   time.Time
}

// heldRetry is how soon a relay woken by its own process's commits tries
// again a partition that another replica held: about one of that replica's
// rounds.
const heldRetry = 5 * time.Millisecond

// partitionResult is how a round ended for one of its partitions.
type partitionResult struct {
	partition int
	held      bool // another replica held it: this round read nothing of it
	full      bool // the partition gave as many rows as asked: more may wait
	stuck     *row // its first row that could not be published, if any
	reason    string
}

const (
	// claimSQL tries the advisory lock of each partition asked ($2) for
	// this transaction and remembers the ones it got in a
	// transaction-local setting ("{3,7}"); another replica holds the rest.
	claimSQL = `SELECT set_config('shop.claimed', coalesce(array_agg(p)::text, '{}'), true)
FROM unnest($2::int[]) AS p WHERE pg_try_advisory_xact_lock($1, p)`
	// readSQL is a statement of its own, sent right behind claimSQL: its
	// snapshot is taken after the locks were, so it never sees rows that
	// the locks' previous holders deleted. It reads the oldest rows, at
	// most $1, of each partition claimed, in id order.
	readSQL = `SELECT o.id, o.partition, o.event_id::text, o.routing_key, o.payload::text, o.created_at
FROM unnest(current_setting('shop.claimed')::int[]) AS p
CROSS JOIN LATERAL (SELECT * FROM outbox WHERE partition = p ORDER BY id LIMIT $1) AS o
ORDER BY o.id`
)

// round claims the partitions for one transaction, publishes the oldest
// rows of each (at most limit) and deletes those RabbitMQ confirmed, per
// partition in order up to the first that it did not (nacked or
// unroutable): that row and every row of its partition behind it stay,
// although the rows behind it were published. It costs two round trips to
// Postgres, whatever the number of partitions: BEGIN, claim and read; then
// DELETE and COMMIT. It returns a result for each partition asked; one
// another replica holds gives nothing and is not full.
func (r *Relay) round(ctx context.Context, ch *amqp.Channel, returns <-chan amqp.Return, parts []int, limit int) ([]partitionResult, error) {
	conn, err := r.cfg.Pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release() // the pool destroys a connection left in a transaction
	defer func() {
		if conn.Conn().PgConn().TxStatus() != 'I' {
			_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	var batch []row
	phaseStart := time.Now()
	claim := &pgx.Batch{}
	claim.Queue("BEGIN")
	// The DELETE need not wait for its WAL flush: if a crash loses it, the
	// rows are published again, which at-least-once allows.
	claim.Queue("SET LOCAL synchronous_commit = off")
	var claimed []int32
	claim.Queue(claimSQL, lockClass, parts).QueryRow(func(row pgx.Row) error {
		var text string
		if err := row.Scan(&text); err != nil {
			return err
		}
		claimed = parseClaimed(text)
		return nil
	})
	claim.Queue(readSQL, limit).Query(func(rows pgx.Rows) (err error) {
		batch, err = pgx.CollectRows(rows, func(cr pgx.CollectableRow) (row, error) {
			var x row
			var payload string
			err := cr.Scan(&x.id, &x.partition, &x.eventID, &x.key, &payload, &x.created)
			x.payload = []byte(payload)
			return x, err
		})
		return err
	})
	if err := conn.SendBatch(ctx, claim).Close(); err != nil {
		return nil, fmt.Errorf("claim and read partitions %v: %w", parts, err)
	}
	r.cfg.Metrics.phase("claim", &phaseStart)
	results := make([]partitionResult, len(parts))
	index := make(map[int]int, len(parts)) // partition → its result
	for i, p := range parts {
		results[i].partition, results[i].held = p, true
		index[p] = i
	}
	for _, p := range claimed {
		if i, ok := index[int(p)]; ok {
			results[i].held = false
		}
	}
	if len(batch) == 0 {
		return results, nil // empty, or another replica is relaying them right now
	}

	// A row no queue is bound for would come back unroutable, and the rows
	// of its partition behind it would overtake it: publish only the rows
	// before it.
	count := make(map[int]int, len(parts))
	blocked := make(map[int]*row)
	publishable := make([]row, 0, len(batch))
	for i := range batch {
		x := &batch[i]
		count[x.partition]++
		switch {
		case blocked[x.partition] != nil:
		case !r.cfg.Broker.Topology().Routed(x.key):
			blocked[x.partition] = x
		default:
			publishable = append(publishable, *x)
		}
	}
	start := time.Now()
	phaseStart = start
	failed, err := r.publish(ctx, ch, returns, publishable, &phaseStart)
	if err != nil {
		return nil, err
	}
	// Per partition, the rows up to the first failure go; that row sticks.
	var ids []int64
	var sent []row
	for i, x := range publishable {
		res := &results[index[x.partition]]
		switch {
		case res.stuck != nil:
		case failed[i] != "":
			res.stuck, res.reason = &publishable[i], failed[i]
		default:
			ids = append(ids, x.id)
			sent = append(sent, x)
		}
	}
	for p, x := range blocked {
		if res := &results[index[p]]; res.stuck == nil {
			res.stuck, res.reason = x, "unroutable"
		}
	}
	if len(ids) > 0 {
		done := &pgx.Batch{}
		done.Queue(`DELETE FROM outbox WHERE id = ANY($1)`, ids)
		done.Queue("COMMIT")
		if err := conn.SendBatch(ctx, done).Close(); err != nil {
			return nil, fmt.Errorf("delete published rows: %w", err)
		}
		r.deleted.Add(int64(len(ids)))
		r.cfg.Metrics.phase("commit", &phaseStart)
	}
	r.cfg.Metrics.published(sent, time.Since(start))
	for i := range results {
		results[i].full = count[results[i].partition] == limit
		if results[i].stuck != nil {
			r.cfg.Metrics.Failures.WithLabelValues(results[i].reason).Inc()
		}
	}
	return results, nil
}

// parseClaimed reads the partitions claimSQL claimed, "{3,7}".
func parseClaimed(text string) []int32 {
	var claimed []int32
	for field := range strings.SplitSeq(strings.Trim(text, "{}"), ",") {
		if p, err := strconv.Atoi(field); err == nil {
			claimed = append(claimed, int32(p))
		}
	}
	return claimed
}

// publish sends the batch as persistent, mandatory messages and waits for
// every confirm. It returns, for each row, why RabbitMQ did not take it
// ("nacked", "unroutable"), or "" when it did (acked and routed). An error
// means the outcome is unknown (channel closed, timeout): nothing may be
// deleted.
//
// It records the send and confirm phases from *since on.
func (r *Relay) publish(ctx context.Context, ch *amqp.Channel, returns <-chan amqp.Return, batch []row, since *time.Time) (failed []string, err error) {
	failed = make([]string, len(batch))
	if len(batch) == 0 {
		return failed, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ConfirmTimeout)
	defer cancel()
	pubs := make([]amqp.Publishing, len(batch))
	for i, x := range batch {
		pubs[i] = amqp.Publishing{
			ContentType:  "application/json",
			DeliveryMode: amqp.Persistent,
			MessageId:    x.eventID,
			Type:         x.key,
			Timestamp:    x.created,
			Body:         x.payload,
		}
	}
	spans := r.traceRound(ctx, batch, pubs)
	defer func() { spans.end(failed, err) }()
	confirms := make([]*amqp.DeferredConfirmation, len(batch))
	release := r.cfg.Broker.Hold() // the whole round in one write
	for i, x := range batch {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, Exchange, x.key, true, false, pubs[i])
		if err != nil {
			release()
			return nil, fmt.Errorf("publish: %w", err)
		}
		confirms[i] = dc
	}
	release()
	r.cfg.Metrics.phase("send", since)
	for i, dc := range confirms {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("wait for confirm: %w", err)
		}
		if !ok {
			failed[i] = "nacked"
		}
	}
	r.cfg.Metrics.phase("confirm", since)
	// RabbitMQ returns an unroutable message before it acks it, and the
	// client hands the return over before the ack: all returns of this
	// batch are in the channel by now.
	for {
		select {
		case ret, open := <-returns:
			if !open {
				return nil, errors.New("channel closed while publishing")
			}
			for i := range batch {
				if batch[i].eventID == ret.MessageId {
					// The rows of its partition after it are published
					// already; they will be published again after it:
					// duplicates, not loss.
					failed[i] = "unroutable"
				}
			}
			continue
		default:
		}
		break
	}
	return failed, nil
}
