package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/product"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/handlers"
	"github.com/shopdev/shop/internal/retry"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
	readmodel "github.com/shopdev/shop/projections"
	"github.com/shopdev/shop/store"
)

// live is a group of the registry consuming from RabbitMQ (a vhost of the
// test's own), and a channel that publishes to its queue as the relay does.
type live struct {
	broker *outbox.Broker
	route  outbox.Route
	ch     *amqp.Channel
}

// newLive declares the topology on a vhost of t's own; start runs the group.
func newLive(t *testing.T, group string) *live {
	t.Helper()
	url := testenv.AMQPURL(t)
	broker, err := outbox.NewBroker(outbox.BrokerConfig{URL: url, Topology: handlers.Topology(), Logger: quiet})
	testenv.Must(t, err, "broker")
	route, ok := handlers.Topology().Route(group)
	if !ok {
		t.Fatalf("no route for group %s", group)
	}
	conn, err := amqp.Dial(url)
	testenv.Must(t, err, "dial rabbitmq")
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	testenv.Must(t, err, "open channel")
	testenv.Must(t, handlers.Topology().Declare(ch), "declare topology")
	return &live{broker: broker, route: route, ch: ch}
}

// start runs g until t ends, in batches of up to 16 deliveries: the
// deliveries published before it starts are in hand at once, so batches
// form, and a batch that fails is applied again one delivery at a time.
func (l *live) start(t *testing.T, g consumer.Group, uow *store.UnitOfWork) {
	t.Helper()
	r, err := consumer.New(consumer.Config{Group: g, Broker: l.broker, UnitOfWork: uow, Logger: quiet,
		Concurrency: 16, Batch: 16, MaxRetries: 2, Backoff: retry.Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond}})
	testenv.Must(t, err, "runner of "+g.Name)
	testenv.Run(t, r.Run)
}

func (l *live) publish(t *testing.T, envs ...outbox.Envelope) {
	t.Helper()
	for _, env := range envs {
		body, err := json.Marshal(env)
		testenv.Must(t, err, "encode envelope")
		testenv.Must(t, l.ch.PublishWithContext(context.Background(), "", l.route.Queue(), true, false, amqp.Publishing{
			ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: env.ID.String(), Type: env.Type, Body: body,
		}), "publish")
	}
}

// deadReasons waits until the dead queue holds want messages and returns
// their reasons by message id.
func (l *live) deadReasons(t *testing.T, want int) map[string]string {
	t.Helper()
	var dead []consumer.DeadMessage
	testenv.Eventually(t, 20*time.Second, func() error {
		var err error
		if dead, err = consumer.ListDead(context.Background(), l.broker, l.route, 0); err != nil {
			return err
		}
		if len(dead) != want {
			return fmt.Errorf("%d dead messages, want %d", len(dead), want)
		}
		return nil
	})
	reasons := make(map[string]string, len(dead))
	for _, d := range dead {
		reasons[d.ID] = d.Reason
	}
	return reasons
}

// registryGroup is the group of the registry called name, wired to d.
func registryGroup(t *testing.T, name string, d handlers.Deps) consumer.Group {
	t.Helper()
	for _, g := range handlers.Groups(d) {
		if g.Name == name {
			return g
		}
	}
	t.Fatalf("no group %s in the registry", name)
	return consumer.Group{}
}

// forge returns a copy of env under a new event id, with its data changed
// by edit: what a publisher that is not the relay could send.
func forge(t *testing.T, env outbox.Envelope, edit func(data map[string]any)) outbox.Envelope {
	t.Helper()
	var data map[string]any
	testenv.Must(t, json.Unmarshal(env.Data, &data), "decode data")
	edit(data)
	raw, err := json.Marshal(data)
	testenv.Must(t, err, "encode data")
	env.ID = uuid.Must(uuid.NewV7())
	env.Data = raw
	return env
}

// item is the first line of an order.placed's data, to edit.
func item(data map[string]any) map[string]any {
	return data["items"].([]any)[0].(map[string]any)
}

// shopWithOrders writes, through the application's commands, a product with
// 10 units and orders of it for the given quantities, and returns the
// product and the orders' order.placed events, in order.
func shopWithOrders(t *testing.T, pool *pgxpool.Pool, quantities ...int64) (uuid.UUID, []outbox.Envelope) {
	t.Helper()
	uow := store.NewUnitOfWork(pool, nil)
	ctx, now := context.Background(), time.Now()
	var buyer, mug uuid.UUID
	testenv.Must(t, uow.Do(ctx, func(ctx context.Context, tx *store.Tx) error {
		u, err := app.Register(ctx, tx, app.RegisterUser{Email: "refused@shop.test", Name: "R", PasswordHash: "x", Role: user.RoleCustomer}, now)
		if err != nil {
			return err
		}
		p, err := app.AddProduct(ctx, tx, app.Operator, app.CreateProduct{SKU: "MUG", Name: "Mug", PriceCents: 500, Stock: 10}, now)
		if err != nil {
			return err
		}
		buyer, mug = u.ID(), p.ID()
		return nil
	}), "seed")
	for _, q := range quantities {
		testenv.Must(t, uow.Do(ctx, func(ctx context.Context, tx *store.Tx) error {
			_, err := app.PlaceOrder(ctx, tx, app.Actor{UserID: buyer, Role: user.RoleCustomer},
				[]order.Item{{ProductID: mug, Quantity: q}}, now)
			return err
		}), "place order")
	}
	return mug, takeOf(t, pool, order.EventPlaced)
}

