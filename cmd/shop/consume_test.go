package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/handlers"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/projections"
	"github.com/shopdev/shop/store"
)

// system is a migrated database, a vhost, and the write side in-process;
// the relay and the consumers run as real processes.
type system struct {
	env    map[string]string
	pool   *pgxpool.Pool
	uow    *store.UnitOfWork
	models *projections.Store
	events *testenv.Tap // checks every event published on the vhost against api/asyncapi.yaml
}

func newSystem(t *testing.T) *system {
	t.Helper()
	return newSystemOn(t, testenv.RedisAddr())
}

// newSystemOn is newSystem with the read models on the Redis at redisAddr.
func newSystemOn(t *testing.T, redisAddr string) *system {
	t.Helper()
	dbURL, amqpURL := freshDatabaseURL(t), testenv.AMQPURL(t)
	events := testenv.ValidateEvents(t, amqpURL)
	env := map[string]string{
		"DATABASE_URL": dbURL, "AMQP_URL": amqpURL, "METRICS_ADDR": "127.0.0.1:0",
		"LOG_LEVEL": "error", "CONSUMER_CONCURRENCY": "4",
		// Few connections: many such systems run at once, and Postgres
		// allows 100 connections in all.
		"CONSUMER_BATCH": "4", "DB_MAX_CONNS": "4",
		"REDIS_PREFIX": "shop_test_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12] + ":",
		"REDIS_URL":    "redis://" + redisAddr + "/0",
	}
	if _, stderr, code := shop(t, env, "migrate"); code != 0 {
		t.Fatalf("migrate: %s", stderr)
	}
	// The harness's pool (the notifier's connection, four buyers of
	// streamOrders, the checks), and room for the processes a test starts
	// on this system: `shop run`, at the settings above, may open 27.
	pgConns.reserve(t, 8+27)
	pgConns.take(t, 8)
	pool, err := store.Open(context.Background(), store.Config{DatabaseURL: dbURL, MaxConns: 8})
	testenv.Must(t, err, "pool")
	t.Cleanup(pool.Close)
	// Every committed event is kept, to check what each group applied.
	_, err = pool.Exec(context.Background(), `
		CREATE TABLE committed (event_id uuid PRIMARY KEY, routing_key text NOT NULL, payload jsonb NOT NULL);
		CREATE FUNCTION remember_event() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO committed VALUES (NEW.event_id, NEW.routing_key, NEW.payload); RETURN NEW; END $$;
		CREATE TRIGGER remember AFTER INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION remember_event();`)
	testenv.Must(t, err, "record commits")
	notifier := outbox.NewNotifier(pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
	testenv.Run(t, notifier.Run)
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	t.Cleanup(func() {
		iter := rdb.Scan(context.Background(), 0, env["REDIS_PREFIX"]+"*", 1000).Iterator()
		for iter.Next(context.Background()) {
			rdb.Del(context.Background(), iter.Val())
		}
		_ = rdb.Close()
	})
	models, err := projections.New(projections.Config{Client: rdb, Prefix: env["REDIS_PREFIX"]})
	testenv.Must(t, err, "projections")
	return &system{env: env, pool: pool, uow: store.NewUnitOfWork(pool, notifier), models: models, events: events}
}

// waitRedisMatches waits until every order and product in Redis equals
// Postgres, field by field: an order's owner, status, version, total and
// lines (product, SKU, name, quantity, unit price, in order); a product's
// SKU, name, price, stock and version.
func (s *system) waitRedisMatches(t *testing.T, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		ctx := context.Background()
		rows, err := s.pool.Query(ctx, `SELECT o.id, o.user_id, o.status, o.version, o.total_cents,
			coalesce((SELECT jsonb_agg(jsonb_build_object('product_id', i.product_id, 'sku', i.sku, 'name', i.name,
				'quantity', i.quantity, 'unit_price_cents', i.unit_price_cents) ORDER BY i.line)
				FROM order_items i WHERE i.order_id = o.id), '[]')::text
			FROM orders o`)
		if err != nil {
			return err
		}
		type ord struct {
			ID      uuid.UUID
			UserID  uuid.UUID
			Status  string
			Version int64
			Total   int64
			Lines   string
		}
		orders, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ord])
		if err != nil {
			return err
		}
		for _, o := range orders {
			m, found, err := s.models.Order(ctx, o.ID)
			if err != nil {
				return err
			}
			var lines []order.Line
			if err := json.Unmarshal([]byte(o.Lines), &lines); err != nil {
				return err
			}
			if !found || m.UserID != o.UserID || string(m.Status) != o.Status || m.Version != o.Version || m.TotalCents != o.Total ||
				!slices.Equal(m.Items, lines) {
				return fmt.Errorf("order %s: redis %+v (found %v), postgres %+v", o.ID, m, found, o)
			}
		}
		rows, err = s.pool.Query(ctx, `SELECT id, sku, name, price_cents, stock, version FROM products`)
		if err != nil {
			return err
		}
		type prod struct {
			ID      uuid.UUID
			SKU     string
			Name    string
			Price   int64
			Stock   int64
			Version int64
		}
		products, err := pgx.CollectRows(rows, pgx.RowToStructByPos[prod])
		if err != nil {
			return err
		}
		for _, p := range products {
			m, found, err := s.models.Product(ctx, p.ID)
			if err != nil {
				return err
			}
			if !found || m.SKU != p.SKU || m.Name != p.Name || m.PriceCents != p.Price || m.StockAvailable != p.Stock || m.Version != p.Version {
				return fmt.Errorf("product %s: redis %+v (found %v), postgres %+v", p.ID, m, found, p)
			}
		}
		return nil
	})
}

