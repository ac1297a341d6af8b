package outbox_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/internal/retry"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// topology is what the relays of these tests declare and publish to: three
// of shop's groups, as far as these tests need them.
var topology = outbox.Topology{
	{Group: "orders", Keys: []string{"stock.reserved", "stock.rejected", "stock.released"}},
	{Group: "inventory", Keys: []string{"order.placed", "order.cancelled"}},
	{Group: "projections", Keys: []string{"product.created", "product.updated", "stock.changed", "order.placed"}},
}

// newBroker returns a broker of amqpURL with the tests' topology.
func newBroker(t *testing.T, amqpURL string) *outbox.Broker {
	t.Helper()
	b, err := outbox.NewBroker(outbox.BrokerConfig{URL: amqpURL, Topology: topology, Logger: quiet,
		Backoff: retry.Backoff{Min: 20 * time.Millisecond, Max: 500 * time.Millisecond}})
	testenv.Must(t, err, "broker")
	return b
}

// openPool opens a pool on dbURL, closed when t ends.
func openPool(t *testing.T, dbURL string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	pool, err := store.Open(context.Background(), store.Config{DatabaseURL: dbURL, MaxConns: maxConns})
	testenv.Must(t, err, "pool")
	t.Cleanup(pool.Close)
	return pool
}

// startRelay runs a relay replica with a pool of its own until t ends.
func startRelay(t *testing.T, dbURL, amqpURL string, tune func(*outbox.RelayConfig)) *outbox.Relay {
	t.Helper()
	pool := openPool(t, dbURL, 8) // closed after the relay stopped: cleanups run last first
	cfg := outbox.RelayConfig{Pool: pool, Broker: newBroker(t, amqpURL), Logger: quiet, PollInterval: 200 * time.Millisecond,
		Linger: 2 * time.Millisecond, Backoff: retry.Backoff{Min: 20 * time.Millisecond, Max: 500 * time.Millisecond}}
	if tune != nil {
		tune(&cfg)
	}
	relay, err := outbox.NewRelay(cfg)
	testenv.Must(t, err, "relay")
	testenv.Run(t, relay.Run)
	return relay
}

// recordCommits makes t's database remember every event committed to the
// outbox (a trigger copies each id in the inserting transaction), so a test
// knows what must arrive although the relays delete the rows.
func recordCommits(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `
		CREATE TABLE committed (event_id uuid PRIMARY KEY, partition int NOT NULL);
		CREATE FUNCTION remember_event() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO committed VALUES (NEW.event_id, NEW.partition); RETURN NEW; END $$;
		CREATE TRIGGER remember AFTER INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION remember_event();`)
	testenv.Must(t, err, "record commits")
}

