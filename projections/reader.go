package projections

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/sony/gobreaker/v2"

	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/product"
)

// Origin is where the read models come from: the write side's products and
// orders in the read models' shape (Postgres, through store.Reads). A
// Reader asks it what Redis cannot answer; Rebuild walks it.
type Origin interface {
	Product(ctx context.Context, id uuid.UUID) (Product, bool, error)
	Products(ctx context.Context, after uuid.UUID, limit int) ([]Product, uuid.UUID, error)
	Order(ctx context.Context, id uuid.UUID) (Order, bool, error)
	// Orders lists the orders of user (uuid.Nil: of everyone), newest
	// first.
	Orders(ctx context.Context, user, before uuid.UUID, limit int) ([]Order, uuid.UUID, error)
	EachProduct(ctx context.Context, fn func(Product) error) error
	EachOrder(ctx context.Context, fn func(Order) error) error
}

// ReaderConfig configures a Reader.
type ReaderConfig struct {
	// Store is Redis, read first; nil reads Postgres only.
	Store *Store
	// Origin answers when Redis misses, fails or its breaker is open.
	// Required.
	Origin Origin
	// Timeout bounds each Redis read, so that a slow Redis never holds a
	// request. Default 250ms.
	Timeout time.Duration
	// MinVersionWait bounds how long a read asking for a version waits for
	// the projection to reach it. Default 2s.
	MinVersionWait time.Duration
	// CacheMax is how many products and orders the reader keeps in its
	// own memory, with their JSON, once read from Redis (see memo): the
	// copies follow the projector's announcements, so they serve only
	// after Watch. 0: none.
	CacheMax int
	// CacheTTL bounds how long a copy serves, in case an announcement
	// was lost while the subscription seemed healthy (Redis pub/sub does
	// not resend; the copies are dropped whenever the subscription is made
	// again). Default 30s.
	CacheTTL time.Duration
	// Now is the clock of the copies. Default time.Now.
	Now func() time.Time
}