func (s *system) do(t *testing.T, what string, fn func(ctx context.Context, tx *store.Tx) error) {
	t.Helper()
	testenv.Must(t, s.uow.Do(context.Background(), fn), what)
}

func (s *system) register(t *testing.T, email string) uuid.UUID {
	t.Helper()
	var id uuid.UUID
	s.do(t, "register", func(ctx context.Context, tx *store.Tx) error {
		u, err := app.Register(ctx, tx, app.RegisterUser{Email: email, Name: "Buyer", PasswordHash: "x", Role: user.RoleCustomer}, time.Now())
		if err == nil {
			id = u.ID()
		}
		return err
	})
	return id
}

func (s *system) product(t *testing.T, sku string, stock int64) uuid.UUID {
	t.Helper()
	var id uuid.UUID
	s.do(t, "add product", func(ctx context.Context, tx *store.Tx) error {
		p, err := app.AddProduct(ctx, tx, app.Operator, app.CreateProduct{SKU: sku, Name: sku, PriceCents: 250, Stock: stock}, time.Now())
		if err == nil {
			id = p.ID()
		}
		return err
	})
	return id
}

// place places an order; safe to call from any goroutine (it returns the
// error instead of failing the test).
func (s *system) place(customer uuid.UUID, items ...order.Item) (uuid.UUID, error) {
	var id uuid.UUID
	err := s.uow.Do(context.Background(), func(ctx context.Context, tx *store.Tx) error {
		o, err := app.PlaceOrder(ctx, tx, app.Actor{UserID: customer, Role: user.RoleCustomer}, items, time.Now())
		if err == nil {
			id = o.ID()
		}
		return err
	})
	return id, err
}

func (s *system) mustPlace(t *testing.T, customer uuid.UUID, items ...order.Item) uuid.UUID {
	t.Helper()
	id, err := s.place(customer, items...)
	testenv.Must(t, err, "place order")
	return id
}

// cancel cancels an order, retrying when a consumer changed it at the same
// moment; an order that was rejected first cannot be cancelled, which is
// not an error here.
func (s *system) cancel(customer, id uuid.UUID) error {
	_, err := s.tryCancel(customer, id)
	return err
}

// tryCancel is cancel that reports whether the order was cancelled (false:
// it was rejected first). Safe to call from any goroutine.
func (s *system) tryCancel(customer, id uuid.UUID) (bool, error) {
	for {
		err := s.uow.Do(context.Background(), func(ctx context.Context, tx *store.Tx) error {
			_, err := app.CancelOrder(ctx, tx, app.Actor{UserID: customer, Role: user.RoleCustomer}, id, time.Now())
			return err
		})
		switch {
		case errors.Is(err, store.ErrConcurrentUpdate):
			continue
		case errors.Is(err, order.ErrNotCancellable):
			return false, nil
		case err != nil:
			return false, fmt.Errorf("cancel order %s: %w", id, err)
		}
		return true, nil
	}
}

