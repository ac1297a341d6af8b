package handlers_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

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

// sends counts what a pool sends to Postgres: every batch is one round
// trip (the unit of work sends everything in batches).
type sends struct{ n atomic.Int64 }

func (s *sends) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	s.n.Add(1)
	return ctx
}
func (*sends) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (s *sends) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	s.n.Add(1)
	return ctx
}
func (*sends) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (*sends) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// TestRoundTripsPerDelivery pins what applying events costs in round trips
// to Postgres, the inventory's, the orders' and the emails' groups' main
// cost: two, the inbox claim with the reads (locks), then the writes with
// the commit, for one event alone and for a batch of them alike.
func TestRoundTripsPerDelivery(t *testing.T) {
	t.Parallel()
	dbURL := testenv.DatabaseURL(t)
	counter := &sends{}
	pool, err := store.Open(context.Background(), store.Config{DatabaseURL: dbURL, MaxConns: 4, Tracer: counter})
	testenv.Must(t, err, "pool")
	t.Cleanup(pool.Close)
	uow := store.NewUnitOfWork(pool, nil)
	ctx, now := context.Background(), time.Now()
	var buyer uuid.UUID
	products := make([]uuid.UUID, 3)
	testenv.Must(t, uow.Do(ctx, func(ctx context.Context, tx *store.Tx) error {
		u, err := app.Register(ctx, tx, app.RegisterUser{Email: "trips@shop.test", Name: "T", PasswordHash: "x", Role: user.RoleCustomer}, now)
		if err != nil {
			return err
		}
		buyer = u.ID()
		for i := range products {
			p, err := app.AddProduct(ctx, tx, app.Operator, app.CreateProduct{SKU: fmt.Sprintf("T-%d", i), Name: "T", PriceCents: 100, Stock: 1000}, now)
			if err != nil {
				return err
			}
			products[i] = p.ID()
		}
		return nil
	}), "seed")
	for i := range 11 {
		testenv.Must(t, uow.Do(ctx, func(ctx context.Context, tx *store.Tx) error {
			_, err := app.PlaceOrder(ctx, tx, app.Actor{UserID: buyer, Role: user.RoleCustomer},
				[]order.Item{{ProductID: products[i%3], Quantity: 1}, {ProductID: products[(i+1)%3], Quantity: 2}}, now)
			return err
		}), "place order")
	}
	placed := takeOf(t, pool, order.EventPlaced)
	groups := map[string]*runnerOf{}
	for _, g := range handlers.Groups(handlers.Deps{Now: time.Now, Mailer: mailer.Log{Logger: quiet}}) {
		groups[g.Name] = &runnerOf{r: newRunner(t, g, uow, 16)}
	}

	measure := func(what string, want int64, apply func()) {
		t.Helper()
		before := counter.n.Load()
		apply()
		if got := counter.n.Load() - before; got != want {
			t.Errorf("%s: %d round trips, want %d", what, got, want)
		}
	}
	measure("one order.placed alone", 2, func() { groups["inventory"].apply(t, placed[0]) })
	measure("a batch of ten order.placed", 2, func() { groups["inventory"].batch(t, placed[1:]) })
	reserved := takeOf(t, pool, "stock.reserved")
	measure("one stock.reserved alone", 2, func() { groups["orders"].apply(t, reserved[0]) })
	measure("a batch of ten stock.reserved", 2, func() { groups["orders"].batch(t, reserved[1:]) })
	confirmed := takeOf(t, pool, order.EventConfirmed)
	measure("one order.confirmed alone (emails: the recipient read with the claim)", 2, func() { groups["emails"].apply(t, confirmed[0]) })
}

type runnerOf struct{ r *consumer.Runner }

func (x *runnerOf) apply(t *testing.T, e outbox.Envelope) {
	t.Helper()
	if ok, err := x.r.Apply(context.Background(), e); err != nil || !ok {
		t.Fatalf("apply %s: %v, %v", e.Type, ok, err)
	}
}

func (x *runnerOf) batch(t *testing.T, events []outbox.Envelope) {
	t.Helper()
	if _, committed := x.r.ApplyBatch(context.Background(), events); !committed {
		t.Fatalf("the batch of %d %s did not commit", len(events), events[0].Type)
	}
}
