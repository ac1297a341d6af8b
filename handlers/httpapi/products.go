package httpapi

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/domain/product"
	"github.com/shopdev/shop/projections"
	"github.com/shopdev/shop/store"
)

type createProductRequest struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Stock      int64  `json:"stock"`
}

type updateProductRequest struct {
	Name       *string `json:"name"`
	PriceCents *int64  `json:"price_cents"`
}

type restockRequest struct {
	Quantity int64 `json:"quantity"`
}

func productLocation(p *product.Product) string { return "/v1/products/" + p.ID().String() }

// createProduct: POST /v1/products (admin).
func (s *Server) createProduct(c echo.Context) error {
	var req createProductRequest
	body, err := bind(c, &req)
	if err != nil {
		return err
	}
	return s.command(c, body, func(ctx context.Context, tx *store.Tx) (reply, error) {
		p, err := app.AddProduct(ctx, tx, app.CreateProduct{SKU: req.SKU, Name: req.Name, PriceCents: req.PriceCents, Stock: req.Stock}, s.cfg.Now())
		if err != nil {
			return reply{}, err
		}
		return reply{status: http.StatusCreated, location: productLocation(p), body: projections.ProductOf(p)}, nil
	})
}

// updateProduct: PATCH /v1/products/{id} (admin).
func (s *Server) updateProduct(c echo.Context) error {
	id, err := pathID(c, product.ErrNotFound)
	if err != nil {
		return err
	}
	var req updateProductRequest
	body, err := bind(c, &req)
	if err != nil {
		return err
	}
	return s.command(c, body, func(ctx context.Context, tx *store.Tx) (reply, error) {
		p, err := app.UpdateProduct(ctx, tx, id, req.Name, req.PriceCents, s.cfg.Now())
		if err != nil {
			return reply{}, err
		}
		return reply{status: http.StatusOK, body: projections.ProductOf(p)}, nil
	})
}

// restockProduct: POST /v1/products/{id}/restock (admin).
func (s *Server) restockProduct(c echo.Context) error {
	id, err := pathID(c, product.ErrNotFound)
	if err != nil {
		return err
	}
	var req restockRequest
	body, err := bind(c, &req)
	if err != nil {
		return err
	}
	return s.command(c, body, func(ctx context.Context, tx *store.Tx) (reply, error) {
		p, err := app.Restock(ctx, tx, id, req.Quantity, s.cfg.Now())
		if err != nil {
			return reply{}, err
		}
		return reply{status: http.StatusAccepted, location: productLocation(p), body: projections.ProductOf(p)}, nil
	})
}
