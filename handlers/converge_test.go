package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/handlers"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/mailer"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// TestDuplicatesAndShufflingEndTheSame runs the write side of a 500-order
// shop once, copies the database, and then runs the orders, inventory and
// emails groups of the registry twice: on the original with every event delivered once, in
// commit order; on the copy with every event delivered twice, in random
// order (events held back at random so that later events overtake earlier
// ones, e.g. order.cancelled before order.placed). The two end in the same
// state.
func TestDuplicatesAndShufflingEndTheSame(t *testing.T) {
	t.Parallel()
	ordered := testenv.DatabaseURL(t)
	writeShop(t, ordered)
	shuffled := copyDatabase(t, ordered)

	rng := testenv.Rand(t)
	n, _ := deliver(t, ordered, inOrder, 1, 0, rng)
	t.Logf("ordered run: %d deliveries", n)
	n, _ = deliver(t, shuffled, shuffle(rng), 2, 0, rng)
	t.Logf("shuffled run: %d deliveries", n)
	sameState(t, ordered, shuffled)
	pool := open(t, ordered)
	pending := testenv.Count(t, pool, `SELECT count(*) FROM orders WHERE status = 'pending'`)
	statuses := rowsOf(t, ordered, `SELECT status, count(*)::text, '', '' FROM orders GROUP BY status ORDER BY status`)
	t.Logf("final statuses: %v", statuses)
	if pending != 0 || len(statuses) != 3 { // cancelled, confirmed, rejected
		t.Fatalf("final statuses %v: want no pending order and all of cancelled, confirmed, rejected", statuses)
	}
}

// TestBatchesEndTheSameAsOneAtATime applies the events of a 500-order
// shop one at a time, and on a copy in batches of up to 16 deliveries of a
// group (what CONSUMER_BATCH does, with the prefetches of orders and
// inventory): in commit order they cause the same events and end in the
// same state; delivered twice, in random order, they end in the same state.
// Every batch commits: none falls back to one delivery at a time.
func TestBatchesEndTheSameAsOneAtATime(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		shuffle bool
		copies  int
	}{
		{"in commit order", false, 1},
		{"twice, shuffled", true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rng := testenv.Rand(t)
			pick := inOrder
			if tc.shuffle {
				pick = shuffle(rng)
			}
			one := testenv.DatabaseURL(t)
			writeShop(t, one)
			batched := copyDatabase(t, one)
			_, want := deliver(t, one, inOrder, 1, 0, rng)
			n, got := deliver(t, batched, pick, tc.copies, 16, rng)
			t.Logf("%d deliveries in batches", n)
			sameState(t, one, batched)
			t.Logf("events: %d vs %d", len(want), len(got))
			if tc.copies == 1 {
				if a, b := eventsOf(want), eventsOf(got); !slices.Equal(a, b) {
					t.Errorf("events differ: one at a time %d, in batches %d; first difference: %s", len(a), len(b), firstDifference(a, b))
				}
			}
		})
	}
}

func inOrder(pending []delivery) (now, later []delivery) {
	return pending, nil // everything, in commit order
}

// shuffle applies some of the pending deliveries, in random order, and
// holds the rest back.
func shuffle(rng *rand.Rand) func([]delivery) (now, later []delivery) {
	return func(pending []delivery) ([]delivery, []delivery) {
		rng.Shuffle(len(pending), func(i, j int) { pending[i], pending[j] = pending[j], pending[i] })
		n := 1 + rng.IntN(len(pending))
		return pending[:n], pending[n:]
	}
}

// sameState fails t unless the two databases hold the same orders, stock,
// emails and reservations.
func sameState(t *testing.T, a, b string) {
	t.Helper()
	for _, q := range []struct{ what, sql string }{
		{"orders", `SELECT id::text, status, version::text, total_cents::text FROM orders ORDER BY id`},
		{"stock", `SELECT id::text, stock::text, '', '' FROM products ORDER BY id`},
		{"emails", `SELECT kind, recipient, subject, transport FROM emails ORDER BY kind, recipient, subject`},
		{"units held", `SELECT order_id::text, lines::text, '', '' FROM reservations WHERE status = 'reserved' ORDER BY order_id`},
	} {
		x, y := rowsOf(t, a, q.sql), rowsOf(t, b, q.sql)
		if !slices.Equal(x, y) {
			t.Errorf("%s differ: %d rows against %d; first difference: %s", q.what, len(x), len(y), firstDifference(x, y))
		}
	}
}

// eventsOf describes events by what does not change from run to run: type,
// aggregate, version and data, in order.
func eventsOf(events []outbox.Envelope) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = fmt.Sprintf("%s %s v%d %s", e.Type, e.AggregateID, e.AggregateVersion, e.Data)
	}
	return out
}

