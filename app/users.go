package app

import (
	"context"
	"errors"
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

// IssueToken signs a token for the user with this email and password;
// user.ErrInvalidCredentials for an unknown email or a wrong password,
// which take the same time. The password is checked outside any
// transaction: bcrypt is slow on purpose.
func IssueToken(ctx context.Context, uow *store.UnitOfWork, a *auth.Auth, email, password string, now time.Time) (auth.Token, error) {
	var u *user.User
	err := uow.Do(ctx, func(ctx context.Context, tx *store.Tx) (err error) {
		u, err = tx.Users.ByEmail(ctx, email)
		return err
	})
	if err != nil && !errors.Is(err, user.ErrNotFound) {
		return auth.Token{}, err
	}
	if !a.CheckPassword(u, password) { // u is nil for an unknown email
		return auth.Token{}, user.ErrInvalidCredentials
	}
	return a.Issue(u, now)
}
