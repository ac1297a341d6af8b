package user_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/user"
)

const hash = "$2a$10$abcdefghijklmnopqrstuuZ1ZcP1bKXK1n6GxY8m1zQeFv9m3m0Oe"

var now = time.Date(2025, 3, 4, 5, 6, 7, 8, time.FixedZone("UTC-5", -5*60*60))

// invalidFields asserts err is a validation error (domain.ErrInvalid) and
// returns the sorted names of its fields.
func invalidFields(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		t.Fatal("error = nil, want a validation error")
	}
	if !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("errors.Is(%v, domain.ErrInvalid) = false", err)
	}
	var ve *domain.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("%v is not a *domain.ValidationError", err)
	}
	names := make([]string, 0, len(ve.Fields))
	for _, f := range ve.Fields {
		if f.Message == "" {
			t.Errorf("field %q has an empty message", f.Field)
		}
		names = append(names, f.Field)
	}
	sort.Strings(names)
	return names
}

func assertFields(t *testing.T, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("error = %v, want nil", err)
		}
		return
	}
	got := invalidFields(t, err)
	want = append([]string(nil), want...)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("invalid fields = %v, want %v (error: %v)", got, want, err)
	}
}

// longEmail returns a syntactically valid address of exactly n bytes (n >= 10).
func longEmail(t *testing.T, n int) string {
	t.Helper()
	const suffix = "@example.com"
	local := strings.Repeat("a", n-len(suffix))
	e := local + suffix
	if len(e) != n {
		t.Fatalf("longEmail built %d bytes, want %d", len(e), n)
	}
	return e
}

func TestValidateRegistration(t *testing.T) {
	const (
		email = "alice@example.com"
		name  = "Alice"
		pw    = "correct horse"
	)
	tests := []struct {
		name             string
		email, uname, pw string
		wantFields       []string
		longEmailN       int
	}{
		{name: "valid", email: email, uname: name, pw: pw},
		{name: "valid with surrounding spaces and capitals", email: "  Alice@Example.COM ", uname: "  Alice  ", pw: pw},
		{name: "valid name of max runes (multibyte)", email: email, uname: strings.Repeat("é", user.MaxNameLength), pw: pw},
		{name: "valid password of min length", email: email, uname: name, pw: strings.Repeat("p", user.MinPasswordLength)},
		{name: "valid password of max length", email: email, uname: name, pw: strings.Repeat("p", user.MaxPasswordLength)},
		{name: "valid email of max length", uname: name, pw: pw, longEmailN: user.MaxEmailLength},

		{name: "email empty", email: "", uname: name, pw: pw, wantFields: []string{"email"}},
		{name: "email only spaces", email: "   ", uname: name, pw: pw, wantFields: []string{"email"}},
		{name: "email too long", uname: name, pw: pw, longEmailN: user.MaxEmailLength + 1, wantFields: []string{"email"}},
		{name: "email without at", email: "alice.example.com", uname: name, pw: pw, wantFields: []string{"email"}},
		{name: "email without domain", email: "alice@", uname: name, pw: pw, wantFields: []string{"email"}},
		{name: "email without local part", email: "@example.com", uname: name, pw: pw, wantFields: []string{"email"}},
		{name: "email with display name", email: "Alice <alice@example.com>", uname: name, pw: pw, wantFields: []string{"email"}},
		{name: "email with two ats", email: "a@b@example.com", uname: name, pw: pw, wantFields: []string{"email"}},
		{name: "email with inner space", email: "ali ce@example.com", uname: name, pw: pw, wantFields: []string{"email"}},
		{name: "two addresses", email: "a@example.com, b@example.com", uname: name, pw: pw, wantFields: []string{"email"}},

		{name: "name empty", email: email, uname: "", pw: pw, wantFields: []string{"name"}},
		{name: "name only spaces", email: email, uname: " \t\n ", pw: pw, wantFields: []string{"name"}},
		{name: "name too long", email: email, uname: strings.Repeat("x", user.MaxNameLength+1), pw: pw, wantFields: []string{"name"}},
		{name: "name too long (multibyte)", email: email, uname: strings.Repeat("é", user.MaxNameLength+1), pw: pw, wantFields: []string{"name"}},
		{name: "name invalid utf-8", email: email, uname: "Al\xffice", pw: pw, wantFields: []string{"name"}},

		{name: "password empty", email: email, uname: name, pw: "", wantFields: []string{"password"}},
		{name: "password one short", email: email, uname: name, pw: strings.Repeat("p", user.MinPasswordLength-1), wantFields: []string{"password"}},
		{name: "password one too long", email: email, uname: name, pw: strings.Repeat("p", user.MaxPasswordLength+1), wantFields: []string{"password"}},

		{name: "email and name", email: "nope", uname: "", pw: pw, wantFields: []string{"email", "name"}},
		{name: "name and password", email: email, uname: "", pw: "short", wantFields: []string{"name", "password"}},
		{name: "everything", email: "", uname: "", pw: "", wantFields: []string{"email", "name", "password"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.email
			if tt.longEmailN > 0 {
				e = longEmail(t, tt.longEmailN)
			}
			err := user.ValidateRegistration(e, tt.uname, tt.pw)
			assertFields(t, err, tt.wantFields)
		})
	}
}

