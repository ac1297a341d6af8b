package httpapi_test

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/shopdev/shop/internal/testenv"
)

func TestRegisterUserCreatesACustomer(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	const pw = "s3cret-password"

	r := a.do(t, "POST", "/v1/users", "", map[string]any{"email": "  Alice@Example.COM ", "name": "  Alice  ", "password": pw}, nil)

	r.expect(t, http.StatusCreated)
	if got, want := r.keys(), []string{"created_at", "email", "id", "name", "role", "version"}; !slices.Equal(got, want) {
		t.Errorf("user fields %q, want %q (never a password or its hash)", got, want)
	}
	var u userJSON
	r.into(t, &u)
	id, err := uuid.Parse(u.ID)
	if err != nil {
		t.Fatalf("id %q is not a UUID", u.ID)
	}
	if u.Email != "alice@example.com" {
		t.Errorf("email %q, want it trimmed and lower-cased: alice@example.com", u.Email)
	}
	if u.Name != "Alice" {
		t.Errorf("name %q, want it trimmed: Alice", u.Name)
	}
	if u.Role != "customer" {
		t.Errorf("role %q, want customer", u.Role)
	}
	if u.Version != 1 {
		t.Errorf("version %d, want 1", u.Version)
	}
	if u.CreatedAt.IsZero() {
		t.Error("created_at is zero")
	}
	if loc := r.header.Get("Location"); loc != "" {
		t.Errorf("Location %q, want none: no route reads a user", loc)
	}
	for _, secret := range []string{pw, "$2a$", "$2b$", "hash", "password"} {
		if strings.Contains(string(r.raw), secret) {
			t.Errorf("response contains %q: %s", secret, r.raw)
		}
	}

	var email, hash, role string
	err = a.pool.QueryRow(context.Background(), `SELECT email, password_hash, role FROM users WHERE id = $1`, id).Scan(&email, &hash, &role)
	testenv.Must(t, err, "load user row")
	if email != "alice@example.com" || role != "customer" {
		t.Errorf("stored email %q role %q, want alice@example.com customer", email, role)
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) != nil {
		t.Error("stored password_hash is not a bcrypt hash of the password")
	}

	events := a.outbox(t, u.ID)
	if got := routingKeys(events); !slices.Equal(got, []string{"user.registered"}) {
		t.Fatalf("outbox for the user %q, want [user.registered]", got)
	}
	for _, secret := range []string{pw, hash, "password"} {
		if strings.Contains(string(events[0].Payload), secret) {
			t.Errorf("user.registered payload contains %q: %s", secret, events[0].Payload)
		}
	}
	var env struct {
		Data map[string]any `json:"data"`
	}
	testenv.Must(t, json.Unmarshal(events[0].Payload, &env), "decode user.registered")
	if env.Data["email"] != "alice@example.com" || env.Data["role"] != "customer" || env.Data["user_id"] != u.ID {
		t.Errorf("user.registered data %v, want the user's id, normalized email and role", env.Data)
	}
}

func TestRegisterUserRejectsATakenEmail(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.registerCustomer(t, "alice@example.com")
	before := a.snapshot(t)

	tests := []struct {
		name  string
		email string
	}{
		{"the same address", "alice@example.com"},
		{"the address in capitals", "ALICE@EXAMPLE.COM"},
		{"the address in mixed case with spaces", "  Alice@Example.Com  "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.do(t, "POST", "/v1/users", "", map[string]any{"email": tt.email, "name": "Another Alice", "password": "another-password"}, nil)
			p := r.problem(t, http.StatusConflict)
			if !strings.Contains(p.Detail, "email") {
				t.Errorf("detail %q does not say the email is taken", p.Detail)
			}
			a.unchanged(t, before)
		})
	}
}