// writeShop registers users, adds products (one of them sold out), places
// 500 orders and cancels some, through the application's commands.
func writeShop(t *testing.T, dbURL string) {
	t.Helper()
	pool, err := store.Open(context.Background(), store.Config{DatabaseURL: dbURL, MaxConns: 2})
	testenv.Must(t, err, "open pool")
	defer pool.Close() // the database is copied next: no connection may stay
	uow := store.NewUnitOfWork(pool, nil)
	ctx, now := context.Background(), time.Now()
	do := func(what string, fn func(ctx context.Context, tx *store.Tx) error) {
		t.Helper()
		testenv.Must(t, uow.Do(ctx, fn), what)
	}
	users := make([]uuid.UUID, 10)
	for i := range users {
		do("register", func(ctx context.Context, tx *store.Tx) error {
			u, err := app.Register(ctx, tx, app.RegisterUser{Email: fmt.Sprintf("u%d@shop.test", i), Name: "U",
				PasswordHash: "x", Role: user.RoleCustomer}, now)
			users[i] = u.ID()
			return err
		})
	}
	products := make([]uuid.UUID, 21)
	for i := range products {
		stock := int64(10_000)
		if i == 0 {
			stock = 0 // every order with this product is rejected, whatever the order of events
		}
		do("add product", func(ctx context.Context, tx *store.Tx) error {
			p, err := app.AddProduct(ctx, tx, app.Operator, app.CreateProduct{SKU: fmt.Sprintf("P-%d", i), Name: "P", PriceCents: int64(100 + i), Stock: stock}, now)
			products[i] = p.ID()
			return err
		})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 500 { // thousands of deliveries to shuffle (1,000 orders made this make test's longest test)
		actor := app.Actor{UserID: users[i%len(users)], Role: user.RoleCustomer}
		first := 1 + rng.IntN(len(products)-1)
		if i%10 == 0 {
			first = 0
		}
		items := []order.Item{{ProductID: products[first], Quantity: 1 + rng.Int64N(3)}}
		for _, p := range rng.Perm(len(products))[:rng.IntN(3)] {
			if p != first {
				items = append(items, order.Item{ProductID: products[p], Quantity: 1 + rng.Int64N(3)})
			}
		}
		var id uuid.UUID
		do("place order", func(ctx context.Context, tx *store.Tx) error {
			o, err := app.PlaceOrder(ctx, tx, actor, items, now)
			if err == nil {
				id = o.ID()
			}
			return err
		})
		if i%7 == 3 {
			do("cancel order", func(ctx context.Context, tx *store.Tx) error {
				_, err := app.CancelOrder(ctx, tx, actor, id, now)
				return err
			})
		}
	}
}

type delivery struct {
	group *consumer.Runner
	env   outbox.Envelope
}

// deliver runs the consumer groups over the outbox until it is empty and
// nothing is held back: each event goes copies times to each group that is
// bound to its type, in the order pick chooses; one at a time, or, when
// batch is over 1, in batches of 1 to batch deliveries of a group. It
// returns the number of deliveries and the events taken from the outbox, in
// commit order, and fails t unless each (group, event) was applied exactly
// once, and every batch committed.
func deliver(t *testing.T, dbURL string, pick func([]delivery) (now, later []delivery), copies, batch int, rng *rand.Rand) (int, []outbox.Envelope) {
	t.Helper()
	pool := open(t, dbURL)
	uow := store.NewUnitOfWork(pool, nil)
	contract := testenv.EventContract(t)
	byKey := map[string][]*consumer.Runner{}
	for _, g := range handlers.Groups(handlers.Deps{Now: time.Now, Mailer: mailer.Log{Logger: quiet}}) {
		if !g.InPostgres() {
			continue // the projections: their own test (package projections)
		}
		r := newRunner(t, g, uow, batch)
		for _, k := range g.Keys {
			byKey[k] = append(byKey[k], r)
		}
	}
	type key struct {
		g  *consumer.Runner
		id uuid.UUID
	}
	applied := map[key]int{}
	var pending []delivery
	var taken []outbox.Envelope
	total := 0
	for {
		out := takeOutbox(t, pool)
		testenv.CheckEnvelopes(t, contract, out...) // what the relay would publish
		taken = append(taken, out...)
		for _, env := range out {
			for _, g := range byKey[env.Type] {
				for range copies {
					pending = append(pending, delivery{g, env})
				}
			}
		}
		if len(pending) == 0 {
			break
		}
		var now []delivery
		now, pending = pick(pending)
		pending = slices.Clone(pending)
		total += len(now)
		if batch <= 1 {
			for _, d := range now {
				ok, err := d.group.Apply(context.Background(), d.env)
				testenv.Must(t, err, "apply "+d.env.Type)
				if ok {
					applied[key{d.group, d.env.ID}]++
				}
			}
			continue
		}
		// Each group's deliveries, in the order picked, in batches.
		byGroup := map[*consumer.Runner][]outbox.Envelope{}
		var groups []*consumer.Runner
		for _, d := range now {
			if byGroup[d.group] == nil {
				groups = append(groups, d.group)
			}
			byGroup[d.group] = append(byGroup[d.group], d.env)
		}
		for _, g := range groups {
			envs := byGroup[g]
			for len(envs) > 0 {
				n := min(len(envs), 1+rng.IntN(batch))
				ok, committed := g.ApplyBatch(context.Background(), envs[:n])
				if !committed {
					t.Fatalf("a batch of %d events from %s %s did not commit", n, envs[0].Type, envs[0].ID)
				}
				for i, env := range envs[:n] {
					if ok[i] {
						applied[key{g, env.ID}]++
					}
				}
				envs = envs[n:]
			}
		}
	}
	for k, n := range applied {
		if n != 1 {
			t.Errorf("event %s applied %d times by one group", k.id, n)
		}
	}
	return total, taken
}

// takeOutbox removes and returns every outbox row, in commit order.
func takeOutbox(t testing.TB, pool *pgxpool.Pool) []outbox.Envelope {
	t.Helper()
	rows, err := pool.Query(context.Background(), `DELETE FROM outbox WHERE id IN (SELECT id FROM outbox) RETURNING id, payload::text`)
	testenv.Must(t, err, "take outbox")
	type row struct {
		id      int64
		payload string
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.id, &x.payload)
	})
	testenv.Must(t, err, "take outbox")
	slices.SortFunc(list, func(a, b row) int { return int(a.id - b.id) })
	out := make([]outbox.Envelope, len(list))
	for i, x := range list {
		testenv.Must(t, json.Unmarshal([]byte(x.payload), &out[i]), "decode outbox row")
	}
	return out
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newRunner returns a runner of g on uow, with batches of up to batch
// deliveries, fed by the tests (Apply, ApplyBatch) rather than RabbitMQ.
func newRunner(t testing.TB, g consumer.Group, uow *store.UnitOfWork, batch int) *consumer.Runner {
	t.Helper()
	broker, err := outbox.NewBroker(outbox.BrokerConfig{URL: "amqp://unused/", Topology: handlers.Topology(), Logger: quiet})
	testenv.Must(t, err, "broker")
	r, err := consumer.New(consumer.Config{Group: g, Broker: broker, UnitOfWork: uow, Logger: quiet, Batch: batch})
	testenv.Must(t, err, "runner of "+g.Name)
	return r
}

