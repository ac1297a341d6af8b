package store_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/product"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// partitions records what a unit of work notifies, as the relays' notifier
// would hear it.
type partitions struct {
	mu    sync.Mutex
	calls [][]int16
}

func (p *partitions) Notify(written []int16) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, slices.Clone(written))
}

// TestGroupCommitsTogetherAndFailsAlone: commands that wait while a group
// runs share the next transaction; each that fails, whether before it
// sent anything, on a constraint, or after a read, is rolled back alone
// and gets its own error, and the others commit, with their events and
// idempotency keys, and are notified once.
func TestGroupCommitsTogetherAndFailsAlone(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	notified := &partitions{}
	uow := store.NewUnitOfWork(pool, notified)
	addProduct(t, uow, "TAKEN-1", 100, 1)
	group, err := uow.Group(store.GroupConfig{})
	testenv.Must(t, err, "group")

	ctx := context.Background()
	add := func(sku, key string, txid *int64) func(context.Context, *store.Tx) error {
		return func(ctx context.Context, tx *store.Tx) (err error) {
			if *txid, err = store.TxID(ctx, tx); err != nil {
				return err
			}
			if _, err := app.AddProduct(ctx, tx, app.Operator, app.CreateProduct{SKU: sku, Name: "Thing " + sku, PriceCents: 100, Stock: 1}, now); err != nil {
				return err
			}
			if key != "" {
				tx.Idempotency.Save("test", key, store.Response{RequestHash: []byte(sku), Status: 201, Body: []byte(`{}`)})
			}
			return nil
		}
	}
	// The first command holds its group open until the others wait.
	var firstTx int64
	running, release := make(chan struct{}), make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		firstDone <- group.Do(ctx, func(ctx context.Context, tx *store.Tx) error {
			if err := add("FIRST-1", "", &firstTx)(ctx, tx); err != nil {
				return err
			}
			close(running)
			<-release
			return nil
		})
	}()
	<-running

	errLate := errors.New("changed its mind after reading")
	txids := make([]int64, 7)
	commands := []struct {
		name string
		fn   func(context.Context, *store.Tx) error
		want error // nil: commits
	}{
		{"a new product", add("OK-1", "", &txids[0]), nil},
		{"a taken SKU, refused by Postgres", add("TAKEN-1", "", &txids[1]), product.ErrSKUTaken},
		{"invalid before anything is sent", func(context.Context, *store.Tx) error { return domain.Invalid("sku", "is required") }, domain.ErrInvalid},
		{"a product under an idempotency key", add("OK-2", "key-1", &txids[3]), nil},
		{"the same key again", add("OK-3", "key-1", &txids[4]), store.ErrKeyTaken},
		{"a failure after a read and a write", func(ctx context.Context, tx *store.Tx) error {
			if err := add("OK-4", "", &txids[5])(ctx, tx); err != nil {
				return err
			}
			if _, err := store.TxID(ctx, tx); err != nil { // sends the product's insert
				return err
			}
			return errLate
		}, errLate},
		// Its writes go with the group's COMMIT, which must then commit
		// the others without it.
		{"a taken SKU, last of the group", add("TAKEN-1", "", &txids[6]), product.ErrSKUTaken},
	}
	errs := make([]error, len(commands))
	var wg sync.WaitGroup
	for i, c := range commands {
		wg.Go(func() { errs[i] = group.Do(ctx, c.fn) })
		// One at a time, so that they run in this order.
		testenv.Eventually(t, 5*time.Second, func() error {
			if n := store.Waiting(group); n != i+1 {
				return errors.New("not queued yet")
			}
			return nil
		})
	}
	close(release)
	testenv.Must(t, <-firstDone, "the first command")
	wg.Wait()

	for i, c := range commands {
		switch {
		case c.want == nil && errs[i] != nil:
			t.Errorf("%s: %v, want it committed", c.name, errs[i])
		case c.want != nil && !errors.Is(errs[i], c.want):
			t.Errorf("%s: %v, want %v", c.name, errs[i], c.want)
		}
	}
	if txids[0] == 0 || txids[0] != txids[3] || txids[0] == firstTx {
		t.Errorf("transactions: first %d, OK-1 %d, OK-2 %d: want OK-1 and OK-2 in one, after the first's", firstTx, txids[0], txids[3])
	}
	for sku, want := range map[string]int{"FIRST-1": 1, "OK-1": 1, "OK-2": 1, "OK-3": 0, "OK-4": 0, "TAKEN-1": 1} {
		if got := testenv.Count(t, pool, "SELECT count(*) FROM products WHERE sku = $1", sku); got != want {
			t.Errorf("products %s: %d, want %d", sku, got, want)
		}
	}
	// product.created of TAKEN-1 (added before), FIRST-1, OK-1 and OK-2.
	if got := testenv.Count(t, pool, "SELECT count(*) FROM outbox WHERE routing_key = 'product.created'"); got != 4 {
		t.Errorf("outbox has %d product.created, want 4: the failed commands' events must be gone", got)
	}
	if got := testenv.Count(t, pool, "SELECT count(*) FROM idempotency_keys WHERE key = 'key-1' AND request_hash = 'OK-2'"); got != 1 {
		t.Errorf("key-1 holds %d replies of OK-2, want 1", got)
	}
	var ok1, ok2 int16
	for _, sku := range []string{"OK-1", "OK-2"} {
		var id uuid.UUID
		testenv.Must(t, pool.QueryRow(ctx, "SELECT id FROM products WHERE sku = $1", sku).Scan(&id), "product id")
		if sku == "OK-1" {
			ok1 = outbox.Partition(id)
		} else {
			ok2 = outbox.Partition(id)
		}
	}
	notified.mu.Lock()
	last := notified.calls[len(notified.calls)-1]
	notified.mu.Unlock()
	if !slices.Contains(last, ok1) || !slices.Contains(last, ok2) {
		t.Errorf("the group's notification %v lacks the partitions of OK-1 (%d) and OK-2 (%d)", last, ok1, ok2)
	}
}

