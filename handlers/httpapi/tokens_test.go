package httpapi_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestIssueTokenForValidCredentials(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.registerCustomer(t, "carol@example.com")

	tests := []struct {
		name  string
		email string
	}{
		{"the email as registered", "carol@example.com"},
		{"the email in another case", "  CAROL@Example.com "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			r := a.do(t, "POST", "/v1/tokens", "", map[string]any{"email": tt.email, "password": password}, nil)
			r.expect(t, http.StatusOK)
			if got, want := r.keys(), []string{"expires_at", "token"}; !slices.Equal(got, want) {
				t.Errorf("token fields %q, want %q", got, want)
			}
			var tok tokenJSON
			r.into(t, &tok)
			if tok.Token == "" {
				t.Fatal("empty token")
			}
			if min, max := start.Add(23*time.Hour), start.Add(25*time.Hour); tok.ExpiresAt.Before(min) || tok.ExpiresAt.After(max) {
				t.Errorf("expires_at %s, want about 24h from now", tok.ExpiresAt)
			}

			// The token opens a protected endpoint: the answer is about the
			// (unknown) order, not about authentication.
			r = a.do(t, "POST", "/v1/orders/"+uuid.NewString()+"/cancel", tok.Token, nil, nil)
			r.problem(t, http.StatusNotFound)
		})
	}
}

func TestIssueTokenRejectsBadCredentials(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.registerCustomer(t, "dave@example.com")
	before := a.snapshot(t)

	tests := []struct {
		name string
		body map[string]any
	}{
		{"wrong password", map[string]any{"email": "dave@example.com", "password": "wrong-password"}},
		{"password in another case", map[string]any{"email": "dave@example.com", "password": "CORRECT HORSE BATTERY"}},
		{"empty password", map[string]any{"email": "dave@example.com", "password": ""}},
		{"unknown email", map[string]any{"email": "nobody@example.com", "password": password}},
		{"empty email", map[string]any{"email": "", "password": password}},
		{"nothing", map[string]any{}},
	}
	var first problem
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.do(t, "POST", "/v1/tokens", "", tt.body, nil)
			p := r.unauthorized(t)
			if len(p.Errors) != 0 {
				t.Errorf("401 names fields %q; it must not say which credential was wrong", p.fields())
			}
			// Every failure reads the same, so that a caller cannot tell an
			// unknown email from a wrong password.
			if i == 0 {
				first = p
			} else if p.shape() != first.shape() {
				t.Errorf("problem %+v differs from the wrong-password one %+v", p.shape(), first.shape())
			}
		})
	}
	a.unchanged(t, before)
}

// shape is what a problem says, without what differs per request.
func (p problem) shape() [5]string {
	return [5]string{p.Type, p.Title, http.StatusText(p.Status), p.Detail, p.Instance}
}

func TestIssueTokenRejectsMalformedBodies(t *testing.T) {
	t.Parallel()
	a := newAPI(t)

	a.do(t, "POST", "/v1/tokens", "", "not json", nil).problem(t, http.StatusBadRequest)
	a.do(t, "POST", "/v1/tokens", "", "", nil).problem(t, http.StatusBadRequest)
	a.do(t, "POST", "/v1/tokens", "", `{"email":"a@example.com","password":"x","role":"admin"}`, nil).invalid(t, "role")
	a.do(t, "POST", "/v1/tokens", "", `{"email":1,"password":"x"}`, nil).invalid(t, "email")
}

func TestIssueTokenIgnoresIdempotencyKey(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.registerCustomer(t, "erin@example.com")

	// Issuing a token changes nothing; storing the reply would store a credential.
	for range 2 {
		r := a.do(t, "POST", "/v1/tokens", "", map[string]any{"email": "erin@example.com", "password": password}, headers{"Idempotency-Key": "login-1"})
		r.expect(t, http.StatusOK)
		if r.header.Get("Idempotent-Replayed") != "" {
			t.Error("a token was replayed from storage")
		}
	}
	if n := a.count(t, `SELECT count(*) FROM idempotency_keys`); n != 0 {
		t.Errorf("%d idempotency keys stored for POST /v1/tokens, want 0", n)
	}
}
