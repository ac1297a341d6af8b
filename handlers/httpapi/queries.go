package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/sony/gobreaker/v2"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/product"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/projections"
	"github.com/shopdev/shop/store"
)

// Headers of query responses.
const (
	// HeaderReadSource says where an answer came from: "redis", or
	// "postgres" (a miss, or Redis unavailable).
	HeaderReadSource = "X-Read-Source"
	// HeaderRedis is "unavailable" when Redis failed or its breaker is open.
	HeaderRedis = "X-Redis"
	// HeaderStale is "true" when ?min_version was not reached in time: the
	// answer is the latest view there is.
	HeaderStale = "X-Read-Stale"
)

// reads serves the query endpoints: Redis first (behind a circuit breaker,
// with short timeouts), Postgres when the model is missing (cache-aside: the
// model is then written back) or Redis is unavailable.
type reads struct {
	redis   *projections.Store // nil: Postgres only
	watcher *projections.Watcher
	pg      *store.Reads
	breaker *gobreaker.CircuitBreaker[any]
	wait    time.Duration
	timeout time.Duration
}

func newReads(cfg Config) *reads {
	r := &reads{redis: cfg.Redis, watcher: cfg.Watcher, pg: store.NewReads(cfg.Pool), wait: cfg.MinVersionWait, timeout: cfg.RedisTimeout}
	r.breaker = gobreaker.NewCircuitBreaker[any](gobreaker.Settings{
		Name:        "redis",
		MaxRequests: 1,               // one probe when half-open
		Timeout:     2 * time.Second, // open this long before probing
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 3 },
	})
	return r
}

// viaRedis runs fn against Redis through the breaker; ok is false when
// Redis is not configured, failed, or the breaker is open.
func viaRedis[T any](c echo.Context, r *reads, fn func(ctx context.Context) (T, error)) (T, bool) {
	var zero T
	if r.redis == nil {
		return zero, false
	}
	out, err := r.breaker.Execute(func() (any, error) {
		ctx, cancel := context.WithTimeout(c.Request().Context(), r.timeout)
		defer cancel()
		return fn(ctx)
	})
	if err != nil {
		c.Response().Header().Set(HeaderRedis, "unavailable")
		return zero, false
	}
	return out.(T), true
}

type found[T any] struct {
	v  T
	ok bool
}

// minVersion parses ?min_version; 0 when absent.
func minVersion(c echo.Context) (int64, error) {
	v := c.QueryParam("min_version")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, domain.Invalid("min_version", "must be a positive integer")
	}
	return n, nil
}

// waitFor waits, up to MinVersionWait, until the model reaches min.
func (r *reads) waitFor(c echo.Context, min int64, wait func(context.Context, int64) (bool, error)) {
	if min == 0 || r.watcher == nil {
		return
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), r.wait)
	defer cancel()
	_, _ = r.breaker.Execute(func() (any, error) { return wait(ctx, min) })
}

func (s *Server) getProduct(c echo.Context) error {
	id, err := pathID(c, product.ErrNotFound)
	if err != nil {
		return err
	}
	min, err := minVersion(c)
	if err != nil {
		return err
	}
	r := s.reads
	r.waitFor(c, min, func(ctx context.Context, v int64) (bool, error) { return r.watcher.WaitProduct(ctx, id, v) })
	if got, ok := viaRedis(c, r, func(ctx context.Context) (found[projections.Product], error) {
		p, ok, err := r.redis.Product(ctx, id)
		return found[projections.Product]{p, ok}, err
	}); ok && got.ok {
		return answer(c, "redis", got.v, got.v.Version < min)
	}
	p, ok, err := r.pg.Product(c.Request().Context(), id)
	if err != nil {
		return err
	}
	if !ok {
		return product.ErrNotFound
	}
	s.cacheAside(c, func(ctx context.Context) error { return r.redis.PutProduct(ctx, p) })
	return answer(c, "postgres", p, p.Version < min)
}

func (s *Server) listProducts(c echo.Context) error {
	after, limit, err := page(c, "after")
	if err != nil {
		return err
	}
	r := s.reads
	type result struct {
		list []projections.Product
		next uuid.UUID
	}
	if got, ok := viaRedis(c, r, func(ctx context.Context) (result, error) {
		list, next, err := r.redis.Products(ctx, after, limit)
		return result{list, next}, err
	}); ok && len(got.list) > 0 {
		return answerPage(c, "redis", got.list, got.next)
	}
	// An empty page from Redis may mean a flushed Redis: Postgres decides.
	list, next, err := r.pg.Products(c.Request().Context(), after, limit)
	if err != nil {
		return err
	}
	return answerPage(c, "postgres", list, next)
}

