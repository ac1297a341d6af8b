package relaybench_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// ours is `shop relay`: replicas Relay instances, each with a pool of its
// own and the default RelayConfig, over a database that the writers fill
// through store.UnitOfWork and outbox.Append, as the API does.
type ours struct {
	cfg      config
	dbURL    string
	amqpURL  string
	replicas int
	pool     *pgxpool.Pool // the writers'
	uow      *store.UnitOfWork
	brake    *outbox.Backlog // nil: the writers never wait
	metrics  *outbox.Metrics // every replica's, together
}

func openOurs(b *testing.B, cfg config, amqpURL string, replicas int) system {
	b.Helper()
	o, closeWriters, err := oursWriters(context.Background(), cfg, testenv.DatabaseURL(b), amqpURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(closeWriters)
	o.replicas = replicas
	return o
}

// oursWriters is ours without relays: what its writers need, which is all
// the writers apart attach to.
func oursWriters(ctx context.Context, cfg config, dbURL, amqpURL string) (*ours, func(), error) {
	pool, err := store.Open(ctx, store.Config{DatabaseURL: dbURL, MaxConns: int32(cfg.writers + 2)})
	if err != nil {
		return nil, nil, fmt.Errorf("open pool: %w", err)
	}
	// The writers wake the relays after each commit, as the API does.
	notifier := outbox.NewNotifier(pool, logger)
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); _ = notifier.Run(ctx) }()
	o := &ours{cfg: cfg, dbURL: dbURL, amqpURL: amqpURL, pool: pool, uow: store.NewUnitOfWork(pool, notifier)}
	counted := make(chan struct{})
	if cfg.maxPending > 0 {
		// As the API does (OUTBOX_MAX_PENDING), with its defaults.
		if o.brake, err = outbox.NewBacklog(outbox.BacklogConfig{Pool: pool, Max: cfg.maxPending, Logger: logger}); err != nil {
			cancel()
			<-done
			pool.Close()
			return nil, nil, err
		}
		go func() { defer close(counted); o.brake.Run(ctx) }()
	} else {
		close(counted)
	}
	closeWriters := func() { cancel(); <-done; <-counted; pool.Close() }
	return o, closeWriters, nil
}

func (o *ours) endpoints() (dbURL, amqpURL string) { return o.dbURL, o.amqpURL }

// backlog appends n events with outbox.Append, 10,000 per transaction.
func (o *ours) backlog(ctx context.Context, n int) error {
	const perTx = 10_000
	for done := 0; done < n; {
		k := min(perTx, n-done)
		events := make([]domain.Event, k)
		for i := range events {
			events[i] = newEvent()
		}
		batch := &pgx.Batch{}
		batch.Queue("BEGIN")
		if err := outbox.Append(batch, outbox.Metadata{}, events...); err != nil {
			return err
		}
		batch.Queue("COMMIT")
		if err := o.pool.SendBatch(ctx, batch).Close(); err != nil {
			return fmt.Errorf("insert backlog: %w", err)
		}
		done += k
	}
	return settle(ctx, o.pool)
}

// settle analyzes the database (as autovacuum would have while a real
// backlog built up) and checkpoints, so that no checkpoint of the setup
// lands in the measurement.
func settle(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, "ANALYZE"); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	if _, err := pool.Exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

func (o *ours) start(ctx context.Context) (func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var pools []*pgxpool.Pool
	stop := func() {
		cancel()
		wg.Wait()
		for _, p := range pools {
			p.Close()
		}
	}
	o.metrics = outbox.NewMetrics(nil)
	for range o.replicas {
		pool, err := store.Open(ctx, store.Config{DatabaseURL: o.dbURL})
		if err != nil {
			stop()
			return nil, err
		}
		pools = append(pools, pool)
		broker, err := outbox.NewBroker(outbox.BrokerConfig{URL: o.amqpURL, Topology: topology, Logger: logger})
		if err != nil {
			stop()
			return nil, err
		}
		relay, err := outbox.NewRelay(outbox.RelayConfig{
			Pool:        pool,
			Broker:      broker,
			Logger:      logger,
			BatchSize:   o.cfg.batchSize,
			Workers:     o.cfg.workers,
			VacuumAfter: o.cfg.vacuumAfter,
			Linger:      o.cfg.linger,
			Metrics:     o.metrics,
		})
		if err != nil {
			stop()
			return nil, err
		}
		wg.Go(func() {
			if err := relay.Run(ctx); err != nil {
				logger.Error("relay", "error", err)
			}
		})
	}
	return stop, nil
}