func (s *system) status(t *testing.T, id uuid.UUID) string {
	t.Helper()
	var st string
	testenv.Must(t, s.pool.QueryRow(context.Background(), `SELECT status FROM orders WHERE id = $1`, id).Scan(&st), "order status")
	return st
}

func (s *system) stock(t *testing.T, id uuid.UUID) int64 {
	t.Helper()
	var n int64
	testenv.Must(t, s.pool.QueryRow(context.Background(), `SELECT stock FROM products WHERE id = $1`, id).Scan(&n), "stock")
	return n
}

func (s *system) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	return testenv.Count(t, s.pool, sql, args...)
}

// waitQuiet waits until no order is pending and every committed event has
// been applied by each of the groups bound to it. It fails when that
// backlog has not shrunk for stall: a slow machine drains slowly, a stuck
// system not at all, and how fast it drains is for the benchmarks to say.
func (s *system) waitQuiet(t *testing.T, stall time.Duration, groups ...string) {
	t.Helper()
	backlog := func() (int, string) {
		pending := s.count(t, `SELECT count(*) FROM orders WHERE status = 'pending'`)
		total, what := pending, fmt.Sprintf("%d orders pending", pending)
		for _, g := range handlers.Topology() {
			if !slices.Contains(groups, g.Group) {
				continue
			}
			n := s.count(t, `SELECT count(*) FROM committed c WHERE routing_key = ANY($1)
				AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.consumer = $2 AND i.event_id = c.event_id)`, g.Keys, g.Group)
			total += n
			what += fmt.Sprintf(", %s has %d events to apply", g.Group, n)
		}
		return total, what
	}
	least, progressed := -1, time.Now()
	for {
		n, what := backlog()
		if n == 0 {
			return
		}
		if least < 0 || n < least {
			least, progressed = n, time.Now()
		}
		if time.Since(progressed) > stall {
			t.Fatalf("no progress for %s: %s", stall, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkConverged asserts what must hold once the system is quiet: one inbox
// row per (group, event) and no other for each of the groups, one email per
// emailing event; no order pending, and inventory agreeing with every order:
// a confirmed order holds its reservation, a rejected one holds nothing, a
// cancelled one holds nothing (its reservation released if it had been
// reserved), and every reservation still holding stock is a confirmed
// order's; and stock that adds up: what a product has plus what confirmed
// orders hold is what it started with.
func (s *system) checkConverged(t *testing.T, initial map[uuid.UUID]int64, groups ...string) {
	t.Helper()
	for _, g := range handlers.Topology() {
		if !slices.Contains(groups, g.Group) {
			continue
		}
		routed := s.count(t, `SELECT count(*) FROM committed WHERE routing_key = ANY($1)`, g.Keys)
		if got := s.count(t, `SELECT count(*) FROM inbox WHERE consumer = $1`, g.Group); got != routed {
			t.Errorf("%s: %d inbox rows for %d events", g.Group, got, routed)
		}
		if g.Group == "emails" {
			if got := s.count(t, `SELECT count(*) FROM emails e JOIN committed c USING (event_id)`); got != routed {
				t.Errorf("%d emails recorded for %d emailing events", got, routed)
			}
		}
	}

	type decision struct {
		Order       uuid.UUID
		Status      string // the order's
		Reservation string // inventory's, "none" when it has no row
		WasReserved bool   // inventory reserved stock for it at some point
	}
	rows, err := s.pool.Query(context.Background(), `SELECT o.id, o.status, coalesce(r.status, 'none'),
		EXISTS (SELECT 1 FROM committed c WHERE c.routing_key = 'stock.reserved' AND c.payload->'data'->>'order_id' = o.id::text)
		FROM orders o LEFT JOIN reservations r ON r.order_id = o.id`)
	testenv.Must(t, err, "orders and reservations")
	decisions, err := pgx.CollectRows(rows, pgx.RowToStructByPos[decision])
	testenv.Must(t, err, "orders and reservations")
	wrong := 0
	for _, d := range decisions {
		var want []string
		switch {
		case d.Status == "confirmed":
			want = []string{"reserved"}
		case d.Status == "rejected":
			want = []string{"rejected"}
		case d.Status == "cancelled" && d.WasReserved:
			want = []string{"released"}
		case d.Status == "cancelled":
			want = []string{"cancelled", "rejected"} // cancelled before inventory saw it placed, or rejected first
		default:
			want = nil // pending: never right once quiet
		}
		if !slices.Contains(want, d.Reservation) {
			if wrong++; wrong <= 5 {
				t.Errorf("order %s is %s and its reservation %s (reserved at some point: %v); want the reservation one of %v",
					d.Order, d.Status, d.Reservation, d.WasReserved, want)
			}
		}
	}
	if wrong > 5 {
		t.Errorf("... and %d more orders that inventory disagrees with", wrong-5)
	}
	if n := s.count(t, `SELECT count(*) FROM reservations r LEFT JOIN orders o ON o.id = r.order_id
		WHERE r.status = 'reserved' AND o.status IS DISTINCT FROM 'confirmed'`); n > 0 {
		t.Errorf("%d reservations hold stock for an order that is not confirmed", n)
	}

	rows, err = s.pool.Query(context.Background(), `SELECT r.lines::text FROM reservations r JOIN orders o ON o.id = r.order_id
		WHERE r.status = 'reserved' AND o.status = 'confirmed'`)
	testenv.Must(t, err, "reservations")
	held := map[uuid.UUID]int64{}
	all, err := pgx.CollectRows(rows, pgx.RowTo[string])
	testenv.Must(t, err, "reservations")
	for _, text := range all {
		var lines []struct {
			ProductID uuid.UUID `json:"product_id"`
			Quantity  int64     `json:"quantity"`
		}
		testenv.Must(t, json.Unmarshal([]byte(text), &lines), "reservation lines")
		for _, l := range lines {
			held[l.ProductID] += l.Quantity
		}
	}
	for id, start := range initial {
		if got := s.stock(t, id) + held[id]; got != start {
			t.Errorf("product %s: stock %d + held by confirmed orders %d = %d, want %d", id, s.stock(t, id), held[id], got, start)
		}
	}
}

// catalogue adds five products named after sku, the first with 40 in
// stock (contended: some orders are rejected), the others 100,000, and
// returns each one's initial stock.
func (s *system) catalogue(t *testing.T, sku string) map[uuid.UUID]int64 {
	t.Helper()
	initial := map[uuid.UUID]int64{}
	for i := range 5 {
		stock := int64(100_000)
		if i == 0 {
			stock = 40
		}
		initial[s.product(t, fmt.Sprintf("%s-%d", sku, i), stock)] = stock
	}
	return initial
}

// streamOrders registers four buyers (named after name) who each place an
// order of 1 to 3 units of one of the products every pace, a stream and
// not a burst, and cancel every fifth at once (racing inventory's
// decision), until the returned stop is called (or t ends); stop waits for
// them. seed picks the products and quantities.
func (s *system) streamOrders(t *testing.T, name string, products map[uuid.UUID]int64, seed uint64, pace time.Duration) (stop func()) {
	t.Helper()
	ids := slices.SortedFunc(maps.Keys(products), func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) }) // the same order for a seed
	var wg sync.WaitGroup
	done := make(chan struct{})
	var once sync.Once
	stop = func() { once.Do(func() { close(done) }); wg.Wait() }
	t.Cleanup(stop)
	for w := range 4 {
		buyer := s.register(t, fmt.Sprintf("%s%d@shop.test", name, w))
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			tick := time.NewTicker(pace)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				id, err := s.place(buyer, order.Item{ProductID: ids[rng.IntN(len(ids))], Quantity: 1 + rng.Int64N(3)})
				if err == nil && i%5 == 4 {
					err = s.cancel(buyer, id)
				}
				if err != nil {
					t.Errorf("stream: %v", err)
					return
				}
			}
		})
	}
	return stop
}

