package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/product"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/migrations"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func addProduct(t *testing.T, uow *store.UnitOfWork, sku string, price, stock int64) *product.Product {
	t.Helper()
	var p *product.Product
	err := uow.Do(context.Background(), func(ctx context.Context, tx *store.Tx) (err error) {
		p, err = app.AddProduct(ctx, tx, app.Operator, app.CreateProduct{SKU: sku, Name: "Thing " + sku, PriceCents: price, Stock: stock}, now)
		return err
	})
	testenv.Must(t, err, "add product")
	return p
}

func addCustomer(t *testing.T, uow *store.UnitOfWork, email string) *user.User {
	t.Helper()
	var u *user.User
	err := uow.Do(context.Background(), func(ctx context.Context, tx *store.Tx) (err error) {
		u, err = app.Register(ctx, tx, app.RegisterUser{Email: email, Name: "C", PasswordHash: "x", Role: user.RoleCustomer}, now)
		return err
	})
	testenv.Must(t, err, "add customer")
	return u
}

func counts(t *testing.T, pool *pgxpool.Pool) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, table := range []string{"users", "products", "orders", "order_items", "outbox", "idempotency_keys", "audit_log"} {
		out[table] = testenv.Count(t, pool, "SELECT count(*) FROM "+table)
	}
	return out
}

func TestUnitOfWorkRollsBackEverything(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	uow := store.NewUnitOfWork(pool, nil)
	existing := addProduct(t, uow, "TAKEN", 100, 5)
	customer := addCustomer(t, uow, "c@example.com")
	before := counts(t, pool)
	errBoom := errors.New("boom")

	tests := []struct {
		name    string
		fn      func(ctx context.Context, tx *store.Tx) error
		wantErr error
	}{
		{
			name: "the callback fails after queuing rows and events",
			fn: func(ctx context.Context, tx *store.Tx) error {
				if _, err := app.PlaceOrder(ctx, tx, app.Actor{UserID: customer.ID(), Role: user.RoleCustomer},
					[]order.Item{{ProductID: existing.ID(), Quantity: 1}}, now); err != nil {
					return err
				}
				tx.Idempotency.Save(customer.ID().String(), "k", store.Response{RequestHash: []byte{1}, Status: 202, Body: []byte("{}")})
				return errBoom
			},
			wantErr: errBoom,
		},
		{
			name: "the callback fails after a read flushed its writes",
			fn: func(ctx context.Context, tx *store.Tx) error {
				if _, err := app.AddProduct(ctx, tx, app.Operator, app.CreateProduct{SKU: "NEW", Name: "New", PriceCents: 1, Stock: 1}, now); err != nil {
					return err
				}
				if _, err := tx.Products.GetForUpdate(ctx, existing.ID()); err != nil { // sends the insert
					return err
				}
				return errBoom
			},
			wantErr: errBoom,
		},
		{
			name: "Postgres rejects a write: the other writes of the batch go too",
			fn: func(ctx context.Context, tx *store.Tx) error {
				_, err := app.AddProduct(ctx, tx, app.Operator, app.CreateProduct{SKU: "TAKEN", Name: "Dup", PriceCents: 1, Stock: 1}, now)
				return err
			},
			wantErr: product.ErrSKUTaken,
		},
		{
			name: "a row that moved on since its load is not overwritten",
			fn: func(ctx context.Context, tx *store.Tx) error {
				p, err := tx.Products.GetForUpdate(ctx, existing.ID())
				if err != nil {
					return err
				}
				store.QueueBehindTheBack(tx, `UPDATE products SET version = version + 1 WHERE id = $1`, existing.ID())
				testenv.Must(t, p.Restock(1, now), "restock")
				return tx.Append(p.Events()...)
			},
			wantErr: store.ErrConcurrentUpdate,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := uow.Do(context.Background(), tt.fn)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Do() error = %v, want %v", err, tt.wantErr)
			}
			if after := counts(t, pool); !equalCounts(after, before) {
				t.Fatalf("rows changed by a failed unit of work: before %v, after %v", before, after)
			}
		})
	}
}

func equalCounts(a, b map[string]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}

