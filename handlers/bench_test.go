package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/handlers"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/mailer"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/projections"
	"github.com/shopdev/shop/store"
)

// BenchmarkGroups measures how many events per second each consumer group
// applies with 1 and 2 replicas: a backlog of CONSUMERBENCH_EVENTS (default
// 5,000) events of the group is put in its queue (untimed), then the
// replicas start, each with its own pool and CONSUMERBENCH_CONCURRENCY
// (default 8, as CONSUMER_CONCURRENCY) deliveries at once, and up to
// CONSUMERBENCH_BATCH (default 16, as CONSUMER_BATCH; emails always 1, as
// `shop consume`) in one transaction, with CONSUMERBENCH_COMMITTERS (default
// 1) such transactions at once; the clock runs until the inbox holds every
// event (for projections, which keep no inbox: until Redis holds every
// order). It reports CPU per event too: this process's, Postgres's,
// RabbitMQ's, Redis's and the kernel threads'. CONSUMERBENCH_GROUPS picks
// groups (default "inventory,orders,emails,projections"),
// CONSUMERBENCH_REPLICAS the replica counts (default "1,2");
// CONSUMERBENCH_SMTP=1 sends the emails over SMTP (to a server in this
// process) instead of to the log.
//
//	go test -run '^$' -bench Groups -benchtime 1x ./handlers/
func BenchmarkGroups(b *testing.B) {
	setup := benchSetup{
		events:      envInt("CONSUMERBENCH_EVENTS", 5000),
		concurrency: envInt("CONSUMERBENCH_CONCURRENCY", 8),
		batch:       envInt("CONSUMERBENCH_BATCH", 16),
		committers:  envInt("CONSUMERBENCH_COMMITTERS", 1),
	}
	names := []string{"inventory", "orders", "emails", "projections"}
	if v := os.Getenv("CONSUMERBENCH_GROUPS"); v != "" {
		names = strings.Split(v, ",")
	}
	counts := []int{1, 2}
	if v := os.Getenv("CONSUMERBENCH_REPLICAS"); v != "" {
		counts = nil
		for f := range strings.SplitSeq(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				b.Fatalf("CONSUMERBENCH_REPLICAS: %q is not a replica count", f)
			}
			counts = append(counts, n)
		}
	}
	for _, name := range names {
		for _, replicas := range counts {
			b.Run(fmt.Sprintf("%s/%d-replicas", name, replicas), func(b *testing.B) {
				for range b.N {
					benchGroup(b, name, replicas, setup)
				}
			})
		}
	}
}

// benchSetup is what one run of BenchmarkGroups sets: the backlog, and each
// replica's consumer.Config.
type benchSetup struct{ events, concurrency, batch, committers int }

