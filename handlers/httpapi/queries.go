package httpapi

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/product"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/projections"
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

// getProduct: GET /v1/products/{id}[?min_version=N] (anyone).
func (s *Server) getProduct(c echo.Context) error {
	id, min, err := oneOf(c, product.ErrNotFound)
	if err != nil {
		return err
	}
	r, err := s.cfg.Reads.Product(c.Request().Context(), id, min)
	return answer(c, r, err)
}

// listProducts: GET /v1/products?after=ID&limit=N (anyone).
func (s *Server) listProducts(c echo.Context) error {
	after, limit, err := page(c, "after")
	if err != nil {
		return err
	}
	r, err := s.cfg.Reads.Products(c.Request().Context(), after, limit)
	return answer(c, pageOf(r), err)
}

// getOrder: GET /v1/orders/{id}[?min_version=N] (its owner, an admin).
// Another user's order is not given away: 404.
func (s *Server) getOrder(c echo.Context) error {
	id, min, err := oneOf(c, order.ErrNotFound)
	if err != nil {
		return err
	}
	r, err := s.cfg.Reads.Order(c.Request().Context(), id, min)
	if err == nil && !actorOf(c).mayRead(r.Value.UserID) {
		err = order.ErrNotFound
	}
	return answer(c, r, err)
}

// listOrders: GET /v1/orders?before=ID&limit=N[&user_id=U]: the caller's
// orders, newest first; an admin sees everyone's, or user_id's.
func (s *Server) listOrders(c echo.Context) error {
	before, limit, err := page(c, "before")
	if err != nil {
		return err
	}
	actor := actorOf(c)
	owner := actor.UserID
	if actor.Role == user.RoleAdmin {
		owner = uuid.Nil // everyone's
	}
	if v := c.QueryParam("user_id"); v != "" {
		if actor.Role != user.RoleAdmin {
			return fmt.Errorf("%w: only admins list other users' orders", domain.ErrForbidden)
		}
		if owner, err = uuid.Parse(v); err != nil {
			return domain.Invalid("user_id", "must be a UUID")
		}
	}
	r, err := s.cfg.Reads.Orders(c.Request().Context(), owner, before, limit)
	return answer(c, pageOf(r), err)
}

// oneOf parses the :id of a path (malformed: notFound, as an unknown id
// would be) and ?min_version (0 when absent).
func oneOf(c echo.Context, notFound error) (uuid.UUID, int64, error) {
	id, err := pathID(c, notFound)
	if err != nil {
		return uuid.Nil, 0, err
	}
	if c.Request().URL.RawQuery == "" {
		return id, 0, nil // most reads: spares parsing an empty query into a map
	}
	v := c.QueryParam("min_version")
	if v == "" {
		return id, 0, nil
	}
	min, err := strconv.ParseInt(v, 10, 64)
	if err != nil || min < 1 {
		return uuid.Nil, 0, domain.Invalid("min_version", "must be a positive integer")
	}
	return id, min, nil
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

// pageBody is a page of a list as the API answers it.
type pageBody[T any] struct {
	Items []T     `json:"items"`
	Next  *string `json:"next"` // the cursor of the next page; null on the last
}

func pageOf[T any](r projections.Read[projections.Page[T]]) projections.Read[pageBody[T]] {
	body := pageBody[T]{Items: r.Value.Items}
	if body.Items == nil {
		body.Items = []T{}
	}
	if r.Value.Next != uuid.Nil {
		next := r.Value.Next.String()
		body.Next = &next
	}
	return projections.Read[pageBody[T]]{Value: body, Source: r.Source, RedisDown: r.RedisDown, Stale: r.Stale}
}

// answer answers a read, or its error: the body, and headers that say
// where it came from and whether it is older than asked.
func answer[T any](c echo.Context, r projections.Read[T], err error) error {
	h := c.Response().Header()
	if r.RedisDown {
		h.Set(HeaderRedis, "unavailable")
	}
	if err != nil {
		return err
	}
	h.Set(HeaderReadSource, string(r.Source))
	if r.Stale {
		h.Set(HeaderStale, "true")
	}
	if r.JSON != nil {
		return c.JSONBlob(http.StatusOK, r.JSON) // encoded once per version, by the reader
	}
	return c.JSON(http.StatusOK, r.Value)
}