func TestCommittedCommandLeavesItsEventsInVersionOrder(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	uow := store.NewUnitOfWork(pool, nil)
	p := addProduct(t, uow, "SKU-1", 250, 3)
	name := "Renamed"
	price := int64(300)
	err := uow.Do(context.Background(), func(ctx context.Context, tx *store.Tx) error {
		if _, err := app.UpdateProduct(ctx, tx, app.Operator, p.ID(), &name, &price, now); err != nil {
			return err
		}
		_, err := app.Restock(ctx, tx, app.Operator, p.ID(), 7, now) // second change in the same transaction
		return err
	})
	testenv.Must(t, err, "update and restock")

	rows, err := pool.Query(context.Background(),
		`SELECT routing_key, aggregate_version, partition, payload::text FROM outbox WHERE aggregate_id = $1 ORDER BY id`, p.ID())
	testenv.Must(t, err, "query outbox")
	defer rows.Close()
	want := []struct {
		typ     string
		version int64
	}{{product.EventCreated, 1}, {product.EventUpdated, 2}, {product.EventStockChanged, 3}}
	i := 0
	for rows.Next() {
		var typ, payload string
		var version int64
		var partition int16
		testenv.Must(t, rows.Scan(&typ, &version, &partition, &payload), "scan")
		if i >= len(want) {
			t.Fatalf("unexpected extra outbox row %s v%d", typ, version)
		}
		if typ != want[i].typ || version != want[i].version {
			t.Errorf("outbox row %d = %s v%d, want %s v%d", i, typ, version, want[i].typ, want[i].version)
		}
		if partition != outbox.Partition(p.ID()) {
			t.Errorf("row %d partition = %d, want %d", i, partition, outbox.Partition(p.ID()))
		}
		var env outbox.Envelope
		testenv.Must(t, json.Unmarshal([]byte(payload), &env), "decode envelope")
		if env.Type != typ || env.AggregateVersion != version || env.AggregateID != p.ID() || env.ID.Version() != 7 {
			t.Errorf("row %d envelope = %+v, does not match its row", i, env)
		}
		i++
	}
	testenv.Must(t, rows.Err(), "rows")
	if i != len(want) {
		t.Fatalf("got %d outbox rows, want %d", i, len(want))
	}
	if got := testenv.Count(t, pool, `SELECT count(*) FROM products WHERE id = $1 AND stock = 10 AND version = 3 AND price_cents = 300`, p.ID()); got != 1 {
		t.Fatalf("product row not updated to stock 10, version 3, price 300")
	}
}

func TestReadsSeeQueuedWrites(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	err := store.NewUnitOfWork(pool, nil).Do(context.Background(), func(ctx context.Context, tx *store.Tx) error {
		u, err := app.Register(ctx, tx, app.RegisterUser{Email: "Ann@Example.com", Name: "Ann", PasswordHash: "h", Role: user.RoleAdmin}, now)
		if err != nil {
			return err
		}
		got, err := tx.Users.ByEmail(ctx, "ann@example.com")
		if err != nil {
			return err
		}
		if got.ID() != u.ID() || got.Role() != user.RoleAdmin {
			t.Errorf("ByEmail in the same transaction = %v %v, want %v admin", got.ID(), got.Role(), u.ID())
		}
		return nil
	})
	testenv.Must(t, err, "register and read")
}

