package auth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/domain/user"
)

// BenchmarkAdmit: what admitting a request's bearer token costs, the same
// token again and again, as a client sends it.
func BenchmarkAdmit(b *testing.B) {
	a, err := auth.New(auth.Config{Secret: []byte(strings.Repeat("s", 32)), PasswordCost: 4})
	if err != nil {
		b.Fatal(err)
	}
	tok, err := a.Issue(customer(1), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	g, err := auth.NewGate(auth.GateConfig{Auth: a, Lookup: func(context.Context, uuid.UUID) (auth.Access, error) {
		return auth.Access{Role: user.RoleCustomer, TokenVersion: 1}, nil
	}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.Admit(ctx, tok.Token); err != nil {
			b.Fatal(err)
		}
	}
}
