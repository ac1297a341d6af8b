package httpapi_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/crypto/bcrypt"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/handlers/httpapi"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/store"
)

// keyed tunes an API to sign with key "new" and verify "new" and "old"
// (a rotation in progress), and to read a user's role and token version
// afresh on every request.
func keyed(t *testing.T) tuning {
	t.Helper()
	a, err := auth.New(auth.Config{PasswordCost: bcrypt.MinCost, Keys: []auth.Key{
		{ID: "new", Secret: []byte(strings.Repeat("n", 32))}, {ID: "old", Secret: []byte(strings.Repeat("o", 32))}}})
	testenv.Must(t, err, "auth")
	return func(c *httpapi.Config, _ *pgxpool.Pool) {
		c.Auth = a
		c.AccessTTL = time.Nanosecond
	}
}

// signer issues tokens with keys of its own, as another deployment (or a
// retired key) would.
func signer(t *testing.T, keys ...auth.Key) *auth.Auth {
	t.Helper()
	a, err := auth.New(auth.Config{PasswordCost: bcrypt.MinCost, Keys: keys})
	testenv.Must(t, err, "signer")
	return a
}

// operate runs an admin command of the command line.
func (a *api) operate(t *testing.T, fn func(ctx context.Context, tx *store.Tx) error) {
	t.Helper()
	testenv.Must(t, store.NewUnitOfWork(a.pool, nil).Do(context.Background(), fn), "operate")
}

// userByEmail loads a user as it is now.
func (a *api) userByEmail(t *testing.T, email string) *user.User {
	t.Helper()
	var u *user.User
	a.operate(t, func(ctx context.Context, tx *store.Tx) (err error) {
		u, err = tx.Users.ByEmail(ctx, email)
		return err
	})
	return u
}

// TestAuthorizationMatrix: every route, asked by every kind of caller,
// answers what it should: public routes anyone; admin routes admins only;
// orders their owner and admins; and a token that was revoked, belongs to
// an admin demoted since, belongs to a deleted user, or was signed with a
// retired key, is worth
// nothing anywhere a token is needed.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	a := newAPIWith(t, keyed(t))
	_, admin := a.createAdmin(t)
	p := a.createProduct(t, admin, "MATRIX-1", 100, 1000)
	_, customer := a.registerCustomer(t, "owner@example.com")
	_, other := a.registerCustomer(t, "other@example.com")
	_, revoked := a.registerCustomer(t, "revoked@example.com")
	a.operate(t, func(ctx context.Context, tx *store.Tx) error {
		_, err := app.RevokeTokens(ctx, tx, app.Operator, "revoked@example.com", time.Now())
		return err
	})
	demotedAdmin := "demoted@example.com"
	a.operate(t, func(ctx context.Context, tx *store.Tx) error {
		hash, err := a.auth.HashPassword(password)
		if err != nil {
			return err
		}
		_, err = app.AddUser(ctx, tx, app.Operator, app.RegisterUser{Email: demotedAdmin, Name: "D", PasswordHash: hash, Role: user.RoleAdmin}, time.Now())
		return err
	})
	demoted := a.login(t, demotedAdmin, password)
	a.operate(t, func(ctx context.Context, tx *store.Tx) error {
		_, _, err := app.ChangeRole(ctx, tx, app.Operator, demotedAdmin, user.RoleCustomer, time.Now())
		return err
	})
	_, deleted := a.registerCustomer(t, "deleted@example.com")
	_, err := a.pool.Exec(context.Background(), `DELETE FROM users WHERE email = 'deleted@example.com'`)
	testenv.Must(t, err, "delete a user")
	// The admin's own token, but signed with a key the API no longer lists.
	retiredToken, err := signer(t, auth.Key{ID: "retired", Secret: []byte(strings.Repeat("r", 32))}).Issue(a.userByEmail(t, adminEmail), time.Now())
	testenv.Must(t, err, "token of a retired key")
	retired := retiredToken.Token

	callers := []struct{ name, token string }{
		{"anonymous", ""}, {"customer", customer}, {"another customer", other}, {"admin", admin},
		{"revoked token", revoked}, {"demoted admin's token", demoted}, {"retired key's token", retired},
		{"deleted user's token", deleted},
	}
	n := 0
	unique := func() string { n++; return fmt.Sprintf("m%d", n) }
	order := func() string { return "/v1/orders/" + a.placeOrder(t, customer, item(p.ID, 1)).ID }
	routes := []struct {
		method string
		path   func() string
		body   func() any
		want   [8]int // by caller, in the order of callers
	}{
		{"POST", fixed("/v1/users"), func() any {
			return map[string]any{"email": unique() + "@example.com", "name": "N", "password": password}
		}, [8]int{201, 201, 201, 201, 201, 201, 201, 201}},
		{"POST", fixed("/v1/tokens"), func() any { return map[string]any{"email": "owner@example.com", "password": password} },
			[8]int{200, 200, 200, 200, 200, 200, 200, 200}},
		{"GET", fixed("/v1/products"), nil, [8]int{200, 200, 200, 200, 200, 200, 200, 200}},
		{"GET", fixed("/v1/products/" + p.ID), nil, [8]int{200, 200, 200, 200, 200, 200, 200, 200}},
		{"POST", fixed("/v1/products"), func() any {
			return map[string]any{"sku": unique(), "name": "N", "price_cents": 1, "stock": 1}
		}, [8]int{401, 403, 403, 201, 401, 401, 401, 401}},
		{"PATCH", fixed("/v1/products/" + p.ID), func() any { return map[string]any{"name": "Renamed " + unique()} },
			[8]int{401, 403, 403, 200, 401, 401, 401, 401}},
		{"POST", fixed("/v1/products/" + p.ID + "/restock"), func() any { return map[string]any{"quantity": 1} },
			[8]int{401, 403, 403, 202, 401, 401, 401, 401}},
		{"GET", fixed("/v1/orders"), nil, [8]int{401, 200, 200, 200, 401, 401, 401, 401}},
		{"GET", order, nil, [8]int{401, 200, 404, 200, 401, 401, 401, 401}},
		{"POST", fixed("/v1/orders"), func() any { return orderBody(item(p.ID, 1)) }, [8]int{401, 202, 202, 403, 401, 401, 401, 401}},
		{"POST", func() string { return order() + "/cancel" }, nil, [8]int{401, 202, 404, 202, 401, 401, 401, 401}},
		{"GET", fixed("/v1/admin/audit"), nil, [8]int{401, 403, 403, 200, 401, 401, 401, 401}},
	}
	for _, r := range routes {
		for i, c := range callers {
			path := r.path()
			t.Run(r.method+" "+strings.ReplaceAll(path, "/", "_")+" as "+c.name, func(t *testing.T) {
				var body any
				if r.body != nil {
					body = r.body()
				}
				got := a.do(t, r.method, path, c.token, body, nil)
				if got.status != r.want[i] {
					t.Errorf("%s %s as %s: %d, want %d; body %s", r.method, path, c.name, got.status, r.want[i], got.raw)
				}
				if got.header.Get("X-Content-Type-Options") != "nosniff" || got.header.Get("X-Frame-Options") != "DENY" || got.header.Get("Referrer-Policy") == "" {
					t.Errorf("security headers missing: %v", got.header)
				}
				// A token, and whatever a signed-in route answers, is for its
				// reader only.
				private := r.want[0] == http.StatusUnauthorized || path == "/v1/tokens"
				if private && got.header.Get("Cache-Control") != "no-store" {
					t.Errorf("Cache-Control %q, want no-store", got.header.Get("Cache-Control"))
				}
			})
		}
	}
}