// TestInventoryRefusesAnOrderPlacedThatNoOrderMatches publishes, to the
// inventory group of the registry, order.placed events that no order in
// Postgres matches, ahead of the genuine ones: each goes to the dead queue
// with a reason that names what is wrong and reserves nothing, and the
// genuine events behind them are applied.
func TestInventoryRefusesAnOrderPlacedThatNoOrderMatches(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	mug, placed := shopWithOrders(t, pool, 1, 2)
	unknown := uuid.Must(uuid.NewV7())
	forged := []struct {
		name   string
		env    outbox.Envelope
		reason string
	}{
		{"an order that was never placed", forge(t, placed[0], func(d map[string]any) { d["order_id"] = unknown.String() }),
			"never placed"},
		{"a real order with other items", forge(t, placed[1], func(d map[string]any) { item(d)["quantity"] = 9 }),
			"items differ from the order's"},
	}
	forged[0].env.AggregateID = unknown

	l := newLive(t, "inventory")
	for _, f := range forged {
		l.publish(t, f.env)
	}
	l.publish(t, placed...)
	l.start(t, registryGroup(t, "inventory", handlers.Deps{Now: time.Now}), store.NewUnitOfWork(pool, nil))

	reasons := l.deadReasons(t, len(forged))
	for _, f := range forged {
		if got, ok := reasons[f.env.ID.String()]; !ok || !strings.Contains(got, f.reason) {
			t.Errorf("%s: dead reason %q, want it to name the problem (%q)", f.name, got, f.reason)
		}
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		if n := testenv.Count(t, pool, `SELECT count(*) FROM reservations WHERE status = 'reserved'`); n != len(placed) {
			return fmt.Errorf("%d orders reserved, want the %d genuine ones", n, len(placed))
		}
		return nil
	})
	if n := testenv.Count(t, pool, `SELECT count(*) FROM reservations WHERE order_id = $1`, unknown); n != 0 {
		t.Errorf("the order that was never placed has %d reservations", n)
	}
	if n := testenv.Count(t, pool, `SELECT stock FROM products WHERE id = $1`, mug); n != 10-1-2 {
		t.Errorf("stock %d, want %d: the genuine orders' units only", n, 10-1-2)
	}
	if n := testenv.Count(t, pool, `SELECT count(*) FROM reservations WHERE lines @> '[{"quantity": 9}]'`); n != 0 {
		t.Errorf("%d reservations hold the forged items", n)
	}
}

// TestInventoryBatchWithAForgedOrderPlacedCommitsNothing applies batches
// as the group's committer does: one that holds an order.placed of an order
// that was never placed commits nothing (its deliveries are then applied
// one at a time, where the forged one fails alone); the same batch without
// it commits.
func TestInventoryBatchWithAForgedOrderPlacedCommitsNothing(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	mug, placed := shopWithOrders(t, pool, 1, 2)
	forged := forge(t, placed[0], func(d map[string]any) { d["order_id"] = uuid.Must(uuid.NewV7()).String() })
	r := newRunner(t, registryGroup(t, "inventory", handlers.Deps{Now: time.Now}), store.NewUnitOfWork(pool, nil), 16)
	ctx := context.Background()

	if _, committed := r.ApplyBatch(ctx, []outbox.Envelope{placed[0], forged, placed[1]}); committed {
		t.Fatal("a batch holding a forged order.placed committed")
	}
	if n := testenv.Count(t, pool, `SELECT count(*) FROM reservations`); n != 0 {
		t.Fatalf("the failed batch left %d reservations", n)
	}
	if _, err := r.Apply(ctx, forged); err == nil || !strings.Contains(err.Error(), "never placed") {
		t.Errorf("the forged event alone: %v, want an error naming the order that was never placed", err)
	}
	if _, committed := r.ApplyBatch(ctx, placed); !committed {
		t.Fatal("the batch of the genuine events did not commit")
	}
	if n := testenv.Count(t, pool, `SELECT stock FROM products WHERE id = $1`, mug); n != 10-1-2 {
		t.Errorf("stock %d, want %d", n, 10-1-2)
	}
}

// envelopeOf is e as the relay publishes it.
func envelopeOf(t *testing.T, e domain.Event) outbox.Envelope {
	t.Helper()
	env, err := outbox.NewEnvelope(e, outbox.Metadata{})
	testenv.Must(t, err, "envelope of "+e.Type)
	return env
}

