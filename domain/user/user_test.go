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

		{name: "valid password of min length in multibyte characters", email: email, uname: name, pw: strings.Repeat("é", user.MinPasswordLength/2)},
		{name: "valid password of spaces around a character", email: email, uname: name, pw: "    x     "},
		{name: "password empty", email: email, uname: name, pw: "", wantFields: []string{"password"}},
		{name: "password one short", email: email, uname: name, pw: strings.Repeat("p", user.MinPasswordLength-1), wantFields: []string{"password"}},
		{name: "password of 8 characters", email: email, uname: name, pw: "12345678", wantFields: []string{"password"}},
		{name: "password one byte short in multibyte characters", email: email, uname: name, pw: strings.Repeat("é", user.MinPasswordLength/2-1) + "p", wantFields: []string{"password"}},
		{name: "password one too long", email: email, uname: name, pw: strings.Repeat("p", user.MaxPasswordLength+1), wantFields: []string{"password"}},
		{name: "password one byte too long in multibyte characters", email: email, uname: name, pw: strings.Repeat("é", user.MaxPasswordLength/2) + "p", wantFields: []string{"password"}},
		{name: "password only spaces", email: email, uname: name, pw: strings.Repeat(" ", user.MinPasswordLength), wantFields: []string{"password"}},
		{name: "password only white space", email: email, uname: name, pw: " \t\n \t\n \r\n\u00a0", wantFields: []string{"password"}},

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

// TestPasswordMessages: each rule a password breaks says which, in words a
// person can act on.
func TestPasswordMessages(t *testing.T) {
	tests := []struct {
		name, pw, want string
	}{
		{"empty", "", "is required"},
		{"short", "123456789", "must be at least 10 bytes long"},
		{"long", strings.Repeat("p", 73), "must be at most 72 bytes long"},
		{"blank", strings.Repeat(" ", 12), "must contain a character other than spaces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ve *domain.ValidationError
			if !errors.As(user.ValidateRegistration("alice@example.com", "Alice", tt.pw), &ve) {
				t.Fatalf("password %q: no validation error", tt.pw)
			}
			if len(ve.Fields) != 1 || ve.Fields[0].Field != "password" || !strings.HasPrefix(ve.Fields[0].Message, tt.want) {
				t.Errorf("password %q: fields %+v, want one password error saying %q", tt.pw, ve.Fields, tt.want)
			}
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
			if u.Version() != 1 || u.TokenVersion() != 1 {
				t.Errorf("Version, TokenVersion = %d, %d, want 1, 1", u.Version(), u.TokenVersion())
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
		{"customer", user.State{ID: uuid.New(), Email: "alice@example.com", Name: "Alice", PasswordHash: hash, Role: user.RoleCustomer, TokenVersion: 1, Version: 1, CreatedAt: created}},
		{"admin at a later version", user.State{ID: uuid.New(), Email: "root@example.com", Name: "Root", PasswordHash: "h", Role: user.RoleAdmin, TokenVersion: 7, Version: 42, CreatedAt: created}},
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
				u.TokenVersion() != tt.state.TokenVersion || u.Version() != tt.state.Version || !u.CreatedAt().Equal(tt.state.CreatedAt) {
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

// registered returns a user of role, its registration event taken.
func registered(t *testing.T, role user.Role) *user.User {
	t.Helper()
	u, err := user.Register(uuid.New(), "bob@example.com", "Bob", hash, role, now)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	u.Events()
	return u
}

func TestRevoke(t *testing.T) {
	tests := []struct {
		name    string
		revokes int
	}{
		{"once", 1},
		{"twice", 2},
		{"many times", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := registered(t, user.RoleCustomer)
			before := u.State()
			for range tt.revokes {
				u.Revoke()
			}
			n := int64(tt.revokes)
			if u.TokenVersion() != before.TokenVersion+n || u.Version() != before.Version+n {
				t.Errorf("after %d revokes: token version %d, version %d; want %d, %d",
					tt.revokes, u.TokenVersion(), u.Version(), before.TokenVersion+n, before.Version+n)
			}
			after := u.State()
			after.TokenVersion, after.Version = before.TokenVersion, before.Version
			if after != before {
				t.Errorf("Revoke changed more than the versions: %+v, was %+v", u.State(), before)
			}
			if events := u.Events(); len(events) != 0 {
				t.Errorf("Revoke recorded %d events, want none (the contract has no event for it)", len(events))
			}
		})
	}
}

func TestChangeRole(t *testing.T) {
	tests := []struct {
		name        string
		from, to    user.Role
		wantRole    user.Role
		wantBump    int64 // of both the token version and the version
		wantInvalid bool
	}{
		{"customer to admin", user.RoleCustomer, user.RoleAdmin, user.RoleAdmin, 1, false},
		{"admin to customer", user.RoleAdmin, user.RoleCustomer, user.RoleCustomer, 1, false},
		{"customer to customer changes nothing", user.RoleCustomer, user.RoleCustomer, user.RoleCustomer, 0, false},
		{"admin to admin changes nothing", user.RoleAdmin, user.RoleAdmin, user.RoleAdmin, 0, false},
		{"an unknown role", user.RoleCustomer, "superuser", user.RoleCustomer, 0, true},
		{"a role in the wrong case", user.RoleCustomer, "Admin", user.RoleCustomer, 0, true},
		{"no role", user.RoleAdmin, "", user.RoleAdmin, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := registered(t, tt.from)
			before := u.State()
			err := u.ChangeRole(tt.to)
			if tt.wantInvalid {
				assertFields(t, err, []string{"role"})
			} else if err != nil {
				t.Fatalf("ChangeRole(%q): %v", tt.to, err)
			}
			if u.Role() != tt.wantRole {
				t.Errorf("Role = %q, want %q", u.Role(), tt.wantRole)
			}
			if u.TokenVersion() != before.TokenVersion+tt.wantBump || u.Version() != before.Version+tt.wantBump {
				t.Errorf("token version %d, version %d; want %d, %d",
					u.TokenVersion(), u.Version(), before.TokenVersion+tt.wantBump, before.Version+tt.wantBump)
			}
			if events := u.Events(); len(events) != 0 {
				t.Errorf("ChangeRole recorded %d events, want none (the contract has no event for it)", len(events))
			}
		})
	}
}