func (o *ours) newWriter(_ context.Context, rec *recorder) (writer, error) {
	return &oursWriter{uow: o.uow, backlog: o.brake, rec: rec}, nil
}

// oursWriter commits one event per transaction, as a command of the API:
// BEGIN, the outbox INSERT, COMMIT, in one round trip; then the unit of
// work's notifier wakes the relays.
type oursWriter struct {
	uow     *store.UnitOfWork
	backlog *outbox.Backlog // nil: never waits
	rec     *recorder
}

func (w *oursWriter) commit(ctx context.Context) error {
	if w.backlog != nil {
		if err := w.backlog.Admit(ctx); err != nil {
			return err
		}
	}
	e := newEvent()
	if err := w.uow.Do(ctx, func(_ context.Context, tx *store.Tx) error { return tx.Append(e) }); err != nil {
		return err
	}
	w.rec.add(e.ID, time.Now())
	return nil
}

func (w *oursWriter) close(context.Context) error { return nil }

// rounds is what the relays' metrics counted: rounds, rows and the time
// spent in each phase of a round, and the VACUUMs.
type rounds struct {
	rounds, rows uint64
	phases       map[string]phaseTime
	vacuums      uint64
	vacuumTime   float64 // seconds
}

type phaseTime struct {
	count uint64
	sum   float64 // seconds
}

var roundPhases = []string{"claim", "send", "confirm", "commit"}

func (o *ours) rounds() rounds {
	m := o.metrics
	h := func(o prometheus.Observer) (uint64, float64) {
		var d dto.Metric
		if err := o.(prometheus.Metric).Write(&d); err != nil {
			return 0, 0
		}
		return d.GetHistogram().GetSampleCount(), d.GetHistogram().GetSampleSum()
	}
	var r rounds
	var rows float64
	r.rounds, rows = h(m.BatchSize)
	r.rows = uint64(rows)
	r.phases = make(map[string]phaseTime, len(roundPhases))
	for _, p := range roundPhases {
		n, s := h(m.RoundPhase.WithLabelValues(p))
		r.phases[p] = phaseTime{n, s}
	}
	r.vacuums, r.vacuumTime = h(m.VacuumTime)
	return r
}

func (r rounds) since(before rounds) rounds {
	d := rounds{
		rounds: r.rounds - before.rounds, rows: r.rows - before.rows,
		vacuums: r.vacuums - before.vacuums, vacuumTime: r.vacuumTime - before.vacuumTime,
		phases: make(map[string]phaseTime, len(r.phases)),
	}
	for p, t := range r.phases {
		d.phases[p] = phaseTime{t.count - before.phases[p].count, t.sum - before.phases[p].sum}
	}
	return d
}

// String gives rows per round and, per phase, its mean per round and its
// time per thousand rows.
func (r rounds) String() string {
	if r.rounds == 0 {
		return "none"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d rounds of %.0f rows on average;", r.rounds, float64(r.rows)/float64(r.rounds))
	for _, p := range roundPhases {
		t := r.phases[p]
		if t.count == 0 {
			continue
		}
		fmt.Fprintf(&b, " %s %.2f ms a round (%.1f ms per 1,000 rows);", p, 1000*t.sum/float64(t.count), 1e6*t.sum/float64(r.rows))
	}
	fmt.Fprintf(&b, " %d VACUUMs, %.0f ms in all", r.vacuums, 1000*r.vacuumTime)
	return b.String()
}
