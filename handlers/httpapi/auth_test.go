package httpapi_test

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/internal/testenv"
)

// mint signs claims with method and key, bypassing package auth.
func mint(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	testenv.Must(t, err, "sign token")
	return s
}

// claims are valid claims for id and role; edit them to break one thing.
func claims(id uuid.UUID, role string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"iss": auth.Issuer, "sub": id.String(), "role": role, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

func without(c jwt.MapClaims, key string) jwt.MapClaims {
	delete(c, key)
	return c
}

func set(c jwt.MapClaims, key string, value any) jwt.MapClaims {
	c[key] = value
	return c
}

// tamper replaces the payload of a signed token, keeping its signature.
func tamper(t *testing.T, token, payload string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q has %d parts", token, len(parts))
	}
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(payload))
	return strings.Join(parts, ".")
}

// expiredToken is a token issued by a real Auth whose clock is two days
// behind: it expired a day ago.
func expiredToken(t *testing.T, a *api, id uuid.UUID, role user.Role) string {
	t.Helper()
	tok, err := a.auth.Issue(user.Restore(user.State{ID: id, Role: role}), time.Now().Add(-48*time.Hour))
	testenv.Must(t, err, "issue expired token")
	return tok.Token
}

func TestProtectedEndpointsRejectInvalidTokens(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	adminID, adminToken := a.createAdmin(t)
	customerID, customerToken := a.registerCustomer(t, "frank@example.com")
	p := a.createProduct(t, adminToken, "AUTH-1", 500, 10)
	o := a.placeOrder(t, customerToken, item(p.ID, 1))
	before := a.snapshot(t)

	endpoints := []struct {
		method, path string
		body         map[string]any
		role         user.Role // whom a forged token pretends to be
	}{
		{"POST", "/v1/products", map[string]any{"sku": "AUTH-2", "name": "X", "price_cents": 1, "stock": 1}, user.RoleAdmin},
		{"PATCH", "/v1/products/" + p.ID, map[string]any{"name": "Renamed"}, user.RoleAdmin},
		{"POST", "/v1/products/" + p.ID + "/restock", map[string]any{"quantity": 5}, user.RoleAdmin},
		{"POST", "/v1/orders", orderBody(item(p.ID, 1)), user.RoleCustomer},
		{"POST", "/v1/orders/" + o.ID + "/cancel", nil, user.RoleCustomer},
	}
	wrongSecret := []byte("another-secret-of-at-least-32-bytes!!")

	for _, ep := range endpoints {
		id, valid := customerID, customerToken
		if ep.role == user.RoleAdmin {
			id, valid = adminID, adminToken
		}
		role := string(ep.role)
		badAuthorizations := []struct {
			name, authorization string
		}{
			{"no Authorization header", ""},
			{"Basic scheme", "Basic eDp5"},
			{"Basic scheme with a valid token", "Basic " + valid},
			{"Bearer without a token", "Bearer"},
			{"Bearer with only spaces", "Bearer    "},
			{"Token scheme with a valid token", "Token " + valid},
			{"the token without a scheme", valid},
			{"a token that is not a JWT", "Bearer not-a-jwt"},
			{"three garbage segments", "Bearer abc.def.ghi"},
			{"a valid token followed by junk", "Bearer " + valid + " junk"},
			{"signed with another secret", "Bearer " + mint(t, jwt.SigningMethodHS256, wrongSecret, claims(id, role))},
			{"payload changed after signing", "Bearer " + tamper(t, valid, `{"iss":"shop","sub":"`+id.String()+`","role":"admin","exp":9999999999}`)},
			{"expired a day ago", "Bearer " + expiredToken(t, a, id, ep.role)},
			{"expired a minute ago", "Bearer " + mint(t, jwt.SigningMethodHS256, testSecret, set(claims(id, role), "exp", time.Now().Add(-time.Minute).Unix()))},
			{"alg none", "Bearer " + mint(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(id, role))},
			{"alg HS512 with the right secret", "Bearer " + mint(t, jwt.SigningMethodHS512, testSecret, claims(id, role))},
			{"no exp", "Bearer " + mint(t, jwt.SigningMethodHS256, testSecret, without(claims(id, role), "exp"))},
			{"another issuer", "Bearer " + mint(t, jwt.SigningMethodHS256, testSecret, set(claims(id, role), "iss", "evil"))},
			{"no issuer", "Bearer " + mint(t, jwt.SigningMethodHS256, testSecret, without(claims(id, role), "iss"))},
			{"an unknown role", "Bearer " + mint(t, jwt.SigningMethodHS256, testSecret, set(claims(id, role), "role", "superuser"))},
			{"no role", "Bearer " + mint(t, jwt.SigningMethodHS256, testSecret, without(claims(id, role), "role"))},
			{"a subject that is not a UUID", "Bearer " + mint(t, jwt.SigningMethodHS256, testSecret, set(claims(id, role), "sub", "admin"))},
			{"no subject", "Bearer " + mint(t, jwt.SigningMethodHS256, testSecret, without(claims(id, role), "sub"))},
		}
		for _, bad := range badAuthorizations {
			t.Run(ep.method+" "+ep.path+"/"+bad.name, func(t *testing.T) {
				hdr := headers{}
				if bad.authorization != "" {
					hdr["Authorization"] = bad.authorization
				}
				var body any
				if ep.body != nil {
					body = ep.body
				}
				p := a.do(t, ep.method, ep.path, "", body, hdr).unauthorized(t)
				if len(p.Errors) != 0 {
					t.Errorf("401 names fields %q", p.fields())
				}
				// A request without a token hears that it needs one; with one
				// that does not do, that the token is bad.
				want := "invalid or expired token"
				if bad.authorization == "" {
					want = "needs a bearer token"
				}
				if !strings.Contains(p.Detail, want) {
					t.Errorf("401 says %q, want it to say %q", p.Detail, want)
				}
				a.unchanged(t, before)
			})
		}
	}

	// The same requests with a valid token get past authentication: the
	// table above can fail.
	t.Run("a valid token passes", func(t *testing.T) {
		a.do(t, "POST", "/v1/products", adminToken, endpoints[0].body, nil).expect(t, http.StatusCreated)
		a.do(t, "POST", "/v1/orders", customerToken, endpoints[3].body, nil).expect(t, http.StatusAccepted)
		a.do(t, "POST", "/v1/orders", "", endpoints[3].body, headers{"Authorization": "bearer " + customerToken}).expect(t, http.StatusAccepted)
	})
}

