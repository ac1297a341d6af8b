package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/projections"
	"github.com/shopdev/shop/store"
)

// placeOrderRequest keeps its items raw, so that each is decoded on its own
// and a bad field is named with its index ("items[2].quantity").
type placeOrderRequest struct {
	Items []json.RawMessage `json:"items"`
}

type orderItemRequest struct {
	ProductID string `json:"product_id"`
	Quantity  int64  `json:"quantity"`
}

// orderReply answers a command on an order: the order as every endpoint
// shows it, at its Location; 202, since the consumers decide what follows.
func orderReply(o *order.Order, err error) (reply, error) {
	if err != nil {
		return reply{}, err
	}
	return reply{status: http.StatusAccepted, location: "/v1/orders/" + o.ID().String(), body: projections.OrderOf(o)}, nil
}

// items converts the request's items and validates them, naming every
// malformed or invalid field at once.
func (r placeOrderRequest) items() ([]order.Item, error) {
	var v domain.Validation
	malformed := map[string]bool{}
	items := make([]order.Item, len(r.Items))
	for i, raw := range r.Items {
		if i >= order.MaxLines {
			break // order.ValidateItems rejects the length
		}
		var it orderItemRequest
		if err := decodeAt(fmt.Sprintf("items[%d]", i), raw, &it); err != nil {
			return nil, err
		}
		items[i].Quantity = it.Quantity
		if it.ProductID == "" {
			continue // order.ValidateItems says it is required
		}
		id, err := uuid.Parse(it.ProductID)
		if err != nil {
			field := order.ItemField(i, "product_id")
			v.Add(field, "must be a UUID")
			malformed[field] = true
			id = uuid.New() // a stand-in, so the other rules can still be checked
		}
		items[i].ProductID = id
	}
	var invalid *domain.ValidationError
	if errors.As(order.ValidateItems(items), &invalid) {
		for _, f := range invalid.Fields {
			if !malformed[f.Field] {
				v.Add(f.Field, f.Message)
			}
		}
	}
	return items, v.Err()
}

// placeOrder: POST /v1/orders (customer). 202: the order is pending until
// inventory reserves its stock.
func (s *Server) placeOrder(c echo.Context) error {
	var req placeOrderRequest
	body, err := bind(c, &req)
	if err != nil {
		return err
	}
	items, err := req.items()
	if err != nil {
		return err
	}
	actor := actorOf(c)
	return s.command(c, body, app.PlaceOrderReads(items), func(ctx context.Context, tx *store.Tx) (reply, error) {
		return orderReply(app.PlaceOrder(ctx, tx, actor.Actor, items, s.cfg.Now()))
	})
}

// cancelOrder: POST /v1/orders/{id}/cancel (the owner or an admin).
func (s *Server) cancelOrder(c echo.Context) error {
	id, err := pathID(c, order.ErrNotFound)
	if err != nil {
		return err
	}
	body, err := readBody(c)
	if err == nil && len(body) > 0 {
		err = decode(body, &struct{}{}) // a cancel takes no fields: a body, if any, is {}
	}
	if err != nil {
		return err
	}
	actor := actorOf(c)
	return s.command(c, body, store.ReadAhead{}, func(ctx context.Context, tx *store.Tx) (reply, error) {
		return orderReply(app.CancelOrder(ctx, tx, actor.Actor, id, s.cfg.Now()))
	})
}