// committed returns the ids of every event committed so far, except those of
// the partitions given.
func committed(t *testing.T, pool *pgxpool.Pool, except ...int16) map[uuid.UUID]bool {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT event_id FROM committed WHERE partition <> ALL($1)`, append([]int16{}, except...))
	testenv.Must(t, err, "read committed events")
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	testenv.Must(t, err, "read committed events")
	out := make(map[uuid.UUID]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out
}

// addProducts creates n products and returns their ids.
func addProducts(t *testing.T, pool *pgxpool.Pool, n int) []uuid.UUID {
	t.Helper()
	uow := store.NewUnitOfWork(pool, nil)
	ids := make([]uuid.UUID, n)
	err := uow.Do(context.Background(), func(ctx context.Context, tx *store.Tx) error {
		for i := range ids {
			p, err := app.AddProduct(ctx, tx, app.Operator, app.CreateProduct{SKU: fmt.Sprintf("P-%d", i), Name: "P", PriceCents: 1, Stock: 0}, time.Now())
			if err != nil {
				return err
			}
			ids[i] = p.ID()
		}
		return nil
	})
	testenv.Must(t, err, "add products")
	return ids
}

// restock commits n restock commands, one per transaction, from writers
// goroutines spread over the products; each records one stock.changed.
func restock(pool *pgxpool.Pool, products []uuid.UUID, n, writers int) error {
	uow := store.NewUnitOfWork(pool, nil)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += writers {
				err := uow.Do(context.Background(), func(ctx context.Context, tx *store.Tx) error {
					_, err := app.Restock(ctx, tx, app.Operator, products[i%len(products)], 1, time.Now())
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return fmt.Errorf("restock: %w", err)
	}
	return nil
}

func TestRelayDeliversEveryEventInAggregateOrder(t *testing.T) {
	t.Parallel()
	for _, replicas := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d replicas", replicas), func(t *testing.T) {
			t.Parallel()
			dbURL, amqpURL := testenv.DatabaseURL(t), testenv.AMQPURL(t)
			testenv.ValidateEvents(t, amqpURL)
			pool := openPool(t, dbURL, 16)
			recordCommits(t, pool)
			s := testenv.NewSink(t, amqpURL, topology)
			for range replicas {
				startRelay(t, dbURL, amqpURL, nil)
			}
			products := addProducts(t, pool, 40)
			testenv.Must(t, restock(pool, products, 10_000, 8), "commands")

			want := committed(t, pool)
			if len(want) != 10_040 {
				t.Fatalf("%d events committed, want 10040", len(want))
			}
			got := s.WaitFor(t, want, time.Minute)
			if dups := testenv.CheckOrder(t, got); dups != 0 {
				t.Errorf("%d events arrived twice without any failure", dups)
			}
			if extra := len(got) - len(want); extra > 0 {
				t.Errorf("%d more arrivals than events", extra)
			}
			testenv.Eventually(t, 10*time.Second, func() error {
				if n := testenv.Count(t, pool, `SELECT count(*) FROM outbox`); n != 0 {
					return fmt.Errorf("%d rows still in the outbox", n)
				}
				return nil
			})
		})
	}
}

func TestStuckRowDoesNotBlockOtherPartitions(t *testing.T) {
	t.Parallel()
	dbURL, amqpURL := testenv.DatabaseURL(t), testenv.AMQPURL(t)
	pool := openPool(t, dbURL, 8)
	recordCommits(t, pool)
	s := testenv.NewSink(t, amqpURL, topology)

	// An event no queue is bound to, in the partition of aggregate stuck.
	stuck := uuid.New()
	poison := domain.NewEvent("nobody.listens", "thing", stuck, 1, time.Now(), struct{}{})
	behind := domain.NewEvent("product.updated", "product", stuck, 2, time.Now(), struct{}{})
	err := store.NewUnitOfWork(pool, nil).Do(context.Background(), func(_ context.Context, tx *store.Tx) error {
		return tx.Append(poison, behind)
	})
	testenv.Must(t, err, "append poison")
	reg := prometheus.NewRegistry()
	metrics := outbox.NewMetrics(reg)
	startRelay(t, dbURL, amqpURL, func(c *outbox.RelayConfig) { c.Metrics = metrics })

	products := addProducts(t, pool, 50)
	testenv.Must(t, restock(pool, products, 500, 4), "commands")
	blocked := outbox.Partition(stuck)
	got := s.WaitFor(t, committed(t, pool, blocked), 30*time.Second) // every other partition flows
	testenv.CheckOrder(t, got)
	for _, a := range got {
		if outbox.Partition(a.Aggregate) == blocked {
			t.Fatalf("event %s of the blocked partition overtook the row it waits behind", a.ID)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := testutil.ToFloat64(metrics.Failures.WithLabelValues("unroutable")); n < 1 {
			return fmt.Errorf("unroutable failures counted: %v", n)
		}
		return nil
	})
	waiting := testenv.Count(t, pool, `SELECT count(*) FROM committed WHERE partition = $1`, blocked)
	if n := testenv.Count(t, pool, `SELECT count(*) FROM outbox WHERE partition = $1`, blocked); n != waiting {
		t.Fatalf("%d rows of the blocked partition left in the outbox, want all %d", n, waiting)
	}
	status, err := outbox.ReadStatus(context.Background(), pool)
	testenv.Must(t, err, "status")
	if p := status[blocked]; p.Pending != int64(waiting) || p.OldestAge <= 0 {
		t.Fatalf("status of the blocked partition = %+v, want %d pending with an age", p, waiting)
	}
	// The gauges (refreshed every 5 s) show the same: the blocked partition
	// pending with a positive age, every other one empty.
	testenv.Eventually(t, 15*time.Second, func() error {
		pending, age := gauges(t, reg, "shop_outbox_pending"), gauges(t, reg, "shop_outbox_oldest_age_seconds")
		for p := range int16(outbox.Partitions) {
			label := strconv.Itoa(int(p))
			switch {
			case p == blocked && (pending[label] != float64(waiting) || age[label] <= 0):
				return fmt.Errorf("blocked partition %d: pending %v, oldest age %v; want %d and > 0", p, pending[label], age[label], waiting)
			case p != blocked && (pending[label] != 0 || age[label] != 0):
				return fmt.Errorf("partition %d: pending %v, oldest age %v; want 0", p, pending[label], age[label])
			}
		}
		return nil
	})
}

// gauges gathers reg and returns the values of the gauge family name by
// partition label; a partition without a value is absent.
func gauges(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	testenv.Must(t, err, "gather metrics")
	values := map[string]float64{}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "partition" {
					values[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return values
}

func TestRelayRecoversFromLostConnections(t *testing.T) {
	t.Parallel()
	dbURL := testenv.DatabaseURL(t)
	vhost := testenv.VHost(t)
	amqpURL := testenv.AMQPServerURL() + vhost
	testenv.ValidateEvents(t, amqpURL) // reconnects, as the sink does
	pool := openPool(t, dbURL, 8)
	recordCommits(t, pool)
	s := testenv.NewSink(t, amqpURL, topology)
	startRelay(t, dbURL+"&application_name=relay", amqpURL, func(c *outbox.RelayConfig) { c.BatchSize = 50 })
	products := addProducts(t, pool, 20)

	done := make(chan struct{})
	var streamErr error
	go func() {
		defer close(done)
		streamErr = restock(pool, products, 3000, 4)
	}()
	// Cut the relay off RabbitMQ, then off Postgres, while commands stream.
	for i := 0; ; i++ {
		select {
		case <-done:
		case <-time.After(300 * time.Millisecond):
			if i%2 == 0 {
				testenv.CloseConnections(t, vhost) // the sink's too: it reconnects
			} else {
				_, err := pool.Exec(context.Background(),
					`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
					 WHERE datname = current_database() AND application_name = 'relay'`)
				testenv.Must(t, err, "terminate relay connections")
			}
			continue
		}
		break
	}
	testenv.Must(t, streamErr, "commands")
	want := committed(t, pool)
	got := s.WaitFor(t, want, time.Minute)
	testenv.CheckOrder(t, got)
}

func TestRelayStartsBeforeRabbitMQ(t *testing.T) {
	t.Parallel()
	dbURL := testenv.DatabaseURL(t)
	vhost := testenv.NewVHostName() // does not exist yet: connecting fails as if RabbitMQ were down
	amqpURL := testenv.AMQPServerURL() + vhost
	pool := openPool(t, dbURL, 4)
	recordCommits(t, pool)
	relay := startRelay(t, dbURL, amqpURL, nil)
	products := addProducts(t, pool, 5)
	testenv.Must(t, restock(pool, products, 100, 2), "commands")
	if relay.Connected() {
		t.Fatal("relay says it is connected to a broker that refuses it")
	}
	if n := testenv.Count(t, pool, `SELECT count(*) FROM outbox`); n != 105 {
		t.Fatalf("%d rows in the outbox while RabbitMQ is away, want all 105", n)
	}

	testenv.CreateVHost(t, vhost) // RabbitMQ "comes up"
	testenv.ValidateEvents(t, amqpURL)
	// The relay may publish before a test queue could be bound; the
	// projections group's queue, which it declares first, gets every
	// product event.
	s := testenv.NewGroupSink(t, amqpURL, topology, "shop.projections")
	got := s.WaitFor(t, committed(t, pool), 30*time.Second)
	testenv.CheckOrder(t, got)
	if !relay.Connected() {
		t.Fatal("relay delivered but says it is not connected")
	}
}

// TestRelayWakesWithoutPolling checks that, with polling an hour away, a
// commit wakes a relay listening in another process through Postgres, and
// one in its own process (`shop run`) directly.
func TestRelayWakesWithoutPolling(t *testing.T) {
	t.Parallel()
	running := func(t *testing.T, n *outbox.Notifier) *outbox.Notifier {
		testenv.Run(t, n.Run)
		return n
	}
	cases := []struct {
		name string
		// writer returns the notifier of the process that commits; relay
		// is the one listening.
		writer func(t *testing.T, pool *pgxpool.Pool, relay *outbox.Relay) *outbox.Notifier
	}{
		{"another process notifies through Postgres", func(t *testing.T, pool *pgxpool.Pool, _ *outbox.Relay) *outbox.Notifier {
			return running(t, outbox.NewNotifier(pool, quiet))
		}},
		{"its own process wakes it directly", func(_ *testing.T, pool *pgxpool.Pool, relay *outbox.Relay) *outbox.Notifier {
			n := outbox.NewNotifier(pool, quiet) // not running: no notification
			n.WakeLocal(relay)
			return n
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dbURL, amqpURL := testenv.DatabaseURL(t), testenv.AMQPURL(t)
			testenv.ValidateEvents(t, amqpURL)
			pool := openPool(t, dbURL, 8)
			recordCommits(t, pool)
			s := testenv.NewSink(t, amqpURL, topology)
			relay := startRelay(t, dbURL, amqpURL, func(c *outbox.RelayConfig) { c.PollInterval = time.Hour })
			testenv.Eventually(t, 10*time.Second, func() error { // listening, and idle
				if !relay.Connected() {
					return fmt.Errorf("not connected yet")
				}
				return nil
			})
			addNamedProducts(t, store.NewUnitOfWork(pool, tc.writer(t, pool, relay)), "W", 20)
			testenv.CheckOrder(t, s.WaitFor(t, committed(t, pool), 10*time.Second))
		})
	}
}

// TestCommitBesideARelayNotifiesNobody: a process that runs a relay (`shop
// run`) wakes it and sends no notification through Postgres; a process
// without one notifies.
func TestCommitBesideARelayNotifiesNobody(t *testing.T) {
	t.Parallel()
	dbURL, amqpURL := testenv.DatabaseURL(t), testenv.AMQPURL(t)
	ctx := context.Background()
	listener, err := pgx.Connect(ctx, dbURL)
	testenv.Must(t, err, "connect the listener")
	t.Cleanup(func() { _ = listener.Close(context.Background()) })
	_, err = listener.Exec(ctx, "LISTEN "+outbox.NotifyChannel)
	testenv.Must(t, err, "listen")

	// The process with a relay: one connection, so every statement of its
	// notifier would come from that connection's backend.
	beside := openPool(t, dbURL, 1)
	var besidePID uint32
	testenv.Must(t, beside.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&besidePID), "backend pid")
	relay, err := outbox.NewRelay(outbox.RelayConfig{Pool: beside, Broker: newBroker(t, amqpURL), Logger: quiet}) // never runs
	testenv.Must(t, err, "relay")
	withRelay := outbox.NewNotifier(beside, quiet)
	withRelay.WakeLocal(relay)
	testenv.Run(t, withRelay.Run)
	addNamedProducts(t, store.NewUnitOfWork(beside, withRelay), "B", 5)

	// Then a process without one: its notification comes, and none came
	// before it from the process with a relay (notifications arrive in
	// the order they were committed).
	other := openPool(t, dbURL, 2)
	without := outbox.NewNotifier(other, quiet)
	testenv.Run(t, without.Run)
	addNamedProducts(t, store.NewUnitOfWork(other, without), "O", 1)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := listener.WaitForNotification(wctx)
	testenv.Must(t, err, "wait for the notification of the process without a relay")
	if n.PID == besidePID {
		t.Fatalf("the process with a relay notified %q", n.Payload)
	}
}

