package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/labstack/echo/v4"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/product"
	"github.com/shopdev/shop/projections"
	"github.com/shopdev/shop/store"
)

type createProductRequest struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	PriceCents *int64 `json:"price_cents"`
	Stock      *int64 `json:"stock"`
}

// check reports the numbers a client left out, which 0 would otherwise
// stand for (a free product, an empty shelf), together with what the
// domain finds wrong with the rest, so that every field is named at once.
func (r createProductRequest) check(now time.Time) error {
	var v domain.Validation
	v.Check(r.PriceCents != nil, "price_cents", "is required")
	v.Check(r.Stock != nil, "stock", "is required")
	if v.Err() == nil {
		return nil
	}
	var invalid *domain.ValidationError
	if _, err := product.Create(uuid.New(), r.SKU, r.Name, deref(r.PriceCents), deref(r.Stock), now); errors.As(err, &invalid) {
		for _, f := range invalid.Fields {
			v.Add(f.Field, f.Message)
		}
	}
	return v.Err()
}

func deref(n *int64) int64 {
	if n == nil {
		return 0
	}
	return *n
}

type updateProductRequest struct {
	Name       *string `json:"name"`
	PriceCents *int64  `json:"price_cents"`
}

type restockRequest struct {
	Quantity int64 `json:"quantity"`
}

// productReply answers a command on a product: the product as every
// endpoint shows it, at its Location.
func productReply(status int) func(*product.Product, error) (reply, error) {
	return func(p *product.Product, err error) (reply, error) {
		if err != nil {
			return reply{}, err
		}
		return reply{status: status, location: "/v1/products/" + p.ID().String(), body: projections.ProductOf(p)}, nil
	}
}

// createProduct: POST /v1/products (admin).
func (s *Server) createProduct(c echo.Context) error {
	var req createProductRequest
	body, err := bind(c, &req)
	if err == nil {
		err = req.check(s.cfg.Now())
	}
	if err != nil {
		return err
	}
	return s.command(c, body, store.ReadAhead{}, func(ctx context.Context, tx *store.Tx) (reply, error) {
		return productReply(http.StatusCreated)(app.AddProduct(ctx, tx, actorOf(c).Actor,
			app.CreateProduct{SKU: req.SKU, Name: req.Name, PriceCents: *req.PriceCents, Stock: *req.Stock}, s.cfg.Now()))
	})
}

// updateProduct: PATCH /v1/products/{id} (admin).
func (s *Server) updateProduct(c echo.Context) error {
	var req updateProductRequest
	id, body, err := bindOn(c, product.ErrNotFound, &req)
	if err != nil {
		return err
	}
	return s.command(c, body, store.ReadAhead{}, func(ctx context.Context, tx *store.Tx) (reply, error) {
		return productReply(http.StatusOK)(app.UpdateProduct(ctx, tx, actorOf(c).Actor, id, req.Name, req.PriceCents, s.cfg.Now()))
	})
}

// restockProduct: POST /v1/products/{id}/restock (admin).
func (s *Server) restockProduct(c echo.Context) error {
	var req restockRequest
	id, body, err := bindOn(c, product.ErrNotFound, &req)
	if err != nil {
		return err
	}
	return s.command(c, body, store.ReadAhead{}, func(ctx context.Context, tx *store.Tx) (reply, error) {
		return productReply(http.StatusAccepted)(app.Restock(ctx, tx, actorOf(c).Actor, id, req.Quantity, s.cfg.Now()))
	})
}
