// Package user owns customers and administrators: registration rules,
// roles and the user.registered event. Password hashing happens outside
// (it is slow and needs randomness); the aggregate stores only the hash.
package user

import (
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

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

// Limits of the input.
const (
	MinPasswordLength = 8
	MaxPasswordLength = 72 // bcrypt uses only the first 72 bytes
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
	case utf8.RuneCountInString(password) < MinPasswordLength:
		v.Add("password", fmt.Sprintf("must be at least %d characters", MinPasswordLength))
	case len(password) > MaxPasswordLength:
		v.Add("password", fmt.Sprintf("must be at most %d bytes", MaxPasswordLength))
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
		role: s.Role, version: s.Version, createdAt: s.CreatedAt}
}

// State returns the persisted form.
func (u *User) State() State {
	return State{ID: u.id, Email: u.email, Name: u.name, PasswordHash: u.passwordHash,
		Role: u.role, Version: u.version, CreatedAt: u.createdAt}
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

// Version returns the aggregate version.
func (u *User) Version() int64 { return u.version }

// CreatedAt returns when the user registered.
func (u *User) CreatedAt() time.Time { return u.createdAt }

// Events returns the events recorded since the last call.
func (u *User) Events() []domain.Event { return u.recorded.Events() }