// TestRelayWokenByItsProcessRetriesAPartitionAnotherHeld: no other replica
// hears of a commit that woke the relay of its process, so when another
// replica held the partitions (it may have read them before the commit),
// that relay tries them again until it gets them: the rows go out without
// waiting for a poll.
func TestRelayWokenByItsProcessRetriesAPartitionAnotherHeld(t *testing.T) {
	t.Parallel()
	dbURL, amqpURL := testenv.DatabaseURL(t), testenv.AMQPURL(t)
	ctx := context.Background()
	pool := openPool(t, dbURL, 8)
	recordCommits(t, pool)
	s := testenv.NewSink(t, amqpURL, topology)
	relay := startRelay(t, dbURL, amqpURL, func(c *outbox.RelayConfig) { c.PollInterval = time.Hour })
	testenv.Eventually(t, 10*time.Second, func() error {
		if !relay.Connected() {
			return fmt.Errorf("not connected yet")
		}
		return nil
	})

	// "Another replica" holds every partition, as in a round of its own:
	// relayLockClass is the first key of the relays' partition locks
	// ("outb", outbox/relay.go).
	const relayLockClass = 0x6f757462
	other, err := pool.Begin(ctx)
	testenv.Must(t, err, "begin the other replica's round")
	t.Cleanup(func() { _ = other.Rollback(context.Background()) })
	_, err = other.Exec(ctx, `SELECT pg_advisory_xact_lock($1, p) FROM generate_series(0, $2 - 1) AS p`, relayLockClass, outbox.Partitions)
	testenv.Must(t, err, "hold every partition")

	n := outbox.NewNotifier(pool, quiet) // not running: only the relay of this process hears of the commits
	n.WakeLocal(relay)
	addNamedProducts(t, store.NewUnitOfWork(pool, n), "H", 5)
	testenv.Must(t, other.Commit(ctx), "end the other replica's round, having published nothing")
	testenv.CheckOrder(t, s.WaitFor(t, committed(t, pool), 10*time.Second))
}

