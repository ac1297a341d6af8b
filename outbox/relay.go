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
	// AMQPURL is the RabbitMQ URL. Required.
	AMQPURL string
	// Logger receives the relay's logs. Required.
	Logger *slog.Logger
	// Metrics receives the relay's metrics; default none.
	Metrics *Metrics
	// BatchSize is how many rows of a partition one round publishes.
	// Default 500.
	BatchSize int
	// Workers is how many partitions this replica relays at once, each on
	// its own AMQP channel. Default 8: more batches in flight hide the
	// confirm latency; under 8 full-speed writers on 2 cores, 8 workers kept
	// up where 4 fell behind (16 did worse again).
	Workers int
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
	// MinBackoff and MaxBackoff bound the delay before retrying after
	// RabbitMQ or Postgres failed, or a row could not be published.
	// Defaults 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
}

// Validate fills defaults and checks the configuration.
func (c *RelayConfig) Validate() error {
	switch {
	case c.Pool == nil:
		return errors.New("relay: pool is required")
	case c.AMQPURL == "":
		return errors.New("relay: amqp url is required")
	case c.Logger == nil:
		return errors.New("relay: logger is required")
	}
	if _, err := amqp.ParseURI(c.AMQPURL); err != nil {
		return fmt.Errorf("relay: amqp url: %w", err)
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.Workers == 0 {
		c.Workers = 8
	}
	if c.VacuumAfter == 0 {
		c.VacuumAfter = 5000
	}
	def(&c.PollInterval, time.Second)
	def(&c.ConfirmTimeout, 10*time.Second)
	def(&c.MinBackoff, 100*time.Millisecond)
	def(&c.MaxBackoff, 5*time.Second)
	if c.BatchSize < 1 || c.Workers < 1 || c.Workers > Partitions || c.PollInterval < 0 || c.MinBackoff > c.MaxBackoff {
		return fmt.Errorf("relay: batch size and workers (1..%d) must be positive, min backoff <= max backoff", Partitions)
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
	broker  *broker
	sched   *scheduler
	deleted atomic.Int64 // rows deleted since the last vacuum
}

// NewRelay returns a relay for cfg.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Relay{
		cfg:    cfg,
		broker: &broker{url: cfg.AMQPURL, log: cfg.Logger, backoff: backoff{cfg.MinBackoff, cfg.MaxBackoff}},
		sched:  newScheduler(),
	}, nil
}

// Connected reports whether the relay holds an open RabbitMQ connection.
func (r *Relay) Connected() bool { return r.broker.connected() }

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
	return r.broker.close()
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
		wait := backoff{r.cfg.MinBackoff, r.cfg.MaxBackoff}.delay(attempt)
		r.cfg.Logger.Warn("outbox notifications lost; relying on polling until reconnected", "error", err.Error(), "retry_in", wait)
		sleep(ctx, wait)
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
		for field := range strings.SplitSeq(n.Payload, ",") {
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

// work relays the partitions the scheduler hands it, one round at a time,
// on an AMQP channel of its own.
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
		p, ok := r.sched.next(ctx)
		if !ok {
			return
		}
		if ch == nil || ch.IsClosed() {
			var err error
			if ch, err = r.broker.channel(ctx); err != nil {
				r.sched.done(p, true)
				return // ctx ended
			}
			returns = ch.NotifyReturn(make(chan amqp.Return, r.cfg.BatchSize))
		}
		// A round in flight finishes after ctx ends (SIGTERM), within the
		// confirm timeout, so a graceful stop publishes nothing twice.
		// A partition whose last round failed or left a row unpublished
		// retries its first row alone: the rows behind a refused row, which
		// that round published already, are published again only once it
		// went through, not on every retry.
		limit := r.cfg.BatchSize
		if r.sched.strikes(p) > 0 {
			limit = 1
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ConfirmTimeout+5*time.Second)
		res, err := r.round(rctx, ch, returns, p, limit)
		cancel()
		switch {
		case err == nil && res.stuck == nil:
			failures = 0
			r.sched.done(p, res.full)
		case err == nil:
			// A row of p cannot be published: p waits, the others go on.
			r.cfg.Logger.Error("outbox row not published; its partition waits and retries",
				"partition", p, "event_id", res.stuck.eventID, "routing_key", res.stuck.key, "reason", res.reason)
			if res.reason == "nacked" {
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
			r.sched.retryLater(p, backoff{r.cfg.MinBackoff, r.cfg.MaxBackoff}.delay(r.sched.strikes(p)))
		default:
			if ctx.Err() != nil {
				r.sched.done(p, true)
				return
			}
			failures++
			wait := backoff{r.cfg.MinBackoff, r.cfg.MaxBackoff}.delay(failures - 1)
			r.cfg.Metrics.Failures.WithLabelValues("round").Inc()
			r.cfg.Logger.Warn("outbox round failed; retrying", "partition", p, "error", err.Error(), "retry_in", wait)
			_ = ch.Close()
			ch = nil
			r.sched.retryLater(p, wait)
			sleep(ctx, wait)
		}
	}
}

type row struct {
	id      int64
	eventID string
	key     string
	payload []byte
	created time.Time
}

type roundResult struct {
	full   bool // the batch was full: more rows may wait
	stuck  *row // the first row that could not be published, if any
	reason string
}

