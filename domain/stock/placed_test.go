package stock_test

import (
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/stock"
)

func TestCheckPlaced(t *testing.T) {
	order := uuid.Must(uuid.NewV7())
	a, b := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
	ordered := []stock.Line{{ProductID: a, Quantity: 1}, {ProductID: b, Quantity: 2}}
	tests := []struct {
		name     string
		lines    []stock.Line
		found    bool
		wantErr  error // nil: accepted
		wantKind error // the domain's kind of it, which makes a consumer dead-letter it
	}{
		{"the order's own lines", ordered, true, nil, nil},
		{"no such order", ordered, false, stock.ErrUnknownOrder, domain.ErrNotFound},
		{"another quantity", []stock.Line{{ProductID: a, Quantity: 1}, {ProductID: b, Quantity: 9}}, true, stock.ErrNotAsOrdered, domain.ErrInvalid},
		{"another product", []stock.Line{{ProductID: a, Quantity: 1}, {ProductID: uuid.Must(uuid.NewV7()), Quantity: 2}}, true, stock.ErrNotAsOrdered, domain.ErrInvalid},
		{"a line missing", ordered[:1], true, stock.ErrNotAsOrdered, domain.ErrInvalid},
		{"a line more", append(ordered[:2:2], stock.Line{ProductID: uuid.Must(uuid.NewV7()), Quantity: 1}), true, stock.ErrNotAsOrdered, domain.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := stock.CheckPlaced(order, tt.lines, ordered, tt.found)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("CheckPlaced = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || !errors.Is(err, tt.wantKind) {
				t.Fatalf("CheckPlaced = %v, want %v (%v)", err, tt.wantErr, tt.wantKind)
			}
		})
	}
}
