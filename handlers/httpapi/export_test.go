package httpapi

import (
	"errors"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/order"
)

// The request bodies the API binds, for the fuzz tests of their decoding.
type (
	RegisterUserRequest  = registerUserRequest
	IssueTokenRequest    = issueTokenRequest
	CreateProductRequest = createProductRequest
	UpdateProductRequest = updateProductRequest
	RestockRequest       = restockRequest
	PlaceOrderRequest    = placeOrderRequest
)

// Decode is how every handler decodes its request body.
func Decode(body []byte, dst any) error { return decode(body, dst) }

// OrderItems decodes and validates the items of an order request, as
// POST /v1/orders does after Decode.
func OrderItems(r PlaceOrderRequest) ([]order.Item, error) { return r.items() }

// ClientError returns the status an error of Decode or OrderItems is
// answered with, and its detail or field errors; ok is false for an error
// that would be a 5xx, which decoding must never return.
func ClientError(err error) (status int, detail string, fields []domain.FieldError, ok bool) {
	var (
		pe         problemError
		validation *domain.ValidationError
	)
	switch {
	case errors.As(err, &validation):
		return 422, "", validation.Fields, true
	case errors.As(err, &pe):
		return pe.status, pe.detail, nil, pe.status >= 400 && pe.status < 500
	}
	return 0, "", nil, false
}