func TestRegisterUserRejectsInvalidFields(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	before := a.snapshot(t)

	valid := map[string]any{"email": "bob@example.com", "name": "Bob", "password": "long-enough"}
	with := func(field string, value any) map[string]any {
		body := maps.Clone(valid)
		body[field] = value
		return body
	}
	without := func(fields ...string) map[string]any {
		body := maps.Clone(valid)
		for _, f := range fields {
			delete(body, f)
		}
		return body
	}

	tests := []struct {
		name       string
		body       map[string]any
		wantFields []string
	}{
		{"email missing", without("email"), []string{"email"}},
		{"email empty", with("email", ""), []string{"email"}},
		{"email without @", with("email", "bob.example.com"), []string{"email"}},
		{"email without domain", with("email", "bob@"), []string{"email"}},
		{"email with a display name", with("email", "Bob <bob@example.com>"), []string{"email"}},
		{"email longer than 254 characters", with("email", strings.Repeat("b", 243)+"@example.com"), []string{"email"}},
		{"name missing", without("name"), []string{"name"}},
		{"name only spaces", with("name", "   "), []string{"name"}},
		{"name of 101 characters", with("name", strings.Repeat("é", 101)), []string{"name"}},
		{"password missing", without("password"), []string{"password"}},
		{"password of 9 bytes", with("password", "123456789"), []string{"password"}},
		{"password of 8 characters", with("password", "12345678"), []string{"password"}},
		{"password of spaces only", with("password", strings.Repeat(" ", 12)), []string{"password"}},
		{"password of 73 bytes", with("password", strings.Repeat("p", 73)), []string{"password"}},
		{"every field missing", without("email", "name", "password"), []string{"email", "name", "password"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.do(t, "POST", "/v1/users", "", tt.body, nil).invalid(t, tt.wantFields...)
			a.unchanged(t, before)
		})
	}
}

func TestRegisterUserAcceptsTheLimits(t *testing.T) {
	t.Parallel()
	a := newAPI(t)

	tests := []struct {
		name string
		body map[string]any
	}{
		{"name of 100 characters", map[string]any{"email": "a@example.com", "name": strings.Repeat("é", 100), "password": "long-enough"}},
		{"password of 10 bytes", map[string]any{"email": "b@example.com", "name": "B", "password": "1234567890"}},
		{"password of 72 bytes", map[string]any{"email": "c@example.com", "name": "C", "password": strings.Repeat("p", 72)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.do(t, "POST", "/v1/users", "", tt.body, nil).expect(t, http.StatusCreated)
			a.login(t, tt.body["email"].(string), tt.body["password"].(string))
		})
	}
}

func TestRegisterUserRejectsMalformedBodies(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	before := a.snapshot(t)

	t.Run("not JSON is 400", func(t *testing.T) {
		for _, body := range []string{
			"not json",
			"",
			"   \n",
			`{"email": "a@example.com"`,
			`{"email":"a@example.com","name":"A","password":"long-enough"} {"email":"b@example.com"}`,
			`{"email":"a@example.com","name":"A","password":"long-enough"}}`,
			`{"email":"a@example.com","name":"A","password":"long-enough"} trailing`,
			`[]`,
			`"a string"`,
			`42`,
		} {
			r := a.do(t, "POST", "/v1/users", "", body, nil)
			if r.status != http.StatusBadRequest {
				t.Errorf("body %q: status %d, want 400; %s", body, r.status, r.raw)
				continue
			}
			r.problem(t, http.StatusBadRequest)
		}
		a.unchanged(t, before)
	})

	t.Run("unknown or mistyped fields are 422 naming the field", func(t *testing.T) {
		tests := []struct {
			name      string
			body      string
			wantField string
		}{
			{"a client cannot make itself admin", `{"email":"a@example.com","name":"A","password":"long-enough","role":"admin"}`, "role"},
			{"unknown field", `{"email":"a@example.com","name":"A","password":"long-enough","is_admin":true}`, "is_admin"},
			{"name is a number", `{"email":"a@example.com","name":5,"password":"long-enough"}`, "name"},
			{"email is a boolean", `{"email":true,"name":"A","password":"long-enough"}`, "email"},
			{"password is a number", `{"email":"a@example.com","name":"A","password":12345678}`, "password"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				a.do(t, "POST", "/v1/users", "", tt.body, nil).invalid(t, tt.wantField)
				a.unchanged(t, before)
			})
		}
	})

	t.Run("a body over the limit is 413", func(t *testing.T) {
		huge := `{"email":"a@example.com","name":"` + strings.Repeat("x", 2<<20) + `","password":"long-enough"}`
		a.do(t, "POST", "/v1/users", "", huge, nil).problem(t, http.StatusRequestEntityTooLarge)
		a.unchanged(t, before)
	})

	t.Run("a chunked body over the limit is 413", func(t *testing.T) {
		huge := `{"email":"a@example.com","name":"` + strings.Repeat("x", 2<<20) + `","password":"long-enough"}`
		a.do(t, "POST", "/v1/users", "", strings.NewReader(huge), nil).problem(t, http.StatusRequestEntityTooLarge)
		a.unchanged(t, before)
	})
}
