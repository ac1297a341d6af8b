package app

import (
	"context"
	"time"

	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/store"
)

// RegisterUser is the input of Register: the password is hashed already,
// before the transaction starts, because hashing is slow on purpose.
type RegisterUser struct {
	Email        string
	Name         string
	PasswordHash string
	Role         user.Role
}

// NewRegistration checks what a person typed in, every field at once, and
// hashes the password: the input of Register.
func NewRegistration(a *auth.Auth, email, name, password string, role user.Role) (RegisterUser, error) {
	if err := user.ValidateRegistration(email, name, password); err != nil {
		return RegisterUser{}, err
	}
	hash, err := a.HashPassword(password)
	if err != nil {
		return RegisterUser{}, err
	}
	return RegisterUser{Email: email, Name: name, PasswordHash: hash, Role: role}, nil
}

// Register creates a user; user.ErrEmailTaken when the email is in use.
func Register(ctx context.Context, tx *store.Tx, cmd RegisterUser, now time.Time) (*user.User, error) {
	u, err := user.Register(newID(), cmd.Email, cmd.Name, cmd.PasswordHash, cmd.Role, now)
	if err != nil {
		return nil, err
	}
	tx.Users.Add(u)
	return recorded(tx, u)
}

// AddUser registers a user at an admin's request (shop user add, with any
// role) and records it in the audit log; user.ErrEmailTaken when the email
// is in use.
func AddUser(ctx context.Context, tx *store.Tx, actor Actor, cmd RegisterUser, now time.Time) (*user.User, error) {
	if err := requireAdmin(actor); err != nil {
		return nil, err
	}
	u, err := Register(ctx, tx, cmd, now)
	if err != nil {
		return nil, err
	}
	if err := audit(tx, actor, AuditUserAdd, user.AggregateType, u.ID(), userDetails{Email: u.Email(), Role: u.Role()}, now); err != nil {
		return nil, err
	}
	return u, nil
}

// RevokeTokens ends every token issued to the user with this email so far
// (shop user revoke): the user signs in again for a new one. For an admin;
// user.ErrNotFound when there is no such user.
func RevokeTokens(ctx context.Context, tx *store.Tx, actor Actor, email string, now time.Time) (*user.User, error) {
	if err := requireAdmin(actor); err != nil {
		return nil, err
	}
	u, err := tx.Users.GetByEmailForUpdate(ctx, email)
	if err != nil {
		return nil, err
	}
	u.Revoke()
	tv := u.TokenVersion()
	if err := audit(tx, actor, AuditUserRevoke, user.AggregateType, u.ID(), userDetails{Email: u.Email(), TokenVersion: &tv}, now); err != nil {
		return nil, err
	}
	return u, nil
}

// ChangeRole gives the user with this email another role (shop user role),
// which also ends the user's tokens: they carry the old role. For an admin;
// user.ErrNotFound when there is no such user. Asking for the role the
// user has changes nothing, records nothing, and says so: changed is false.
func ChangeRole(ctx context.Context, tx *store.Tx, actor Actor, email string, role user.Role, now time.Time) (u *user.User, changed bool, err error) {
	if err := requireAdmin(actor); err != nil {
		return nil, false, err
	}
	if u, err = tx.Users.GetByEmailForUpdate(ctx, email); err != nil {
		return nil, false, err
	}
	from := u.Role()
	if err := u.ChangeRole(role); err != nil {
		return nil, false, err
	}
	if u.Role() == from {
		return u, false, nil
	}
	tv := u.TokenVersion()
	details := userDetails{Email: u.Email(), Role: u.Role(), From: from, TokenVersion: &tv}
	if err := audit(tx, actor, AuditUserRole, user.AggregateType, u.ID(), details, now); err != nil {
		return nil, false, err
	}
	return u, true, nil
}

// userDetails is what the audit log keeps of a user command.
type userDetails struct {
	Email        string    `json:"email"`
	Role         user.Role `json:"role,omitempty"`
	From         user.Role `json:"from_role,omitempty"`
	TokenVersion *int64    `json:"token_version,omitempty"`
}