// TestGroupOfFailuresCommitsNothing: a group whose every command fails
// leaves nothing behind, and the next group runs normally.
func TestGroupOfFailuresCommitsNothing(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	uow := store.NewUnitOfWork(pool, nil)
	addProduct(t, uow, "TAKEN-1", 100, 1)
	group, err := uow.Group(store.GroupConfig{Max: 4})
	testenv.Must(t, err, "group")
	before := counts(t, pool)
	err = group.Do(context.Background(), func(ctx context.Context, tx *store.Tx) error {
		_, err := app.AddProduct(ctx, tx, app.Operator, app.CreateProduct{SKU: "TAKEN-1", Name: "Again", PriceCents: 1, Stock: 1}, now)
		return err
	})
	if !errors.Is(err, product.ErrSKUTaken) {
		t.Fatalf("a taken SKU: %v, want product.ErrSKUTaken", err)
	}
	if after := counts(t, pool); !maps.Equal(after, before) {
		t.Errorf("rows %v, want %v", after, before)
	}
	err = group.Do(context.Background(), func(ctx context.Context, tx *store.Tx) error {
		_, err := app.AddProduct(ctx, tx, app.Operator, app.CreateProduct{SKU: "NEXT-1", Name: "Next", PriceCents: 1, Stock: 1}, now)
		return err
	})
	testenv.Must(t, err, "the next group")
	if got := testenv.Count(t, pool, "SELECT count(*) FROM products WHERE sku = 'NEXT-1'"); got != 1 {
		t.Errorf("NEXT-1: %d rows, want 1", got)
	}
}