func TestNotFoundErrors(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	uow := store.NewUnitOfWork(pool, nil)
	tests := []struct {
		name string
		load func(ctx context.Context, tx *store.Tx) error
		want error
	}{
		{"user by email", func(ctx context.Context, tx *store.Tx) error {
			_, err := tx.Users.ByEmail(ctx, "no@example.com")
			return err
		}, user.ErrNotFound},
		{"user by id", func(ctx context.Context, tx *store.Tx) error { _, err := tx.Users.ByID(ctx, uuid.New()); return err }, user.ErrNotFound},
		{"product", func(ctx context.Context, tx *store.Tx) error {
			_, err := tx.Products.GetForUpdate(ctx, uuid.New())
			return err
		}, product.ErrNotFound},
		{"order", func(ctx context.Context, tx *store.Tx) error {
			_, err := tx.Orders.GetForUpdate(ctx, uuid.New())
			return err
		}, order.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := uow.Do(context.Background(), tt.load); !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestUnavailableDatabase(t *testing.T) {
	t.Parallel()
	pool, err := store.Open(context.Background(), store.Config{
		DatabaseURL:    "postgres://postgres@127.0.0.1:1/shop?sslmode=disable", // nothing listens on port 1
		ConnectTimeout: time.Second,
	})
	testenv.Must(t, err, "open")
	t.Cleanup(pool.Close)
	err = store.NewUnitOfWork(pool, nil).Do(context.Background(), func(context.Context, *store.Tx) error { return nil })
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Do() on a server that is down = %v, want ErrUnavailable", err)
	}
}

func TestMigrateIsIdempotentAndSafeConcurrently(t *testing.T) {
	t.Parallel()
	dbURL := testenv.DatabaseURL(t) // created and migrated once
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = store.Migrate(context.Background(), dbURL, log)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrate #%d: %v", i, err)
		}
	}
	pool, err := pgxpool.New(context.Background(), dbURL)
	testenv.Must(t, err, "pool")
	defer pool.Close()
	files, err := fs.Glob(migrations.FS, "*.sql")
	testenv.Must(t, err, "list migrations")
	if n := testenv.Count(t, pool, `SELECT count(*) FROM goose_db_version WHERE version_id > 0`); n != len(files) || n < 4 {
		t.Fatalf("goose_db_version has %d applied migrations, want %d (each once)", n, len(files))
	}
}

func TestCreateDatabaseConcurrently(t *testing.T) {
	t.Parallel()
	base := testenv.DatabaseURL(t)
	fresh := base[:len(base)-len("?sslmode=disable")] + "_fresh?sslmode=disable"
	t.Cleanup(func() { _ = store.DropDatabase(context.Background(), fresh) })
	var wg sync.WaitGroup
	errs := make([]error, 4)
	created := make([]bool, len(errs))
	for i := range errs {
		wg.Go(func() { created[i], errs[i] = store.CreateDatabase(context.Background(), fresh) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("create #%d: %v", i, err)
		}
	}
	if n := len(slices.DeleteFunc(created, func(c bool) bool { return !c })); n != 1 {
		t.Errorf("%d of the concurrent calls say they created the database, want 1", n)
	}
}

// TestTransactionWritesBackWhatChangedOnce: the stores hand the same
// aggregate to every load of one transaction, and the transaction writes
// back the aggregates that changed, each once, whatever the number of
// changes, and nothing for those that did not.
func TestTransactionWritesBackWhatChangedOnce(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	uow := store.NewUnitOfWork(pool, nil)
	changed, untouched := addProduct(t, uow, "CHANGED", 100, 1), addProduct(t, uow, "UNTOUCHED", 100, 1)
	// xmin is the transaction that wrote the row's current version.
	writer := func() string {
		var xmin string
		testenv.Must(t, pool.QueryRow(context.Background(), `SELECT xmin::text FROM products WHERE id = $1`, untouched.ID()).Scan(&xmin), "xmin")
		return xmin
	}
	before := writer()
	err := uow.Do(context.Background(), func(ctx context.Context, tx *store.Tx) error {
		locked, err := tx.Products.LockMany(ctx, []uuid.UUID{changed.ID(), untouched.ID(), uuid.New()})
		if err != nil {
			return err
		}
		if len(locked) != 2 {
			t.Errorf("LockMany found %d products, want the 2 that exist", len(locked))
		}
		again, err := tx.Products.GetForUpdate(ctx, changed.ID())
		if err != nil {
			return err
		}
		if again != locked[changed.ID()] {
			t.Error("a second load in the transaction gave another copy of the product")
		}
		for range 3 {
			testenv.Must(t, again.Restock(2, now), "restock")
		}
		return tx.Append(again.Events()...)
	})
	testenv.Must(t, err, "change one product three times")
	if n := testenv.Count(t, pool, `SELECT count(*) FROM products WHERE id = $1 AND stock = 7 AND version = 4`, changed.ID()); n != 1 {
		t.Error("the changed product is not at stock 7, version 4")
	}
	if writer() != before {
		t.Error("the untouched product was written")
	}
}
