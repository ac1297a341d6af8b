package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/shopdev/shop/domain/order"
)

// Product is the read model of a product: the one shape of a product in
// the API, whichever endpoint answers it.
type Product struct {
	ID             uuid.UUID `json:"id"`
	SKU            string    `json:"sku"`
	Name           string    `json:"name"`
	PriceCents     int64     `json:"price_cents"`
	StockAvailable int64     `json:"stock_available"`
	Version        int64     `json:"version"`
}

// Order is the read model of an order: the one shape of an order in the
// API, whichever endpoint answers it.
type Order struct {
	ID         uuid.UUID    `json:"id"`
	UserID     uuid.UUID    `json:"user_id"`
	Status     order.Status `json:"status"`
	Reason     string       `json:"reason,omitempty"` // why it was rejected
	Items      []order.Line `json:"items"`
	TotalCents int64        `json:"total_cents"`
	Version    int64        `json:"version"`
	UpdatedAt  time.Time    `json:"updated_at"`
}

// Product returns a product; found is false when Redis has no complete
// model of it (unknown, or not projected yet).
func (s *Store) Product(ctx context.Context, id uuid.UUID) (p Product, found bool, err error) {
	h, err := s.rdb.HGetAll(ctx, s.productKey(id)).Result()
	if err != nil {
		return Product{}, false, fmt.Errorf("read product %s: %w", id, err)
	}
	p, found = parseProduct(h)
	return p, found, nil
}

// Products returns up to limit products in creation order, starting after
// the product with id after (uuid.Nil: from the first), and the cursor of
// the next page (uuid.Nil when this page is the last).
func (s *Store) Products(ctx context.Context, after uuid.UUID, limit int) ([]Product, uuid.UUID, error) {
	from := "-"
	if after != uuid.Nil {
		from = "(" + after.String()
	}
	ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.productsKey(), Start: from, Stop: "+",
		ByLex: true, Count: int64(limit + 1)}).Result()
	if err != nil {
		return nil, uuid.Nil, fmt.Errorf("list products: %w", err)
	}
	hashes, next, err := s.page(ctx, ids, limit, s.productKey)
	if err != nil {
		return nil, uuid.Nil, err
	}
	out := make([]Product, 0, len(hashes))
	for _, h := range hashes {
		if p, ok := parseProduct(h); ok {
			out = append(out, p)
		}
	}
	return out, next, nil
}

// Order returns an order; found is false when Redis has no complete model
// of it.
func (s *Store) Order(ctx context.Context, id uuid.UUID) (o Order, found bool, err error) {
	h, err := s.rdb.HGetAll(ctx, s.orderKey(id)).Result()
	if err != nil {
		return Order{}, false, fmt.Errorf("read order %s: %w", id, err)
	}
	return parseOrder(h)
}

// Orders returns up to limit of a user's orders (uuid.Nil: everyone's),
// newest first, starting after the order with id before (uuid.Nil: the
// newest), and the cursor of the next page.
func (s *Store) Orders(ctx context.Context, user, before uuid.UUID, limit int) ([]Order, uuid.UUID, error) {
	from := "+"
	if before != uuid.Nil {
		from = "(" + before.String()
	}
	index := s.ordersKey()
	if user != uuid.Nil {
		index = s.userOrdersKey(user)
	}
	ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: index, Start: from, Stop: "-",
		ByLex: true, Rev: true, Count: int64(limit + 1)}).Result()
	if err != nil {
		return nil, uuid.Nil, fmt.Errorf("list orders of %s: %w", user, err)
	}
	hashes, next, err := s.page(ctx, ids, limit, s.orderKey)
	if err != nil {
		return nil, uuid.Nil, err
	}
	out := make([]Order, 0, len(hashes))
	for _, h := range hashes {
		o, ok, err := parseOrder(h)
		if err != nil {
			return nil, uuid.Nil, err
		}
		if ok {
			out = append(out, o)
		}
	}
	return out, next, nil
}

// page reads the hashes of up to limit ids (ids holds one more when a next
// page exists) in one pipeline.
func (s *Store) page(ctx context.Context, ids []string, limit int, key func(uuid.UUID) string) ([]map[string]string, uuid.UUID, error) {
	next := uuid.Nil
	if len(ids) > limit {
		ids = ids[:limit]
		var err error
		if next, err = uuid.Parse(ids[limit-1]); err != nil {
			return nil, uuid.Nil, fmt.Errorf("index member %q: %w", ids[limit-1], err)
		}
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			parsed, err := uuid.Parse(id)
			if err != nil {
				return fmt.Errorf("index member %q: %w", id, err)
			}
			cmds[i] = p.HGetAll(ctx, key(parsed))
		}
		return nil
	})
	if err != nil {
		return nil, uuid.Nil, fmt.Errorf("read page: %w", err)
	}
	out := make([]map[string]string, len(cmds))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, next, nil
}

func parseProduct(h map[string]string) (Product, bool) {
	if h[groupCatalog+"_v"] == "" || h[groupStock+"_v"] == "" {
		return Product{}, false // not projected yet, or only part of it
	}
	id, err := uuid.Parse(h["id"])
	if err != nil {
		return Product{}, false
	}
	return Product{ID: id, SKU: h["sku"], Name: h["name"], PriceCents: atoi(h["price_cents"]),
		StockAvailable: atoi(h["stock_available"]), Version: atoi(h["version"])}, true
}

func parseOrder(h map[string]string) (Order, bool, error) {
	if h[groupDetails+"_v"] == "" || h[groupStatus+"_v"] == "" {
		return Order{}, false, nil
	}
	o := Order{Status: order.Status(h["status"]), Reason: h["reason"], TotalCents: atoi(h["total_cents"]), Version: atoi(h["version"])}
	var err error
	if o.ID, err = uuid.Parse(h["id"]); err != nil {
		return Order{}, false, fmt.Errorf("order model id %q: %w", h["id"], err)
	}
	if o.UserID, err = uuid.Parse(h["user_id"]); err != nil {
		return Order{}, false, fmt.Errorf("order model user %q: %w", h["user_id"], err)
	}
	if err := json.Unmarshal([]byte(h["items"]), &o.Items); err != nil {
		return Order{}, false, fmt.Errorf("order model items: %w", err)
	}
	if o.UpdatedAt, err = time.Parse(time.RFC3339Nano, h["updated_at"]); err != nil {
		return Order{}, false, fmt.Errorf("order model updated_at: %w", err)
	}
	return o, true, nil
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}