// TestOrderFlowThroughProcesses runs the relay and the three groups as real
// processes: an order within stock is confirmed, one beyond it rejected, a
// cancelled one gives its stock back; each email is recorded once; and the
// correlation id of the placing command flows through every event.
func TestOrderFlowThroughProcesses(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	startProcess(t, s.env, "relay")
	startProcess(t, s.env, "consume", "orders", "inventory", "emails", "projections")

	buyer := s.register(t, "flow@shop.test")
	a, b := s.product(t, "FLOW-A", 5), s.product(t, "FLOW-B", 1)
	fits := s.mustPlace(t, buyer, order.Item{ProductID: a, Quantity: 2})
	beyond := s.mustPlace(t, buyer, order.Item{ProductID: a, Quantity: 1}, order.Item{ProductID: b, Quantity: 2})
	later := s.mustPlace(t, buyer, order.Item{ProductID: a, Quantity: 3})
	testenv.Eventually(t, 30*time.Second, func() error {
		for id, want := range map[uuid.UUID]string{fits: "confirmed", beyond: "rejected", later: "confirmed"} {
			if got := s.status(t, id); got != want {
				return fmt.Errorf("order %s is %s, want %s", id, got, want)
			}
		}
		return nil
	})
	if sa, sb := s.stock(t, a), s.stock(t, b); sa != 0 || sb != 1 {
		t.Fatalf("stock after reserving = %d, %d; want 0 (5-2-3) and 1 (the rejected order took nothing)", sa, sb)
	}
	testenv.Must(t, s.cancel(buyer, later), "cancel")
	testenv.Eventually(t, 30*time.Second, func() error {
		if got := s.stock(t, a); got != 3 {
			return fmt.Errorf("stock of A = %d, want 3 after the cancel", got)
		}
		return nil
	})
	all := []string{"orders", "inventory", "emails"}
	s.waitQuiet(t, 30*time.Second, all...)
	if got := s.status(t, later); got != "cancelled" {
		t.Fatalf("cancelled order is %s", got)
	}
	for kind, want := range map[string]int{"welcome": 1, "order_confirmed": 2, "order_rejected": 1, "order_cancelled": 1} {
		if got := s.count(t, `SELECT count(*) FROM emails WHERE kind = $1 AND recipient = 'flow@shop.test'`, kind); got != want {
			t.Errorf("%d %s emails, want %d", got, kind, want)
		}
	}
	if reason := s.count(t, `SELECT count(*) FROM emails WHERE kind = 'order_rejected' AND body LIKE '%FLOW-B: 2 wanted, 1 available%'`); reason != 1 {
		t.Errorf("the rejection email does not say why")
	}
	s.checkConverged(t, map[uuid.UUID]int64{a: 5, b: 1}, all...)
	s.waitRedisMatches(t, 30*time.Second)
	// Every event of the flow went through shop.events, and each was
	// checked against api/asyncapi.yaml (product.updated is not part of it).
	s.events.WaitSeen(t, 10*time.Second, "user.registered", "product.created", "order.placed", "stock.reserved",
		"stock.rejected", "stock.changed", "order.confirmed", "order.rejected", "order.cancelled", "stock.released")

	// Correlation: order.placed → stock.reserved → order.confirmed share the
	// correlation id; each names its cause.
	type link struct{ ID, Type, CorrelationID, CausationID string }
	rows, err := s.pool.Query(context.Background(), `SELECT payload->>'id', routing_key, payload->>'correlation_id', payload->>'causation_id'
		FROM committed WHERE payload->>'aggregate_id' = $1 ORDER BY routing_key`, fits.String())
	testenv.Must(t, err, "events of the order")
	chain, err := pgx.CollectRows(rows, pgx.RowToStructByPos[link])
	testenv.Must(t, err, "events of the order")
	byType := map[string]link{}
	for _, l := range chain {
		byType[l.Type] = l
	}
	placed, reserved, confirmed := byType["order.placed"], byType["stock.reserved"], byType["order.confirmed"]
	if placed.ID == "" || reserved.ID == "" || confirmed.ID == "" {
		t.Fatalf("events of order %s: %+v", fits, chain)
	}
	if reserved.CorrelationID != placed.CorrelationID || confirmed.CorrelationID != placed.CorrelationID {
		t.Errorf("correlation ids %q, %q, %q: want all the placing command's", placed.CorrelationID, reserved.CorrelationID, confirmed.CorrelationID)
	}
	if reserved.CausationID != placed.ID || confirmed.CausationID != reserved.ID {
		t.Errorf("causation: stock.reserved caused by %s (want %s), order.confirmed by %s (want %s)",
			reserved.CausationID, placed.ID, confirmed.CausationID, reserved.ID)
	}
}