func open(t *testing.T, dbURL string) *pgxpool.Pool {
	t.Helper()
	pool, err := store.Open(context.Background(), store.Config{DatabaseURL: dbURL, MaxConns: 4})
	testenv.Must(t, err, "open pool")
	t.Cleanup(pool.Close)
	return pool
}

// copyDatabase creates a copy of the database at dbURL (which must have no
// open connections) and returns its URL; it is dropped when t ends.
func copyDatabase(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	testenv.Must(t, err, "parse database url")
	src := u.Path[1:]
	dst := src + "_copy"
	conn, err := pgx.Connect(context.Background(), testenv.ServerURL())
	testenv.Must(t, err, "connect")
	defer conn.Close(context.Background())
	_, err = conn.Exec(context.Background(), fmt.Sprintf(`CREATE DATABASE %s TEMPLATE %s`,
		pgx.Identifier{dst}.Sanitize(), pgx.Identifier{src}.Sanitize()))
	testenv.Must(t, err, "copy database")
	u.Path = "/" + dst
	t.Cleanup(func() {
		if err := store.DropDatabase(context.Background(), u.String()); err != nil {
			t.Errorf("drop copy: %v", err)
		}
	})
	return u.String()
}

func rowsOf(t *testing.T, dbURL, sql string) []string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	testenv.Must(t, err, "connect")
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), sql)
	testenv.Must(t, err, sql)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var a, b, c, d string
		err := r.Scan(&a, &b, &c, &d)
		return a + "|" + b + "|" + c + "|" + d, err
	})
	testenv.Must(t, err, sql)
	return out
}

func firstDifference(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("%q vs %q", a[i], b[i])
		}
	}
	return "one is a prefix of the other"
}