func TestValidateRegistrationReportsEachFieldOnce(t *testing.T) {
	err := user.ValidateRegistration("", "", "")
	var ve *domain.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v is not a *domain.ValidationError", err)
	}
	if len(ve.Fields) != 3 {
		t.Errorf("got %d field errors, want 3: %v", len(ve.Fields), ve.Fields)
	}
}

func TestNormalizeEmail(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice@example.com", "alice@example.com"},
		{"  Alice@Example.COM\t", "alice@example.com"},
		{"BOB@EXAMPLE.ORG", "bob@example.org"},
		{"", ""},
		{"   ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := user.NormalizeEmail(tt.in); got != tt.want {
				t.Errorf("NormalizeEmail(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRoleValid(t *testing.T) {
	tests := []struct {
		role user.Role
		want bool
	}{
		{user.RoleCustomer, true},
		{user.RoleAdmin, true},
		{"", false},
		{"Admin", false},
		{"superuser", false},
	}
	for _, tt := range tests {
		t.Run(string(tt.role), func(t *testing.T) {
			if got := tt.role.Valid(); got != tt.want {
				t.Errorf("Role(%q).Valid() = %v, want %v", tt.role, got, tt.want)
			}
		})
	}
}

func TestRegister(t *testing.T) {
	tests := []struct {
		name      string
		email     string
		uname     string
		role      user.Role
		wantEmail string
		wantName  string
	}{
		{"customer", "alice@example.com", "Alice", user.RoleCustomer, "alice@example.com", "Alice"},
		{"admin", "root@example.com", "Root", user.RoleAdmin, "root@example.com", "Root"},
		{"normalizes email and trims name", "  Alice.Smith@Example.COM ", "  Alice Smith ", user.RoleCustomer, "alice.smith@example.com", "Alice Smith"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := uuid.New()
			u, err := user.Register(id, tt.email, tt.uname, hash, tt.role, now)
			if err != nil {
				t.Fatalf("Register: %v", err)
			}
			if u.ID() != id {
				t.Errorf("ID = %v, want %v", u.ID(), id)
			}
			if u.Email() != tt.wantEmail {
				t.Errorf("Email = %q, want %q", u.Email(), tt.wantEmail)
			}
			if u.Name() != tt.wantName {
				t.Errorf("Name = %q, want %q", u.Name(), tt.wantName)
			}
			if u.Role() != tt.role {
				t.Errorf("Role = %q, want %q", u.Role(), tt.role)
			}
			if u.PasswordHash() != hash {
				t.Errorf("PasswordHash = %q, want %q", u.PasswordHash(), hash)
			}
			if u.Version() != 1 {
				t.Errorf("Version = %d, want 1", u.Version())
			}
			if !u.CreatedAt().Equal(now.Truncate(time.Microsecond)) || u.CreatedAt().Location() != time.UTC {
				t.Errorf("CreatedAt = %v, want %v in UTC", u.CreatedAt(), now.UTC())
			}

			events := u.Events()
			if len(events) != 1 {
				t.Fatalf("recorded %d events, want exactly 1", len(events))
			}
			e := events[0]
			if e.Type != "user.registered" {
				t.Errorf("event type = %q, want %q", e.Type, "user.registered")
			}
			if e.AggregateType != "user" {
				t.Errorf("aggregate type = %q, want %q", e.AggregateType, "user")
			}
			if e.AggregateID != id {
				t.Errorf("aggregate id = %v, want %v", e.AggregateID, id)
			}
			if e.AggregateVersion != 1 {
				t.Errorf("aggregate version = %d, want 1", e.AggregateVersion)
			}
			if e.ID.Version() != 7 {
				t.Errorf("event id version = %d, want 7", e.ID.Version())
			}
			if !e.OccurredAt.Equal(now.Truncate(time.Microsecond)) || e.OccurredAt.Location() != time.UTC {
				t.Errorf("OccurredAt = %v, want %v in UTC", e.OccurredAt, now.UTC())
			}
			data, ok := e.Data.(user.Registered)
			if !ok {
				t.Fatalf("event data is %T, want user.Registered", e.Data)
			}
			want := user.Registered{UserID: id, Email: tt.wantEmail, Name: tt.wantName, Role: tt.role}
			if data != want {
				t.Errorf("event data = %+v, want %+v", data, want)
			}
			raw, err := json.Marshal(e.Data)
			if err != nil {
				t.Fatalf("marshal event data: %v", err)
			}
			if strings.Contains(string(raw), hash) || strings.Contains(strings.ToLower(string(raw)), "password") {
				t.Errorf("event data leaks the password: %s", raw)
			}
			if again := u.Events(); len(again) != 0 {
				t.Errorf("second Events() returned %d events, want 0", len(again))
			}
		})
	}
}

func TestRegisteredCarriesNoPasswordField(t *testing.T) {
	typ := reflect.TypeFor[user.Registered]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if strings.Contains(strings.ToLower(f.Name), "password") || strings.Contains(strings.ToLower(f.Name), "hash") {
			t.Errorf("user.Registered has field %s", f.Name)
		}
	}
}