// Validate fills defaults and checks the configuration.
func (c *ReaderConfig) Validate() error {
	if c.Origin == nil {
		return errors.New("projections: the reader's origin is required")
	}
	if c.Timeout == 0 {
		c.Timeout = 250 * time.Millisecond
	}
	if c.MinVersionWait == 0 {
		c.MinVersionWait = 2 * time.Second
	}
	if c.CacheMax < 0 {
		return errors.New("projections: the reader's cache size must not be negative")
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Reader is the read side the query endpoints use: Redis first, behind a
// circuit breaker and a short timeout; Postgres when a model is missing
// from Redis (cache-aside: it is then written back at its Postgres
// version, so it can never overwrite a newer projection) or when Redis
// fails. A read may ask for a minimum version and wait, woken by the
// projector's announcements, for the model to reach it.
type Reader struct {
	cfg     ReaderConfig
	breaker *gobreaker.CircuitBreaker[any]
	watcher *Watcher // nil until Watch
	memo    *memo    // nil: no copies (CacheMax 0, or before Watch)
}

// NewReader returns a reader for cfg.
func NewReader(cfg ReaderConfig) (*Reader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Reader{cfg: cfg, breaker: gobreaker.NewCircuitBreaker[any](gobreaker.Settings{
		Name:        "redis",
		MaxRequests: 1,               // one probe when half-open
		Timeout:     2 * time.Second, // open this long before probing
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 3 },
	})}, nil
}

// Watch subscribes to the projector's announcements until ctx ends, so
// that reads asking for a minimum version wait for it. Call it once,
// before serving.
func (r *Reader) Watch(ctx context.Context) {
	if r.cfg.Store == nil {
		return
	}
	if r.cfg.CacheMax > 0 {
		r.memo = newMemo(r.cfg.CacheMax, r.cfg.CacheTTL, r.cfg.Now)
		r.watcher = r.cfg.Store.watch(ctx, r.memo.announced, r.memo.subscribed)
		return
	}
	r.watcher = r.cfg.Store.Watch(ctx)
}

// Cached returns how many models the reader keeps copies of.
func (r *Reader) Cached() int {
	if r.memo == nil {
		return 0
	}
	return r.memo.size()
}

// Waiting returns how many reads wait now for a model to reach the version
// they asked for.
func (r *Reader) Waiting() int {
	if r.watcher == nil {
		return 0
	}
	return r.watcher.waiting()
}

// Source says where an answer came from.
type Source string

// Sources.
const (
	FromRedis    Source = "redis"
	FromPostgres Source = "postgres" // a miss, or Redis unavailable
)

// Read is a model as a reader found it.
type Read[T any] struct {
	Value  T
	Source Source
	// RedisDown says Redis failed or its breaker is open: the answer is
	// Postgres's.
	RedisDown bool
	// Stale says the model had not reached the version asked for within
	// MinVersionWait: the answer is the latest there is.
	Stale bool
	// JSON is Value encoded as the API answers it (with a final newline),
	// when the reader had it encoded already; nil: encode Value.
	JSON []byte
}

// Page is a page of a list: its items and the cursor of the next page
// (uuid.Nil on the last).
type Page[T any] struct {
	Items []T
	Next  uuid.UUID
}

// Product returns a product, at least at version min (0: any) if it gets
// there within MinVersionWait; product.ErrNotFound when there is none.
func (r *Reader) Product(ctx context.Context, id uuid.UUID, min int64) (Read[Product], error) {
	return readOne(ctx, r, (*Store).productKey, id, min, product.ErrNotFound,
		(*Store).Product, r.cfg.Origin.Product, (*Store).PutProduct, func(p Product) int64 { return p.Version })
}

// Order returns an order, as Product returns a product; order.ErrNotFound
// when there is none. Who may see it is the caller's to decide.
func (r *Reader) Order(ctx context.Context, id uuid.UUID, min int64) (Read[Order], error) {
	return readOne(ctx, r, (*Store).orderKey, id, min, order.ErrNotFound,
		(*Store).Order, r.cfg.Origin.Order, (*Store).PutOrder, func(o Order) int64 { return o.Version })
}

// Products returns up to limit products in creation order after the given
// id (uuid.Nil: from the first).
func (r *Reader) Products(ctx context.Context, after uuid.UUID, limit int) (Read[Page[Product]], error) {
	return readPage(ctx, r, func(ctx context.Context, s *Store) ([]Product, uuid.UUID, error) {
		return s.Products(ctx, after, limit)
	}, func(ctx context.Context) ([]Product, uuid.UUID, error) {
		return r.cfg.Origin.Products(ctx, after, limit)
	})
}

// Orders returns up to limit orders of user (uuid.Nil: everyone's), newest
// first, before the given id (uuid.Nil: from the newest).
func (r *Reader) Orders(ctx context.Context, user, before uuid.UUID, limit int) (Read[Page[Order]], error) {
	return readPage(ctx, r, func(ctx context.Context, s *Store) ([]Order, uuid.UUID, error) {
		return s.Orders(ctx, user, before, limit)
	}, func(ctx context.Context) ([]Order, uuid.UUID, error) {
		return r.cfg.Origin.Orders(ctx, user, before, limit)
	})
}

// readOne is Product and Order: wait for min, Redis, else Postgres and
// cache-aside.
func readOne[T any](ctx context.Context, r *Reader, key func(*Store, uuid.UUID) string, id uuid.UUID, min int64, notFound error,
	fromRedis func(*Store, context.Context, uuid.UUID) (T, bool, error),
	fromPostgres func(context.Context, uuid.UUID) (T, bool, error),
	put func(*Store, context.Context, T) error, version func(T) int64) (Read[T], error) {
	var out Read[T]
	var k string
	if r.cfg.Store != nil {
		k = key(r.cfg.Store, id)
	}
	if r.memo != nil {
		if e, ok := r.memo.get(k, min); ok {
			out.Value, out.Source, out.JSON = e.value.(T), FromRedis, e.json
			return out, nil
		}
	}
	if min > 0 && r.watcher != nil {
		wctx, cancel := context.WithTimeout(ctx, r.cfg.MinVersionWait)
		_, _ = r.breaker.Execute(func() (any, error) { return r.watcher.wait(wctx, k, min) })
		cancel()
	}
	var ticket uint64
	if r.memo != nil {
		ticket = r.memo.reserve(k)
		defer r.memo.release(k, ticket)
	}
	type found struct {
		v  T
		ok bool
	}
	got, redisOK := viaRedis(ctx, r, func(ctx context.Context, s *Store) (found, error) {
		v, ok, err := fromRedis(s, ctx, id)
		return found{v, ok}, err
	})
	out.RedisDown = !redisOK && r.cfg.Store != nil
	if redisOK && got.ok {
		out.Value, out.Source = got.v, FromRedis
		if r.memo != nil {
			out.JSON = r.memo.fill(k, ticket, version(got.v), got.v)
		}
	} else {
		v, ok, err := fromPostgres(ctx, id)
		if err != nil {
			return out, err
		}
		if !ok {
			return out, notFound
		}
		out.Value, out.Source = v, FromPostgres
		r.cacheAside(ctx, func(ctx context.Context, s *Store) error { return put(s, ctx, v) })
	}
	out.Stale = version(out.Value) < min
	return out, nil
}

// readPage is Products and Orders: Redis, else Postgres. An empty page
// from Redis may mean a flushed Redis: Postgres decides.
func readPage[T any](ctx context.Context, r *Reader,
	fromRedis func(context.Context, *Store) ([]T, uuid.UUID, error),
	fromPostgres func(context.Context) ([]T, uuid.UUID, error)) (Read[Page[T]], error) {
	var out Read[Page[T]]
	got, redisOK := viaRedis(ctx, r, func(ctx context.Context, s *Store) (Page[T], error) {
		items, next, err := fromRedis(ctx, s)
		return Page[T]{items, next}, err
	})
	out.RedisDown = !redisOK && r.cfg.Store != nil
	if redisOK && len(got.Items) > 0 {
		out.Value, out.Source = got, FromRedis
		return out, nil
	}
	items, next, err := fromPostgres(ctx)
	if err != nil {
		return out, err
	}
	out.Value, out.Source = Page[T]{items, next}, FromPostgres
	return out, nil
}

// viaRedis runs fn against Redis through the breaker, within Timeout; ok
// is false when there is no Redis, it failed, or the breaker is open.
func viaRedis[T any](ctx context.Context, r *Reader, fn func(context.Context, *Store) (T, error)) (T, bool) {
	var zero T
	if r.cfg.Store == nil {
		return zero, false
	}
	out, err := r.breaker.Execute(func() (any, error) {
		ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		defer cancel()
		return fn(ctx, r.cfg.Store)
	})
	if err != nil {
		return zero, false
	}
	return out.(T), true
}

// cacheAside writes a model read from Postgres back to Redis when Redis is
// healthy; a failure only counts against the breaker: the answer stands.
func (r *Reader) cacheAside(ctx context.Context, put func(context.Context, *Store) error) {
	if r.cfg.Store == nil || r.breaker.State() != gobreaker.StateClosed {
		return
	}
	_, _ = r.breaker.Execute(func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
		defer cancel()
		return nil, put(ctx, r.cfg.Store)
	})
}

// ProductOf is the read model of a product as the write side holds it: what
// a command that changed it answers, in the shape of every read of it.
func ProductOf(p *product.Product) Product {
	return Product{ID: p.ID(), SKU: p.SKU(), Name: p.Name(), PriceCents: p.PriceCents(),
		StockAvailable: p.Stock(), Version: p.Version()}
}

// OrderOf is the read model of an order as the write side holds it.
func OrderOf(o *order.Order) Order {
	items := o.Lines()
	if items == nil {
		items = []order.Line{}
	}
	return Order{ID: o.ID(), UserID: o.CustomerID(), Status: o.Status(), Reason: o.Reason(), Items: items,
		TotalCents: o.TotalCents(), Version: o.Version(), UpdatedAt: o.UpdatedAt().UTC()}
}