// TestGroupLanesRunAtOnce: with two lanes, a command does not wait for a
// running group while a lane is free.
func TestGroupLanesRunAtOnce(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	uow := store.NewUnitOfWork(pool, nil)
	group, err := uow.Group(store.GroupConfig{Lanes: 2})
	testenv.Must(t, err, "group")
	ctx := context.Background()
	running, release := make(chan struct{}), make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		firstDone <- group.Do(ctx, func(ctx context.Context, tx *store.Tx) error {
			if _, err := store.TxID(ctx, tx); err != nil {
				return err
			}
			close(running)
			<-release
			return nil
		})
	}()
	<-running
	var second int64
	err = group.Do(ctx, func(ctx context.Context, tx *store.Tx) (err error) {
		second, err = store.TxID(ctx, tx)
		return err
	})
	close(release)
	testenv.Must(t, err, "the second command, in the free lane, while the first holds its own")
	testenv.Must(t, <-firstDone, "the first command")
	if second == 0 {
		t.Error("the second command ran in no transaction")
	}
}

// TestGroupAnswersACommandThatPanics: a command that panics gets an error
// wrapping store.ErrPanicked, with the panic's value and stack, whether it
// ran alone (on its caller's goroutine) or in a group that another
// goroutine ran; the other commands of its group commit nothing and get
// ErrPanicked too, never a success; and the group runs the next commands.
func TestGroupAnswersACommandThatPanics(t *testing.T) {
	t.Parallel()
	add := func(sku string) func(context.Context, *store.Tx) error {
		return func(ctx context.Context, tx *store.Tx) error {
			_, err := app.AddProduct(ctx, tx, app.Operator, app.CreateProduct{SKU: sku, Name: "Thing " + sku, PriceCents: 100, Stock: 1}, now)
			return err
		}
	}
	panics := func(ctx context.Context, tx *store.Tx) error {
		if err := add("BEFORE-PANIC")(ctx, tx); err != nil {
			return err
		}
		panic("the command broke")
	}
	wantPanicked := func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrPanicked) || !strings.Contains(err.Error(), "the command broke") || !strings.Contains(err.Error(), "goroutine") {
			t.Errorf("the command that panicked: %v, want store.ErrPanicked with its value and stack", err)
		}
	}
	for _, tc := range []struct {
		name string
		max  int
	}{{"grouped", 0}, {"a transaction each", 1}} {
		t.Run(tc.name+", alone", func(t *testing.T) {
			t.Parallel()
			pool := testenv.Pool(t)
			group, err := store.NewUnitOfWork(pool, nil).Group(store.GroupConfig{Max: tc.max})
			testenv.Must(t, err, "group")
			wantPanicked(t, group.Do(context.Background(), panics))
			testenv.Must(t, group.Do(context.Background(), add("NEXT-1")), "the next command")
			if got := testenv.Count(t, pool, "SELECT count(*) FROM products WHERE sku IN ('BEFORE-PANIC', 'NEXT-1')"); got != 1 {
				t.Errorf("%d of BEFORE-PANIC and NEXT-1, want NEXT-1 alone", got)
			}
		})
	}
	t.Run("in a group another goroutine runs", func(t *testing.T) {
		t.Parallel()
		pool := testenv.Pool(t)
		group, err := store.NewUnitOfWork(pool, nil).Group(store.GroupConfig{})
		testenv.Must(t, err, "group")
		release := holdGroup(t, group)
		wait := queueInOrder(t, group, add("FIRST-1"), panics, add("LAST-1"))
		release()
		errs := wait()
		wantPanicked(t, errs[1])
		for _, i := range []int{0, 2} {
			if !errors.Is(errs[i], store.ErrPanicked) || strings.Contains(errs[i].Error(), "the command broke") {
				t.Errorf("command %d of the group: %v, want store.ErrPanicked without the other's panic", i, errs[i])
			}
		}
		if got := testenv.Count(t, pool, "SELECT count(*) FROM products WHERE sku IN ('FIRST-1', 'BEFORE-PANIC', 'LAST-1')"); got != 0 {
			t.Errorf("%d products of the group committed, want none", got)
		}
		testenv.Must(t, group.Do(context.Background(), add("NEXT-1")), "the next command")
	})
}