func TestEndpointsRequireTheirRole(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, adminToken := a.createAdmin(t)
	_, customerToken := a.registerCustomer(t, "grace@example.com")
	p := a.createProduct(t, adminToken, "ROLE-1", 700, 3)
	before := a.snapshot(t)

	tests := []struct {
		name         string
		token        string
		method, path string
		body         any
	}{
		{"customer creates a product", customerToken, "POST", "/v1/products", map[string]any{"sku": "ROLE-2", "name": "X", "price_cents": 1, "stock": 1}},
		{"customer updates a product", customerToken, "PATCH", "/v1/products/" + p.ID, map[string]any{"price_cents": 1}},
		{"customer restocks a product", customerToken, "POST", "/v1/products/" + p.ID + "/restock", map[string]any{"quantity": 100}},
		{"customer sends a malformed body to an admin endpoint", customerToken, "POST", "/v1/products", "not json"},
		{"customer patches an unknown product", customerToken, "PATCH", "/v1/products/" + uuid.NewString(), map[string]any{"price_cents": 1}},
		{"admin places an order", adminToken, "POST", "/v1/orders", orderBody(item(p.ID, 1))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.do(t, tt.method, tt.path, tt.token, tt.body, nil).problem(t, http.StatusForbidden)
			a.unchanged(t, before)
		})
	}
	var price, stock, version int64
	err := a.pool.QueryRow(t.Context(), `SELECT price_cents, stock, version FROM products WHERE id = $1`, p.ID).Scan(&price, &stock, &version)
	testenv.Must(t, err, "load product")
	if price != 700 || stock != 3 || version != 1 {
		t.Errorf("product is now price %d stock %d version %d, want 700 3 1", price, stock, version)
	}
}

// A correctly signed token whose user does not exist (a reset database, a
// secret shared across environments) must never reach a client as a driver
// error, and must write nothing.
func TestTokenOfAnUnknownUserLeaksNothing(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, adminToken := a.createAdmin(t)
	p := a.createProduct(t, adminToken, "GHOST-1", 100, 5)
	before := a.snapshot(t)
	ghost := mint(t, jwt.SigningMethodHS256, testSecret, claims(uuid.New(), "customer"))

	r := a.do(t, "POST", "/v1/orders", ghost, orderBody(item(p.ID, 1)), nil)

	if r.status != 401 {
		t.Fatalf("status %d, want 401: a token of a user that does not exist placed an order; %s", r.status, r.raw)
	}
	r.problem(t, 401) // problem+json, nothing internal
	a.unchanged(t, before)
}