func (s *Server) getOrder(c echo.Context) error {
	id, err := pathID(c, order.ErrNotFound)
	if err != nil {
		return err
	}
	min, err := minVersion(c)
	if err != nil {
		return err
	}
	actor := actorOf(c)
	r := s.reads
	r.waitFor(c, min, func(ctx context.Context, v int64) (bool, error) { return r.watcher.WaitOrder(ctx, id, v) })
	source := "redis"
	o, ok := viaRedis(c, r, func(ctx context.Context) (found[projections.Order], error) {
		o, ok, err := r.redis.Order(ctx, id)
		return found[projections.Order]{o, ok}, err
	})
	if !ok || !o.ok {
		source = "postgres"
		o.v, o.ok, err = r.pg.Order(c.Request().Context(), id)
		if err != nil {
			return err
		}
		if o.ok {
			v := o.v
			s.cacheAside(c, func(ctx context.Context) error { return r.redis.PutOrder(ctx, v) })
		}
	}
	if !o.ok || (o.v.UserID != actor.UserID && actor.Role != user.RoleAdmin) {
		return order.ErrNotFound // another user's order is not given away
	}
	return answer(c, source, o.v, o.v.Version < min)
}

func (s *Server) listOrders(c echo.Context) error {
	before, limit, err := page(c, "before")
	if err != nil {
		return err
	}
	actor := actorOf(c)
	owner := actor.UserID
	if v := c.QueryParam("user_id"); v != "" {
		if actor.Role != user.RoleAdmin {
			return fmt.Errorf("%w: only admins list other users' orders", domain.ErrForbidden)
		}
		if owner, err = uuid.Parse(v); err != nil {
			return domain.Invalid("user_id", "must be a UUID")
		}
	}
	r := s.reads
	type result struct {
		list []projections.Order
		next uuid.UUID
	}
	if got, ok := viaRedis(c, r, func(ctx context.Context) (result, error) {
		list, next, err := r.redis.UserOrders(ctx, owner, before, limit)
		return result{list, next}, err
	}); ok && len(got.list) > 0 {
		return answerPage(c, "redis", got.list, got.next)
	}
	list, next, err := r.pg.UserOrders(c.Request().Context(), owner, before, limit)
	if err != nil {
		return err
	}
	return answerPage(c, "postgres", list, next)
}

// cacheAside writes a model read from Postgres back to Redis, when Redis is
// healthy; a failure only counts against the breaker: the answer stands.
func (s *Server) cacheAside(c echo.Context, put func(ctx context.Context) error) {
	if s.reads.redis == nil || s.reads.breaker.State() != gobreaker.StateClosed {
		return
	}
	_, _ = s.reads.breaker.Execute(func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request().Context()), s.reads.timeout)
		defer cancel()
		return nil, put(ctx)
	})
}

// page parses a cursor parameter and ?limit (1..100, default 20).
func page(c echo.Context, cursor string) (uuid.UUID, int, error) {
	var v domain.Validation
	id := uuid.Nil
	if s := c.QueryParam(cursor); s != "" {
		var err error
		id, err = uuid.Parse(s)
		v.Check(err == nil, cursor, "must be a UUID from a previous page's next")
	}
	limit := 20
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if v.Check(err == nil && n >= 1 && n <= 100, "limit", "must be an integer from 1 to 100") {
			limit = n
		}
	}
	return id, limit, v.Err()
}

func answer(c echo.Context, source string, body any, stale bool) error {
	c.Response().Header().Set(HeaderReadSource, source)
	if stale {
		c.Response().Header().Set(HeaderStale, "true")
	}
	return c.JSON(http.StatusOK, body)
}

type pageBody[T any] struct {
	Items []T     `json:"items"`
	Next  *string `json:"next"` // the cursor of the next page; null on the last
}

func answerPage[T any](c echo.Context, source string, items []T, next uuid.UUID) error {
	body := pageBody[T]{Items: items}
	if items == nil {
		body.Items = []T{}
	}
	if next != uuid.Nil {
		s := next.String()
		body.Next = &s
	}
	c.Response().Header().Set(HeaderReadSource, source)
	return c.JSON(http.StatusOK, body)
}