// envInt is the positive integer in the environment variable name, else def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func benchGroup(b *testing.B, name string, replicas int, setup benchSetup) {
	n, concurrency, batch, committers := setup.events, setup.concurrency, setup.batch, setup.committers
	b.StopTimer()
	dbURL, amqpURL := testenv.DatabaseURL(b), testenv.AMQPURL(b)
	rdb, prefix := testenv.Redis(b)
	models, err := projections.New(projections.Config{Client: rdb, Prefix: prefix})
	testenv.Must(b, err, "read models")
	deps := handlers.Deps{Now: time.Now, Mailer: mailer.Log{Logger: quiet}, ReadModels: models}
	if name == "emails" && os.Getenv("CONSUMERBENCH_SMTP") != "" {
		// Each email sent over SMTP to a server on loopback (a real one
		// across a network answers slower).
		smtp, err := mailer.NewSMTP(mailer.Config{Addr: testenv.NewSMTPServer(b).Addr, From: "shop <no-reply@shop.test>"})
		testenv.Must(b, err, "smtp mailer")
		deps.Mailer = smtp
	}
	g := groupWith(name, deps)
	route := g.Route()
	events := eventsFor(b, dbURL, name, n)

	conn, err := amqp.Dial(amqpURL)
	testenv.Must(b, err, "dial")
	defer conn.Close()
	ch, err := conn.Channel()
	testenv.Must(b, err, "channel")
	testenv.Must(b, handlers.Topology().Declare(ch), "declare")
	testenv.Must(b, ch.Confirm(false), "confirm mode")
	confirms := make([]*amqp.DeferredConfirmation, len(events))
	for i, e := range events {
		body, err := json.Marshal(e)
		testenv.Must(b, err, "encode")
		confirms[i], err = ch.PublishWithDeferredConfirmWithContext(context.Background(), "", route.Queue(), true, false, amqp.Publishing{
			ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: e.ID.String(), Type: e.Type, Body: body,
		})
		testenv.Must(b, err, "publish")
	}
	for _, c := range confirms {
		if !c.Wait() {
			b.Fatal("backlog not confirmed")
		}
	}
	if len(events) != n {
		b.Fatalf("%d events prepared, want %d", len(events), n)
	}

	check, err := store.Open(context.Background(), store.Config{DatabaseURL: dbURL, MaxConns: 1})
	testenv.Must(b, err, "pool")
	defer check.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, replicas)
	broker, err := outbox.NewBroker(outbox.BrokerConfig{URL: amqpURL, Topology: handlers.Topology(), Logger: quiet})
	testenv.Must(b, err, "broker")
	b.StartTimer()
	start, cpu0 := time.Now(), testenv.SnapCPU()
	for range replicas {
		pool, err := store.Open(ctx, store.Config{DatabaseURL: dbURL, MaxConns: int32(concurrency) + 2})
		testenv.Must(b, err, "pool")
		defer pool.Close()
		c, err := consumer.New(consumer.Config{Group: g, Broker: broker, UnitOfWork: store.NewUnitOfWork(pool, nil), Logger: quiet,
			Concurrency: concurrency, Batch: batch, Committers: committers}) // emails never batch, as in shop consume
		testenv.Must(b, err, "group")
		go func() { _ = c.Run(ctx); done <- struct{}{} }()
	}
	applied := func() int {
		if name == "projections" {
			got, err := rdb.ZCard(ctx, prefix+"orders").Result()
			testenv.Must(b, err, "count the orders in redis")
			return int(got)
		}
		return testenv.Count(b, check, `SELECT count(*) FROM inbox WHERE consumer = $1`, name)
	}
	for {
		if applied() >= n {
			break
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("%s: not done within 5 minutes", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took, cpu := time.Since(start), testenv.SnapCPU().Since(cpu0)
	b.StopTimer()
	cancel()
	for range replicas {
		<-done
	}
	// CPU of the consumers (this process), Postgres, RabbitMQ and the
	// kernel's threads, per event.
	var pct float64
	for _, who := range []string{"bench", "postgres", "rabbitmq", "redis-server", "kernel"} {
		pct += cpu.By[who]
	}
	cpuPerEvent := pct * took.Seconds() * 10 / float64(n)
	b.ReportMetric(float64(n)/took.Seconds(), "events/s")
	b.ReportMetric(cpuPerEvent, "cpu-ms/event")
	b.ReportMetric(0, "ns/op")
	b.Logf("%s, %d replica(s) × concurrency %d, batch %d, committers %d: %d events in %s = %.0f events/s, %.2f ms of CPU per event (%s)",
		name, replicas, concurrency, batch, committers, n, took.Round(time.Millisecond), float64(n)/took.Seconds(), cpuPerEvent, cpu)
}

// groupNamed is the group of the registry called name, with the log mailer.
func groupNamed(name string) consumer.Group {
	return groupWith(name, handlers.Deps{Now: time.Now, Mailer: mailer.Log{Logger: quiet}})
}

// groupWith is the group of the registry called name, with deps.
func groupWith(name string, deps handlers.Deps) consumer.Group {
	for _, g := range handlers.Groups(deps) {
		if g.Name == name {
			return g
		}
	}
	panic("no group " + name)
}

// eventsFor writes what n events of the group need into the database and
// returns the events: n order.placed for inventory (one line of one of 50
// products with ample stock), n stock.reserved for orders (inventory applied
// in-process first), n user.registered for emails.
func eventsFor(b *testing.B, dbURL, name string, n int) []outbox.Envelope {
	b.Helper()
	pool, err := store.Open(context.Background(), store.Config{DatabaseURL: dbURL, MaxConns: 4})
	testenv.Must(b, err, "pool")
	defer pool.Close()
	uow := store.NewUnitOfWork(pool, nil)
	ctx, now := context.Background(), time.Now()
	if name == "emails" {
		for i := range n {
			testenv.Must(b, uow.Do(ctx, func(ctx context.Context, tx *store.Tx) error {
				_, err := app.Register(ctx, tx, app.RegisterUser{Email: fmt.Sprintf("b%d@shop.test", i), Name: "B",
					PasswordHash: "x", Role: user.RoleCustomer}, now)
				return err
			}), "register")
		}
		return takeOf(b, pool, "user.registered")
	}
	var buyer uuid.UUID
	testenv.Must(b, uow.Do(ctx, func(ctx context.Context, tx *store.Tx) error {
		u, err := app.Register(ctx, tx, app.RegisterUser{Email: "buyer@shop.test", Name: "B", PasswordHash: "x", Role: user.RoleCustomer}, now)
		if err == nil {
			buyer = u.ID()
		}
		return err
	}), "register")
	products := make([]uuid.UUID, 50)
	for i := range products {
		testenv.Must(b, uow.Do(ctx, func(ctx context.Context, tx *store.Tx) error {
			p, err := app.AddProduct(ctx, tx, app.Operator, app.CreateProduct{SKU: fmt.Sprintf("B-%d", i), Name: "B", PriceCents: 100, Stock: 1_000_000}, now)
			if err == nil {
				products[i] = p.ID()
			}
			return err
		}), "add product")
	}
	for i := range n {
		testenv.Must(b, uow.Do(ctx, func(ctx context.Context, tx *store.Tx) error {
			_, err := app.PlaceOrder(ctx, tx, app.Actor{UserID: buyer, Role: user.RoleCustomer},
				[]order.Item{{ProductID: products[i%len(products)], Quantity: 1}}, now)
			return err
		}), "place order")
	}
	placed := takeOf(b, pool, "order.placed")
	if name == "inventory" || name == "projections" {
		return placed
	}
	inv := newRunner(b, groupNamed("inventory"), uow, 1)
	for _, e := range placed {
		_, err := inv.Apply(ctx, e)
		testenv.Must(b, err, "reserve")
	}
	return takeOf(b, pool, "stock.reserved")
}

// takeOf empties the outbox and returns its events of one type.
func takeOf(b testing.TB, pool *pgxpool.Pool, typ string) []outbox.Envelope {
	b.Helper()
	var out []outbox.Envelope
	for _, e := range takeOutbox(b, pool) {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}