const (
	// claimSQL tries the partition's advisory lock for this transaction and
	// remembers the outcome in a transaction-local setting.
	claimSQL = `SELECT set_config('shop.claimed', pg_try_advisory_xact_lock($1, $2)::text, true)`
	// readSQL is a statement of its own, sent right behind claimSQL: its
	// snapshot is taken after the lock was, so it never sees rows that the
	// lock's previous holder deleted. Without the lock it reads nothing.
	readSQL = `SELECT id, event_id::text, routing_key, payload::text, created_at
FROM outbox WHERE partition = $1 AND current_setting('shop.claimed') = 'true' ORDER BY id LIMIT $2`
)

// round claims partition p for one transaction, publishes its oldest rows
// (at most limit) and deletes those RabbitMQ confirmed, in order up to the
// first that it did not (nacked or unroutable): that row and every row
// behind it stay, although the rows behind it were published. It costs two
// round trips to Postgres: BEGIN, claim and read; then DELETE and COMMIT.
func (r *Relay) round(ctx context.Context, ch *amqp.Channel, returns <-chan amqp.Return, p, limit int) (roundResult, error) {
	conn, err := r.cfg.Pool.Acquire(ctx)
	if err != nil {
		return roundResult{}, fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release() // the pool destroys a connection left in a transaction
	defer func() {
		if conn.Conn().PgConn().TxStatus() != 'I' {
			_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	var batch []row
	claim := &pgx.Batch{}
	claim.Queue("BEGIN")
	// The DELETE need not wait for its WAL flush: if a crash loses it, the
	// rows are published again, which at-least-once allows.
	claim.Queue("SET LOCAL synchronous_commit = off")
	claim.Queue(claimSQL, lockClass, p)
	claim.Queue(readSQL, p, limit).Query(func(rows pgx.Rows) (err error) {
		batch, err = pgx.CollectRows(rows, func(cr pgx.CollectableRow) (row, error) {
			var x row
			var payload string
			err := cr.Scan(&x.id, &x.eventID, &x.key, &payload, &x.created)
			x.payload = []byte(payload)
			return x, err
		})
		return err
	})
	if err := conn.SendBatch(ctx, claim).Close(); err != nil {
		return roundResult{}, fmt.Errorf("claim and read partition %d: %w", p, err)
	}
	if len(batch) == 0 {
		return roundResult{}, nil // empty, or another replica is relaying p right now
	}

	// A row no queue is bound for would come back unroutable, and the rows
	// behind it would overtake it: publish only the rows before it.
	publishable := len(batch)
	for i, x := range batch {
		if !Routed(x.key) {
			publishable = i
			break
		}
	}
	start := time.Now()
	sent, reason, err := r.publish(ctx, ch, returns, batch[:publishable])
	if err != nil {
		return roundResult{}, err
	}
	if sent == publishable && publishable < len(batch) {
		reason = "unroutable"
	}
	ids := make([]int64, sent)
	for i := range sent {
		ids[i] = batch[i].id
	}
	if sent > 0 {
		done := &pgx.Batch{}
		done.Queue(`DELETE FROM outbox WHERE id = ANY($1)`, ids)
		done.Queue("COMMIT")
		if err := conn.SendBatch(ctx, done).Close(); err != nil {
			return roundResult{}, fmt.Errorf("delete published rows: %w", err)
		}
		r.deleted.Add(int64(sent))
	}
	r.cfg.Metrics.published(p, batch[:sent], time.Since(start))
	res := roundResult{full: len(batch) == limit}
	if sent < len(batch) {
		res.stuck, res.reason = &batch[sent], reason
		r.cfg.Metrics.Failures.WithLabelValues(reason).Inc()
	}
	return res, nil
}

// publish sends the batch as persistent, mandatory messages and waits for
// every confirm. It returns how many rows, from the first, RabbitMQ took
// (acked and routed), and why the next one failed. An error means the
// outcome is unknown (channel closed, timeout): nothing may be deleted.
func (r *Relay) publish(ctx context.Context, ch *amqp.Channel, returns <-chan amqp.Return, batch []row) (int, string, error) {
	if len(batch) == 0 {
		return 0, "", nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ConfirmTimeout)
	defer cancel()
	confirms := make([]*amqp.DeferredConfirmation, len(batch))
	for i, x := range batch {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, Exchange, x.key, true, false, amqp.Publishing{
			ContentType:  "application/json",
			DeliveryMode: amqp.Persistent,
			MessageId:    x.eventID,
			Type:         x.key,
			Timestamp:    x.created,
			Body:         x.payload,
		})
		if err != nil {
			return 0, "", fmt.Errorf("publish: %w", err)
		}
		confirms[i] = dc
	}
	acked := len(batch)
	reason := ""
	for i, dc := range confirms {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return 0, "", fmt.Errorf("wait for confirm: %w", err)
		}
		if !ok && i < acked {
			acked, reason = i, "nacked"
		}
	}
	// RabbitMQ returns an unroutable message before it acks it, and the
	// client hands the return over before the ack: all returns of this
	// batch are in the channel by now.
	for {
		select {
		case ret, open := <-returns:
			if !open {
				return 0, "", errors.New("channel closed while publishing")
			}
			for i := 0; i < acked; i++ {
				if batch[i].eventID == ret.MessageId {
					// The rows after it are published already; they will
					// be published again after it: duplicates, not loss.
					acked, reason = i, "unroutable"
				}
			}
			continue
		default:
		}
		break
	}
	return acked, reason, nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