// holdGroup runs a command in group that holds its transaction open until
// release is called, so that the commands queued meanwhile share the next.
func holdGroup(t *testing.T, group *store.Group) (release func()) {
	t.Helper()
	running, released := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- group.Do(context.Background(), func(ctx context.Context, tx *store.Tx) error {
			if _, err := store.TxID(ctx, tx); err != nil {
				return err
			}
			close(running)
			<-released
			return nil
		})
	}()
	<-running
	return func() {
		close(released)
		testenv.Must(t, <-done, "the command holding the group")
	}
}

// queueInOrder starts each fn as a command of group, one after another, so
// that the group runs them in this order; wait returns their errors.
func queueInOrder(t *testing.T, group *store.Group, fns ...func(context.Context, *store.Tx) error) (wait func() []error) {
	t.Helper()
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	before := store.Waiting(group)
	for i, fn := range fns {
		wg.Go(func() { errs[i] = group.Do(context.Background(), fn) })
		testenv.Eventually(t, 5*time.Second, func() error {
			if n := store.Waiting(group); n != before+i+1 {
				return errors.New("not queued yet")
			}
			return nil
		})
	}
	return func() []error {
		wg.Wait()
		return errs
	}
}

// TestGroupSettlesEachCommandThatOnlyWrites: commands that read nothing
// send their writes together, with the next command's or with COMMIT; a
// write that fails among them fails its own command alone, whichever it
// is, and every other command's writes commit.
func TestGroupSettlesEachCommandThatOnlyWrites(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		skus []string // TAKEN-1 exists: its insert fails
	}{
		{"a failure first", []string{"TAKEN-1", "OK-1", "OK-2"}},
		{"a failure between two that commit", []string{"OK-1", "TAKEN-1", "OK-2"}},
		{"a failure last", []string{"OK-1", "OK-2", "TAKEN-1"}},
		{"failures one after another", []string{"OK-1", "TAKEN-1", "TAKEN-1", "OK-2"}},
		{"only failures", []string{"TAKEN-1", "TAKEN-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool := testenv.Pool(t)
			uow := store.NewUnitOfWork(pool, nil)
			addProduct(t, uow, "TAKEN-1", 100, 1)
			group, err := uow.Group(store.GroupConfig{})
			testenv.Must(t, err, "group")
			fns := make([]func(context.Context, *store.Tx) error, len(tc.skus))
			for i, sku := range tc.skus {
				fns[i] = func(ctx context.Context, tx *store.Tx) error {
					_, err := app.AddProduct(ctx, tx, app.Operator, app.CreateProduct{SKU: sku, Name: "Thing " + sku, PriceCents: 100, Stock: 1}, now)
					return err
				}
			}
			release := holdGroup(t, group)
			wait := queueInOrder(t, group, fns...)
			release()
			errs := wait()
			created := 1 // TAKEN-1, before
			for i, sku := range tc.skus {
				if sku == "TAKEN-1" {
					if !errors.Is(errs[i], product.ErrSKUTaken) {
						t.Errorf("command %d (%s): %v, want product.ErrSKUTaken", i, sku, errs[i])
					}
					continue
				}
				created++
				if errs[i] != nil {
					t.Errorf("command %d (%s): %v, want it committed", i, sku, errs[i])
				}
				if got := testenv.Count(t, pool, "SELECT count(*) FROM products WHERE sku = $1", sku); got != 1 {
					t.Errorf("command %d (%s) answered %v, and its product has %d rows, want 1", i, sku, errs[i], got)
				}
			}
			if got := testenv.Count(t, pool, "SELECT count(*) FROM outbox WHERE routing_key = 'product.created'"); got != created {
				t.Errorf("outbox has %d product.created, want %d", got, created)
			}
		})
	}
}