// TestInventoryReplicasNeverOversell races 200 orders of one unit against a
// product with 50, through three inventory processes.
func TestInventoryReplicasNeverOversell(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	pgConns.reserve(t, 6) // a relay and four consumers: 33 connections, 6 beyond newSystem's
	startProcess(t, s.env, "relay")
	for range 3 {
		startProcess(t, s.env, "consume", "inventory")
	}
	startProcess(t, s.env, "consume", "orders")

	scarce := s.product(t, "SCARCE", 50)
	buyers := make([]uuid.UUID, 20)
	for i := range buyers {
		buyers[i] = s.register(t, fmt.Sprintf("racer%d@shop.test", i))
	}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			if _, err := s.place(buyers[i%len(buyers)], order.Item{ProductID: scarce, Quantity: 1}); err != nil {
				t.Errorf("place: %v", err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	s.waitQuiet(t, 60*time.Second, "orders", "inventory")
	confirmed := s.count(t, `SELECT count(*) FROM orders WHERE status = 'confirmed'`)
	rejected := s.count(t, `SELECT count(*) FROM orders WHERE status = 'rejected'`)
	if confirmed != 50 || rejected != 150 || s.stock(t, scarce) != 0 {
		t.Fatalf("confirmed %d, rejected %d, stock %d; want 50, 150, 0", confirmed, rejected, s.stock(t, scarce))
	}
	s.checkConverged(t, map[uuid.UUID]int64{scarce: 50}, "orders", "inventory")
}

// TestCancelsRacingReservationsGiveStockBack cancels a third of the orders
// as soon as they are placed: first while inventory is not running (every
// cancel lands before inventory decides), then while it runs (cancels race
// the reservations and the confirmations). Once quiet, every cancelled
// order is cancelled and holds nothing, its buyer got one cancellation
// email, and the stock adds up.
func TestCancelsRacingReservationsGiveStockBack(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	startProcess(t, s.env, "relay")
	startProcess(t, s.env, "consume", "orders", "emails")

	initial := map[uuid.UUID]int64{}
	products := []uuid.UUID{s.product(t, "RACE-SCARCE", 40), s.product(t, "RACE-PLENTY", 100_000)}
	initial[products[0]], initial[products[1]] = 40, 100_000
	buyers := make([]uuid.UUID, 6)
	for i := range buyers {
		buyers[i] = s.register(t, fmt.Sprintf("canceller%d@shop.test", i))
	}
	var mu sync.Mutex
	var cancelled []uuid.UUID
	// placeAndCancel places n orders at once and cancels every third right
	// after it is placed.
	placeAndCancel := func(n int) {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				buyer := buyers[i%len(buyers)]
				id, err := s.place(buyer, order.Item{ProductID: products[i%len(products)], Quantity: 1 + int64(i%3)})
				if err != nil {
					t.Errorf("place: %v", err)
					return
				}
				if i%3 != 0 {
					return
				}
				ok, err := s.tryCancel(buyer, id)
				if err != nil {
					t.Errorf("cancel: %v", err)
				}
				if ok {
					mu.Lock()
					cancelled = append(cancelled, id)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	placeAndCancel(30)
	if t.Failed() {
		t.FailNow()
	}
	if len(cancelled) != 10 {
		t.Fatalf("%d of 10 orders cancelled before inventory ran", len(cancelled))
	}
	startProcess(t, s.env, "consume", "inventory")
	placeAndCancel(150)
	if t.Failed() {
		t.FailNow()
	}

	all := []string{"orders", "inventory", "emails"}
	s.waitQuiet(t, 90*time.Second, all...)
	released := 0
	for _, id := range cancelled {
		if st := s.status(t, id); st != "cancelled" {
			t.Errorf("cancelled order %s is %s", id, st)
		}
		if n := s.count(t, `SELECT count(*) FROM emails e JOIN committed c USING (event_id)
			WHERE e.kind = 'order_cancelled' AND c.payload->'data'->>'order_id' = $1`, id.String()); n != 1 {
			t.Errorf("cancelled order %s: %d cancellation emails, want 1", id, n)
		}
		released += s.count(t, `SELECT count(*) FROM reservations WHERE order_id = $1 AND status = 'released'`, id)
	}
	t.Logf("%d orders cancelled, %d of them after inventory had reserved their stock", len(cancelled), released)
	s.checkConverged(t, initial, all...)
}

// TestConsumersKilledMidStreamConverge SIGKILLs the process of each consumer
// group in turn, several rounds, each time once the process is busy (it has
// handled deliveries since it started), while orders stream in and a share
// of them is cancelled at once; each is restarted. Afterwards every order
// has left pending, each group applied each event once, each email is
// recorded once, the stock adds up and Redis equals Postgres.
func TestConsumersKilledMidStreamConverge(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	startProcess(t, s.env, "relay")
	env := maps.Clone(s.env)
	env["LOG_LEVEL"] = "info" // startServing reads the "listening" line
	type proc struct {
		cmd  *exec.Cmd
		addr string // of its /metrics
	}
	start := func(group string) proc {
		cmd, addr := startServing(t, env, "consume", group)
		return proc{cmd, addr}
	}
	groups := []string{"orders", "inventory", "emails", "projections"}
	procs := map[string]proc{}
	for _, g := range groups {
		procs[g] = start(g)
	}

	initial := s.catalogue(t, "KILL")
	stop := s.streamOrders(t, "killed", initial, 0, 40*time.Millisecond)
	const rounds = 2
	for range rounds {
		for _, g := range groups {
			p := procs[g]
			testenv.Eventually(t, 60*time.Second, func() error {
				n, err := metricTotal(p.addr, "shop_consumer_messages_total") // any outcome
				if err != nil {
					return err
				}
				if n == 0 {
					return fmt.Errorf("the %s process has handled nothing since it started", g)
				}
				return nil
			})
			kill(t, p.cmd)
			procs[g] = start(g)
		}
	}
	stop()
	t.Logf("each of %v SIGKILLed %d times while busy, during %d orders", groups, rounds, s.count(t, `SELECT count(*) FROM orders`))
	s.waitQuiet(t, 90*time.Second, groups[:3]...) // projections keep no inbox
	s.checkConverged(t, initial, groups[:3]...)
	s.waitRedisMatches(t, 60*time.Second)
}

// TestDeadListAndReplayCommands: a malformed message ends in the dead queue
// of a consumer process, which goes on; `shop dead list` shows it with its
// reason, `shop dead replay` moves it back (it fails again: still malformed).
func TestDeadListAndReplayCommands(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	startProcess(t, s.env, "consume", "inventory")
	conn, err := amqp.Dial(s.env["AMQP_URL"])
	testenv.Must(t, err, "dial")
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	testenv.Must(t, err, "channel")
	testenv.Must(t, handlers.Topology().Declare(ch), "declare")
	err = ch.PublishWithContext(context.Background(), "", "shop.inventory", true, false, amqp.Publishing{
		MessageId: "poison-1", Type: "order.placed", Body: []byte("not an envelope")})
	testenv.Must(t, err, "publish")

	list := func() string {
		out, stderr, code := shop(t, s.env, "dead", "list", "inventory")
		if code != 0 {
			t.Fatalf("shop dead list: exit %d: %s", code, stderr)
		}
		return out
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		if out := list(); !regexp.MustCompile(`(?m)^ID +TYPE +FAILED AT +REASON\npoison-1 +order\.placed .*decode envelope`).MatchString(out) {
			return fmt.Errorf("shop dead list printed %q", out)
		}
		return nil
	})
	// The process goes on: a real order is still served.
	buyer := s.register(t, "after-poison@shop.test")
	p := s.product(t, "AFTER", 3)
	startProcess(t, s.env, "relay")
	startProcess(t, s.env, "consume", "orders")
	id := s.mustPlace(t, buyer, order.Item{ProductID: p, Quantity: 1})
	testenv.Eventually(t, 30*time.Second, func() error {
		if st := s.status(t, id); st != "confirmed" {
			return fmt.Errorf("order after the poison is %s", st)
		}
		return nil
	})

	out, stderr, code := shop(t, s.env, "dead", "replay", "inventory")
	if code != 0 || !strings.Contains(out, "replayed 1 message") {
		t.Fatalf("shop dead replay: exit %d, %q, %s", code, out, stderr)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		out := list()
		if !strings.Contains(out, "poison-1") || !strings.Contains(out, "1 dead message(s)") {
			return fmt.Errorf("after replay, shop dead list printed %q; want the message dead again, once", out)
		}
		return nil
	})
	if _, _, code := shop(t, s.env, "dead", "list", "nosuchgroup"); code != 2 {
		t.Errorf("shop dead list nosuchgroup: exit %d, want 2", code)
	}
}

// TestConsumeServesOpsAndStopsOnSIGTERM: a consumer process is ready once
// Postgres and RabbitMQ answer, counts what it applies in /metrics, and
// exits 0 on SIGTERM.
func TestConsumeServesOpsAndStopsOnSIGTERM(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	env := maps.Clone(s.env)
	env["LOG_LEVEL"] = "info" // startServing reads the "listening" line
	consumer, addr := startServing(t, env, "consume", "emails")
	waitReady(t, addr)
	startProcess(t, s.env, "relay")
	s.register(t, "ops@shop.test")
	s.waitQuiet(t, 30*time.Second, "emails")
	body := metrics(t, addr)
	if want := `shop_consumer_messages_total{group="emails",outcome="applied",type="user.registered"} 1`; !strings.Contains(body, want) {
		t.Errorf("/metrics lacks %s", want)
	}
	stop(t, consumer)

	if _, stderr, code := shop(t, s.env, "consume", "nosuchgroup"); code != 2 || !strings.Contains(stderr, "unknown consumer group") {
		t.Errorf("consume nosuchgroup: exit %d, %s", code, stderr)
	}
}

// TestRebuildUnderLiveTraffic wipes the read models (every key of the
// system's prefix: the per-test FLUSHDB, since tests share one Redis) while
// orders stream in, runs `shop projections rebuild`, and checks that Redis
// converges to Postgres.
func TestRebuildUnderLiveTraffic(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	startProcess(t, s.env, "relay")
	startProcess(t, s.env, "consume", "orders", "inventory", "projections")
	p := s.product(t, "REBUILD", 1_000_000)
	buyer := s.register(t, "rebuild@shop.test")
	stream := func(n int) {
		for range n {
			if _, err := s.place(buyer, order.Item{ProductID: p, Quantity: 1}); err != nil {
				t.Errorf("place: %v", err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	stream(50)
	done := make(chan struct{})
	go func() { defer close(done); stream(150) }()
	t.Cleanup(func() { <-done }) // before the system's pool closes, even after a Fatal

	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	// The projections have caught up with the product at least, so there
	// is something to wipe.
	testenv.Eventually(t, 30*time.Second, func() error {
		n, err := rdb.Exists(context.Background(), s.env["REDIS_PREFIX"]+"product:"+p.String()).Result()
		if err != nil || n == 0 {
			return fmt.Errorf("the product's read model is not in Redis yet (%v)", err)
		}
		return nil
	})
	keys, err := rdb.Keys(context.Background(), s.env["REDIS_PREFIX"]+"*").Result()
	testenv.Must(t, err, "list keys")
	testenv.Must(t, rdb.Del(context.Background(), keys...).Err(), "wipe the read models")
	out, stderr, code := shop(t, s.env, "projections", "rebuild")
	if code != 0 || !strings.Contains(out, "rebuilt 1 products") {
		t.Fatalf("shop projections rebuild: exit %d, %q, %s", code, out, stderr)
	}
	<-done
	s.waitQuiet(t, 60*time.Second, "orders", "inventory")
	s.waitRedisMatches(t, 30*time.Second)
}

// TestReadModelsRebuiltAfterRedisLosesThem: when Redis loses the read
// models (a restart of a Redis that keeps nothing on disk, a FLUSHALL;
// here, every key of the test's prefix deleted), the projections process
// rebuilds them from Postgres by itself, and Redis equals Postgres again.
func TestReadModelsRebuiltAfterRedisLosesThem(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	startProcess(t, s.env, "relay")
	startProcess(t, s.env, "consume", "orders", "inventory", "emails", "projections")
	buyer := s.register(t, "lost@shop.test")
	mug := s.product(t, "LOST-MUG", 10)
	for range 3 {
		s.mustPlace(t, buyer, order.Item{ProductID: mug, Quantity: 1})
	}
	s.waitQuiet(t, 60*time.Second, "orders", "inventory")
	s.waitRedisMatches(t, 30*time.Second)

	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr()})
	t.Cleanup(func() { _ = rdb.Close() })
	keys, err := rdb.Keys(context.Background(), s.env["REDIS_PREFIX"]+"*").Result()
	testenv.Must(t, err, "list the keys")
	testenv.Must(t, rdb.Del(context.Background(), keys...).Err(), "delete the keys")
	s.mustPlace(t, buyer, order.Item{ProductID: mug, Quantity: 1}) // events keep flowing meanwhile
	s.waitQuiet(t, 60*time.Second, "orders", "inventory")
	s.waitRedisMatches(t, 30*time.Second)
}