// fixed is a path that is the same for every caller.
func fixed(path string) func() string { return func() string { return path } }

// TestKeyRotation: tokens signed with any listed key are accepted, the
// first key signs new ones, and a token of a key no longer listed is not.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	a := newAPIWith(t, keyed(t))
	_, token := a.registerCustomer(t, "rota@example.com")
	u := a.userByEmail(t, "rota@example.com")
	header := func(tok string) string {
		t.Helper()
		raw, err := jwtHeader(tok)
		testenv.Must(t, err, "token header")
		return raw
	}
	if h := header(token); !strings.Contains(h, `"kid":"new"`) {
		t.Errorf("a new token's header %s, want kid new (the first key)", h)
	}
	for _, tc := range []struct {
		name string
		key  auth.Key
		want int
	}{
		{"the signing key", auth.Key{ID: "new", Secret: []byte(strings.Repeat("n", 32))}, http.StatusOK},
		{"the older key, still listed", auth.Key{ID: "old", Secret: []byte(strings.Repeat("o", 32))}, http.StatusOK},
		{"a retired key", auth.Key{ID: "retired", Secret: []byte(strings.Repeat("r", 32))}, http.StatusUnauthorized},
		{"a listed kid with another secret", auth.Key{ID: "old", Secret: []byte(strings.Repeat("x", 32))}, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := signer(t, tc.key).Issue(u, time.Now())
			testenv.Must(t, err, "issue")
			a.do(t, "GET", "/v1/orders", tok.Token, nil, nil).expect(t, tc.want)
		})
	}
}

// jwtHeader decodes the header of a compact JWS.
func jwtHeader(token string) (string, error) {
	head, _, ok := strings.Cut(token, ".")
	if !ok {
		return "", fmt.Errorf("not a JWS: %q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(head)
	return string(raw), err
}