// TestGroupReadsAheadForItsCommands: the products a group's orders name
// are read once, with BEGIN, and each order is priced from that read
// without a round trip of its own, unless the group itself changed a
// product since, or the order asks for more than it named.
func TestGroupReadsAheadForItsCommands(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	uow := store.NewUnitOfWork(pool, nil)
	customer := addCustomer(t, uow, "ahead@example.com")
	buyer := app.Actor{UserID: customer.ID(), Role: user.RoleCustomer}
	a, b := addProduct(t, uow, "AHEAD-A", 100, 50), addProduct(t, uow, "AHEAD-B", 1000, 50)
	unnamed := addProduct(t, uow, "AHEAD-C", 10, 50) // no command names it
	missing := uuid.New()
	group, err := uow.Group(store.GroupConfig{})
	testenv.Must(t, err, "group")

	type placed struct {
		total int64
		sends int // the transaction's round trips before the order
		after int // and after it
	}
	results := map[string]*placed{}
	place := func(name string, ids ...uuid.UUID) func(context.Context, *store.Tx) error {
		results[name] = &placed{}
		items := make([]order.Item, len(ids))
		for i, id := range ids {
			items[i] = order.Item{ProductID: id, Quantity: 1}
		}
		return func(ctx context.Context, tx *store.Tx) error {
			r := results[name]
			r.sends = store.Sends(tx)
			o, err := app.PlaceOrder(ctx, tx, buyer, items, now)
			r.after = store.Sends(tx)
			if err != nil {
				return err
			}
			r.total = o.TotalCents()
			return nil
		}
	}
	reprice := func(ctx context.Context, tx *store.Tx) error {
		price := int64(200)
		_, err := app.UpdateProduct(ctx, tx, app.Operator, a.ID(), nil, &price, now)
		return err
	}
	commands := []struct {
		name  string
		named []uuid.UUID // what the command names ahead
		fn    func(context.Context, *store.Tx) error
		total int64 // 0: fails
		trips int   // round trips of its own
	}{
		{"an order of what it named", []uuid.UUID{a.ID()}, place("first", a.ID()), 100, 0},
		{"an order of two named products", []uuid.UUID{a.ID(), b.ID()}, place("both", a.ID(), b.ID()), 1100, 0},
		{"an order of a product that does not exist", []uuid.UUID{missing}, place("missing", missing), 0, 0},
		{"an order of more than any command named", []uuid.UUID{a.ID()}, place("more", a.ID(), unnamed.ID()), 110, 1},
		{"a new price for A, in the group", nil, reprice, -1, 1},
		{"an order of A after the group changed it", []uuid.UUID{a.ID()}, place("repriced", a.ID()), 200, 1},
	}
	release := holdGroup(t, group)
	errs := make([]error, len(commands))
	var wg sync.WaitGroup
	for i, c := range commands {
		wg.Go(func() { errs[i] = group.DoReading(context.Background(), store.ReadAhead{Products: c.named}, c.fn) })
		testenv.Eventually(t, 5*time.Second, func() error {
			if n := store.Waiting(group); n != i+1 {
				return errors.New("not queued yet")
			}
			return nil
		})
	}
	release()
	wg.Wait()

	names := []string{"first", "both", "missing", "more", "", "repriced"}
	for i, c := range commands {
		switch {
		case c.total == 0:
			if !errors.Is(errs[i], domain.ErrInvalid) {
				t.Errorf("%s: %v, want domain.ErrInvalid (no such product)", c.name, errs[i])
			}
		case errs[i] != nil:
			t.Errorf("%s: %v, want it committed", c.name, errs[i])
		}
		if names[i] == "" {
			continue
		}
		r := results[names[i]]
		if c.total > 0 && r.total != c.total {
			t.Errorf("%s: total %d, want %d", c.name, r.total, c.total)
		}
		if got := r.after - r.sends; got != c.trips {
			t.Errorf("%s: %d round trips of its own, want %d", c.name, got, c.trips)
		}
	}
	if got := testenv.Count(t, pool, "SELECT count(*) FROM orders WHERE user_id = $1", customer.ID()); got != 4 {
		t.Errorf("%d orders, want 4", got)
	}
	if got := testenv.Count(t, pool, "SELECT count(*) FROM orders WHERE total_cents = 200"); got != 1 {
		t.Errorf("%d orders at the new price, want 1", got)
	}
}