func TestRegisterInvalid(t *testing.T) {
	tests := []struct {
		name       string
		id         uuid.UUID
		email      string
		uname      string
		hash       string
		role       user.Role
		wantFields []string
	}{
		{"nil id", uuid.Nil, "alice@example.com", "Alice", hash, user.RoleCustomer, []string{"id"}},
		{"empty role", uuid.New(), "alice@example.com", "Alice", hash, "", []string{"role"}},
		{"unknown role", uuid.New(), "alice@example.com", "Alice", hash, "superuser", []string{"role"}},
		{"role in wrong case", uuid.New(), "alice@example.com", "Alice", hash, "Admin", []string{"role"}},
		{"empty hash", uuid.New(), "alice@example.com", "Alice", "", user.RoleCustomer, []string{"password"}},
		{"bad email", uuid.New(), "not-an-email", "Alice", hash, user.RoleCustomer, []string{"email"}},
		{"empty name", uuid.New(), "alice@example.com", "  ", hash, user.RoleCustomer, []string{"name"}},
		{"everything", uuid.Nil, "", "", "", "x", []string{"email", "id", "name", "password", "role"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := user.Register(tt.id, tt.email, tt.uname, tt.hash, tt.role, now)
			if u != nil {
				t.Errorf("Register returned a user %+v with an error", u.State())
			}
			assertFields(t, err, tt.wantFields)
		})
	}
}

func TestRestoreStateRoundTrip(t *testing.T) {
	created := time.Date(2024, 12, 31, 23, 59, 59, 0, time.UTC)
	tests := []struct {
		name  string
		state user.State
	}{
		{"customer", user.State{ID: uuid.New(), Email: "alice@example.com", Name: "Alice", PasswordHash: hash, Role: user.RoleCustomer, Version: 1, CreatedAt: created}},
		{"admin at a later version", user.State{ID: uuid.New(), Email: "root@example.com", Name: "Root", PasswordHash: "h", Role: user.RoleAdmin, Version: 42, CreatedAt: created}},
		{"zero state", user.State{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := user.Restore(tt.state)
			if got := u.State(); got != tt.state {
				t.Errorf("State() = %+v, want %+v", got, tt.state)
			}
			if u.ID() != tt.state.ID || u.Email() != tt.state.Email || u.Name() != tt.state.Name ||
				u.PasswordHash() != tt.state.PasswordHash || u.Role() != tt.state.Role ||
				u.Version() != tt.state.Version || !u.CreatedAt().Equal(tt.state.CreatedAt) {
				t.Errorf("accessors disagree with state %+v", tt.state)
			}
			if events := u.Events(); len(events) != 0 {
				t.Errorf("Restore recorded %d events, want 0", len(events))
			}
		})
	}
}

func TestRegisterThenRestore(t *testing.T) {
	u, err := user.Register(uuid.New(), "Alice@Example.com", "Alice", hash, user.RoleCustomer, now)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	s := u.State()
	r := user.Restore(s)
	if r.State() != s {
		t.Errorf("Restore(State()).State() = %+v, want %+v", r.State(), s)
	}
	if len(r.Events()) != 0 {
		t.Error("restored user has pending events")
	}
}

func TestErrorKinds(t *testing.T) {
	kinds := []error{domain.ErrInvalid, domain.ErrNotFound, domain.ErrConflict, domain.ErrUnauthorized, domain.ErrForbidden}
	tests := []struct {
		name string
		err  error
		kind error
	}{
		{"email taken", user.ErrEmailTaken, domain.ErrConflict},
		{"not found", user.ErrNotFound, domain.ErrNotFound},
		{"invalid credentials", user.ErrInvalidCredentials, domain.ErrUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range kinds {
				if got, want := errors.Is(tt.err, k), k == tt.kind; got != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", tt.err, k, got, want)
				}
			}
		})
	}
}

func TestContractNames(t *testing.T) {
	tests := []struct{ got, want string }{
		{user.AggregateType, "user"},
		{user.EventRegistered, "user.registered"},
		{string(user.RoleCustomer), "customer"},
		{string(user.RoleAdmin), "admin"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("constant = %q, want %q", tt.got, tt.want)
		}
	}
}