// addNamedProducts commits n products, one per transaction, SKUs prefix-i.
func addNamedProducts(t *testing.T, uow *store.UnitOfWork, prefix string, n int) {
	t.Helper()
	for i := range n {
		err := uow.Do(context.Background(), func(ctx context.Context, tx *store.Tx) error {
			_, err := app.AddProduct(ctx, tx, app.Operator, app.CreateProduct{SKU: fmt.Sprintf("%s-%d", prefix, i), Name: prefix, PriceCents: 1}, time.Now())
			return err
		})
		testenv.Must(t, err, "add product")
	}
}

// TestRelayVacuumsTheOutbox checks that the relay vacuums the outbox itself
// once it deleted VacuumAfter rows, and not before.
func TestRelayVacuumsTheOutbox(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		vacuumAfter int
		wantVacuums bool
	}{
		{"after 200 deleted rows", 200, true},
		{"never when turned off", -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dbURL, amqpURL := testenv.DatabaseURL(t), testenv.AMQPURL(t)
			testenv.ValidateEvents(t, amqpURL)
			pool := openPool(t, dbURL, 8)
			// Autovacuum off for the table, so that any vacuum is the relay's.
			_, err := pool.Exec(context.Background(), `ALTER TABLE outbox SET (autovacuum_enabled = false)`)
			testenv.Must(t, err, "disable autovacuum")
			s := testenv.NewSink(t, amqpURL, topology)
			metrics := outbox.NewMetrics(nil)
			startRelay(t, dbURL, amqpURL, func(c *outbox.RelayConfig) { c.VacuumAfter = tt.vacuumAfter; c.Metrics = metrics })
			recordCommits(t, pool)
			products := addProducts(t, pool, 10)
			testenv.Must(t, restock(pool, products, 500, 4), "commands")
			s.WaitFor(t, committed(t, pool), time.Minute)

			vacuums := func() int {
				return testenv.Count(t, pool, `SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'outbox'`)
			}
			if !tt.wantVacuums {
				// An absence: it can only be seen by waiting out the relay's
				// check interval (1 s) and then some.
				time.Sleep(1500 * time.Millisecond)
				if n := vacuums(); n != 0 || testutil.ToFloat64(metrics.Vacuums) != 0 {
					t.Fatalf("%d vacuums of the outbox (metric %v), want none", n, testutil.ToFloat64(metrics.Vacuums))
				}
				return
			}
			testenv.Eventually(t, 10*time.Second, func() error {
				if n := vacuums(); n == 0 || testutil.ToFloat64(metrics.Vacuums) == 0 {
					return fmt.Errorf("%d vacuums of the outbox (metric %v), want some", n, testutil.ToFloat64(metrics.Vacuums))
				}
				return nil
			})
		})
	}
}