// TestProjectionsRefuseNegativeAmounts publishes, to the projections group
// of the registry, events whose quantities, prices, stock or totals are
// negative: each goes to the dead queue with a reason naming the field,
// nothing of it reaches Redis, and the events after them are applied.
func TestProjectionsRefuseNegativeAmounts(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.Redis(t)
	models, err := readmodel.New(readmodel.Config{Client: rdb, Prefix: prefix})
	testenv.Must(t, err, "read models")
	ctx, now := context.Background(), time.Now()
	must := func(err error) {
		t.Helper()
		testenv.Must(t, err, "domain")
	}

	// A product in the read models, and its next events: forged versions
	// of the two first, then a genuine one.
	mug, err := product.Create(uuid.Must(uuid.NewV7()), "MUG", "Mug", 500, 10, now)
	must(err)
	name, price := "Big mug", int64(700)
	must(mug.Update(&name, nil, now))
	must(mug.Restock(5, now))
	must(mug.Update(nil, &price, now))
	history := mug.Events() // created v1, updated v2, stock.changed v3, updated v4
	other, err := product.Create(uuid.Must(uuid.NewV7()), "CUP", "Cup", 300, 4, now)
	must(err)
	buyer := uuid.Must(uuid.NewV7())
	placed := func() outbox.Envelope {
		t.Helper()
		o, err := order.Place(uuid.Must(uuid.NewV7()), buyer, []order.Line{{ProductID: mug.ID(), SKU: "MUG", Name: "Mug",
			Quantity: 2, UnitPriceCents: 500}}, now)
		must(err)
		return envelopeOf(t, o.Events()[0])
	}
	forged := []struct {
		name   string
		env    outbox.Envelope
		reason string
	}{
		{"a negative price", forge(t, envelopeOf(t, history[1]), func(d map[string]any) { d["price_cents"] = -1 }),
			"price_cents: must not be negative"},
		{"a negative stock", forge(t, envelopeOf(t, history[2]), func(d map[string]any) { d["stock_available"] = -1 }),
			"stock_available: must not be negative"},
		{"a new product with a negative stock", forge(t, envelopeOf(t, other.Events()[0]), func(d map[string]any) { d["stock_available"] = -4 }),
			"stock_available: must not be negative"},
		{"an order line of a negative quantity", forge(t, placed(), func(d map[string]any) { item(d)["quantity"] = -2 }),
			"items[0].quantity: must not be negative"},
		{"an order line of a negative price", forge(t, placed(), func(d map[string]any) { item(d)["unit_price_cents"] = -500 }),
			"items[0].unit_price_cents: must not be negative"},
		{"an order of a negative total", forge(t, placed(), func(d map[string]any) { d["total_cents"] = -1000 }),
			"total_cents: must not be negative"},
	}

	l := newLive(t, "projections")
	l.publish(t, envelopeOf(t, history[0]))
	for _, f := range forged {
		l.publish(t, f.env)
	}
	l.start(t, registryGroup(t, "projections", handlers.Deps{ReadModels: models}), nil)

	reasons := l.deadReasons(t, len(forged))
	for _, f := range forged {
		if got, ok := reasons[f.env.ID.String()]; !ok || !strings.Contains(got, f.reason) {
			t.Errorf("%s: dead reason %q, want it to name the problem (%q)", f.name, got, f.reason)
		}
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		p, found, err := models.Product(ctx, mug.ID())
		if err != nil || !found || p.Version != 1 {
			return fmt.Errorf("product %+v, %v, %v; want version 1", p, found, err)
		}
		return nil
	})
	if p, _, _ := models.Product(ctx, mug.ID()); p.PriceCents != 500 || p.StockAvailable != 10 || p.Name != "Mug" {
		t.Errorf("product %+v: want it as created, untouched by the forged events", p)
	}
	if p, found, err := models.Product(ctx, other.ID()); found || err != nil {
		t.Errorf("the forged new product is in the read models: %+v, %v", p, err)
	}
	if orders, _, err := models.Orders(ctx, buyer, uuid.Nil, 10); len(orders) != 0 || err != nil {
		t.Errorf("the forged orders are in the read models: %+v, %v", orders, err)
	}

	// The events after them are applied.
	good := placed()
	l.publish(t, envelopeOf(t, history[3]), good)
	testenv.Eventually(t, 20*time.Second, func() error {
		p, _, err := models.Product(ctx, mug.ID())
		if err != nil || p.Version != 4 || p.PriceCents != price {
			return fmt.Errorf("product %+v, %v; want version 4 at %d", p, err, price)
		}
		o, found, err := models.Order(ctx, good.AggregateID)
		if err != nil || !found || o.TotalCents != 1000 {
			return fmt.Errorf("genuine order %+v, %v, %v; want it projected", o, found, err)
		}
		return nil
	})
	if p, _, _ := models.Product(ctx, mug.ID()); p.StockAvailable != 10 {
		t.Errorf("stock %d, want 10: the forged stock.changed must not be written", p.StockAvailable)
	}
}
