// Package user owns customers and administrators: registration rules,
// roles, the token version that revokes tokens, and the user.registered
// event. Password hashing happens outside (it is slow and needs
// randomness); the aggregate stores only the hash.
package user

import (
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain"
)

// AggregateType names users in events.
const AggregateType = "user"

// Event types.
const (
	EventRegistered = "user.registered"
)

// Role decides what a user may do.
type Role string

// Roles.
const (
	RoleCustomer Role = "customer"
	RoleAdmin    Role = "admin"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleCustomer || r == RoleAdmin }

// Limits of the input. Password lengths are in bytes: bcrypt reads bytes,
// and no further than 72 of them.
const (
	MinPasswordLength = 10
	MaxPasswordLength = 72
	MaxNameLength     = 100
	MaxEmailLength    = 254
)

// Errors.
var (
	ErrEmailTaken         = fmt.Errorf("%w: email already registered", domain.ErrConflict)
	ErrNotFound           = fmt.Errorf("user %w", domain.ErrNotFound)
	ErrInvalidCredentials = fmt.Errorf("%w: invalid email or password", domain.ErrUnauthorized)
)

// Registered is the data of user.registered. It never carries the password.
type Registered struct {
	UserID uuid.UUID `json:"user_id"`
	Email  string    `json:"email"`
	Name   string    `json:"name"`
	Role   Role      `json:"role"`
}

// User is a registered account.
type User struct {
	id           uuid.UUID
	email        string
	name         string
	passwordHash string
	role         Role
	tokenVersion int64
	version      int64
	createdAt    time.Time
	recorded     domain.Recorder
}

// State is the persisted form of a User.
type State struct {
	ID           uuid.UUID
	Email        string
	Name         string
	PasswordHash string
	Role         Role
	TokenVersion int64
	Version      int64
	CreatedAt    time.Time
}

// NormalizeEmail trims and lower-cases an address, the form users are
// stored and looked up by.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// ValidateRegistration checks the fields a person types in, before the
// password is hashed, so that every invalid field is reported at once.
func ValidateRegistration(email, name, password string) error {
	var v domain.Validation
	validateEmail(&v, email)
	validateName(&v, name)
	switch {
	case password == "":
		v.Add("password", "is required")
	case len(password) < MinPasswordLength:
		v.Add("password", fmt.Sprintf("must be at least %d bytes long (a character outside ASCII counts 2 to 4)", MinPasswordLength))
	case len(password) > MaxPasswordLength:
		v.Add("password", fmt.Sprintf("must be at most %d bytes long (a character outside ASCII counts 2 to 4)", MaxPasswordLength))
	case strings.TrimSpace(password) == "":
		v.Add("password", "must contain a character other than spaces")
	}
	return v.Err()
}

func validateEmail(v *domain.Validation, email string) {
	email = NormalizeEmail(email)
	switch {
	case email == "":
		v.Add("email", "is required")
	case len(email) > MaxEmailLength:
		v.Add("email", fmt.Sprintf("must be at most %d characters", MaxEmailLength))
	default:
		addr, err := mail.ParseAddress(email)
		v.Check(err == nil && addr.Address == email && addr.Name == "", "email", "must be an address like name@example.com")
	}
}

func validateName(v *domain.Validation, name string) string {
	return v.Text("name", name, MaxNameLength)
}

// Register creates a user and records user.registered.
func Register(id uuid.UUID, email, name, passwordHash string, role Role, now time.Time) (*User, error) {
	var v domain.Validation
	v.Check(id != uuid.Nil, "id", "is required")
	validateEmail(&v, email)
	name = validateName(&v, name)
	v.Check(passwordHash != "", "password", "is required")
	v.Check(role.Valid(), "role", "must be customer or admin")
	if err := v.Err(); err != nil {
		return nil, err
	}
	u := &User{
		id:           id,
		email:        NormalizeEmail(email),
		name:         name,
		passwordHash: passwordHash,
		role:         role,
		tokenVersion: 1,
		version:      1,
		createdAt:    domain.Time(now),
	}
	u.recorded.Record(domain.NewEvent(EventRegistered, AggregateType, id, u.version, now,
		Registered{UserID: id, Email: u.email, Name: u.name, Role: role}))
	return u, nil
}

// Restore rebuilds a User from its persisted state; it records nothing.
func Restore(s State) *User {
	return &User{id: s.ID, email: s.Email, name: s.Name, passwordHash: s.PasswordHash,
		role: s.Role, tokenVersion: s.TokenVersion, version: s.Version, createdAt: s.CreatedAt}
}

// State returns the persisted form.
func (u *User) State() State {
	return State{ID: u.id, Email: u.email, Name: u.name, PasswordHash: u.passwordHash,
		Role: u.role, TokenVersion: u.tokenVersion, Version: u.version, CreatedAt: u.createdAt}
}

// Revoke ends every token issued to the user so far: a token is good only
// while it carries the user's current token version.
func (u *User) Revoke() {
	u.tokenVersion++
	u.version++
}

// ChangeRole gives the user another role. A token carries the role it was
// issued with, so a change also ends the user's tokens (a demoted admin's
// included); asking for the role the user has changes nothing.
func (u *User) ChangeRole(role Role) error {
	if !role.Valid() {
		return domain.Invalid("role", "must be customer or admin")
	}
	if role == u.role {
		return nil
	}
	u.role = role
	u.Revoke()
	return nil
}

// ID returns the user's id.
func (u *User) ID() uuid.UUID { return u.id }

// Email returns the normalized address.
func (u *User) Email() string { return u.email }

// Name returns the display name.
func (u *User) Name() string { return u.name }

// Role returns the role.
func (u *User) Role() Role { return u.role }

// PasswordHash returns the stored hash, for verification only.
func (u *User) PasswordHash() string { return u.passwordHash }

// TokenVersion returns the version a token must carry to be good: 1 for a
// new user, raised by Revoke and ChangeRole.
func (u *User) TokenVersion() int64 { return u.tokenVersion }

// Version returns the aggregate version.
func (u *User) Version() int64 { return u.version }

// CreatedAt returns when the user registered.
func (u *User) CreatedAt() time.Time { return u.createdAt }

// Events returns the events recorded since the last call.
func (u *User) Events() []domain.Event { return u.recorded.Events() }