// TestConnectedDoesNotWaitForADial checks that Connected (what /readyz asks)
// answers at once while the relay is stuck dialling a broker that accepted
// the TCP connection and never speaks AMQP: the dial holds the broker's
// lock for up to its 30 s handshake timeout.
func TestConnectedDoesNotWaitForADial(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.Must(t, err, "listen")
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c // held open and silent
		}
	}()
	relay := startRelay(t, testenv.DatabaseURL(t), "amqp://guest:guest@"+ln.Addr().String()+"/", nil)
	// Runs before the relay's cleanup: closing the sockets ends the dial.
	t.Cleanup(func() {
		_ = ln.Close()
		for {
			select {
			case c := <-accepted:
				_ = c.Close()
			default:
				return
			}
		}
	})

	var c net.Conn
	select {
	case c = <-accepted: // the relay is dialling now, and waits for the handshake
	case <-time.After(30 * time.Second):
		t.Fatal("the relay did not dial within 30 s")
	}
	accepted <- c // for the cleanup
	answer := make(chan bool, 1)
	go func() { answer <- relay.Connected() }()
	select {
	case ok := <-answer:
		if ok {
			t.Fatal("Connected() = true while the broker has not even answered")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Connected() blocked behind a dial in progress")
	}
}

// TestOneRoundRelaysEveryPartitionMarked checks that a round takes every
// partition waiting, not one: a backlog spread over all sixteen partitions
// goes out in fewer rounds than partitions, each partition still in order,
// and a batch size smaller than the backlog is shared among them.
func TestOneRoundRelaysEveryPartitionMarked(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		batchSize int
		events    int
		maxRounds int
	}{
		{name: "everything in one round", batchSize: 500, events: 160, maxRounds: 1},
		// 4 rows of each partition per round: 3 rounds, where one
		// partition per round would take 16.
		{name: "a batch shared among the partitions", batchSize: 64, events: 160, maxRounds: 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dbURL, amqpURL := testenv.DatabaseURL(t), testenv.AMQPURL(t)
			pool := openPool(t, dbURL, 8)
			recordCommits(t, pool)
			// The same number of aggregates in every partition, two events
			// each, committed before any relay runs.
			var events []domain.Event
			perPartition := map[int16]int{}
			for len(events) < tc.events {
				id := uuid.New()
				if p := outbox.Partition(id); perPartition[p] < tc.events/outbox.Partitions/2 {
					perPartition[p]++
					for v := int64(1); v <= 2; v++ {
						events = append(events, domain.NewEvent("stock.changed", "product", id, v, time.Now(), struct{}{}))
					}
				}
			}
			uow := store.NewUnitOfWork(pool, nil)
			testenv.Must(t, uow.Do(context.Background(), func(_ context.Context, tx *store.Tx) error { return tx.Append(events...) }), "append")

			s := testenv.NewSink(t, amqpURL, topology)
			reg := prometheus.NewRegistry()
			metrics := outbox.NewMetrics(reg)
			startRelay(t, dbURL, amqpURL, func(c *outbox.RelayConfig) {
				c.Workers, c.BatchSize, c.Metrics = 1, tc.batchSize, metrics
			})
			testenv.CheckOrder(t, s.WaitFor(t, committed(t, pool), 10*time.Second))
			// The sink has the messages before the round that sent them
			// ends (its delete commits, then it counts).
			testenv.Eventually(t, 10*time.Second, func() error {
				if n := testutil.ToFloat64(metrics.Published); n != float64(len(events)) {
					return fmt.Errorf("%.0f of %d events counted as relayed", n, len(events))
				}
				return nil
			})
			rounds := histogramCount(t, reg, "shop_relay_batch_size")
			if rounds < 1 || rounds > tc.maxRounds {
				t.Errorf("%d events in %d partitions took %d rounds, want 1 to %d",
					len(events), len(perPartition), rounds, tc.maxRounds)
			}
			// Every round that published went through each phase once; a
			// round that found nothing only claimed.
			phases := phaseCounts(t, reg)
			for _, phase := range []string{"send", "confirm", "commit"} {
				if phases[phase] != rounds {
					t.Errorf("phase %s timed %d times, want once per round that published (%d)", phase, phases[phase], rounds)
				}
			}
			if phases["claim"] < rounds {
				t.Errorf("phase claim timed %d times, want at least once per round that published (%d)", phases["claim"], rounds)
			}
		})
	}
}

// phaseCounts returns how many rounds shop_relay_round_phase_seconds timed,
// per phase.
func phaseCounts(t *testing.T, reg *prometheus.Registry) map[string]int {
	t.Helper()
	families, err := reg.Gather()
	testenv.Must(t, err, "gather metrics")
	counts := map[string]int{}
	for _, f := range families {
		if f.GetName() != "shop_relay_round_phase_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "phase" {
					counts[l.GetValue()] = int(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	return counts
}

// histogramCount returns the sample count of the histogram name in reg.
func histogramCount(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	families, err := reg.Gather()
	testenv.Must(t, err, "gather metrics")
	for _, f := range families {
		if f.GetName() == name {
			return int(f.GetMetric()[0].GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
