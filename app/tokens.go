package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/limit"
	"github.com/shopdev/shop/store"
)

// IssueToken signs a token for the user with this email and password;
// user.ErrInvalidCredentials for an unknown email or a wrong password,
// which take the same time. logins (nil: none) throttles the attempts per
// account before any hash is computed: past its budget, a
// *limit.ExceededError, whatever the password; a success resets it. When
// the throttle cannot be asked, no login goes through (ErrUnavailable):
// guessing must not get faster because Redis is down. The password is
// checked outside any transaction: bcrypt is slow on purpose.
func IssueToken(ctx context.Context, uow *store.UnitOfWork, a *auth.Auth, logins *limit.Logins, email, password string, now time.Time) (auth.Token, error) {
	email = user.NormalizeEmail(email)
	if logins != nil {
		if err := logins.Attempt(ctx, email); err != nil {
			return auth.Token{}, throttleError(err)
		}
	}
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
	if logins != nil {
		if err := logins.Succeeded(ctx, email); err != nil {
			return auth.Token{}, throttleError(err)
		}
	}
	return a.Issue(u, now)
}

// throttleError passes a spent budget on as it is, and a throttle that
// did not answer as unavailable.
func throttleError(err error) error {
	var ex *limit.ExceededError
	if errors.As(err, &ex) {
		return err
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

// UserAccess reads what the user with id may do now: its role and the
// version of its tokens; user.ErrNotFound when it is gone. auth.Gate asks
// it, through a short cache, for every signed-in request.
func UserAccess(ctx context.Context, users *store.Reads, id uuid.UUID) (auth.Access, error) {
	role, version, err := users.UserAccess(ctx, id)
	if err != nil {
		return auth.Access{}, err
	}
	return auth.Access{Role: role, TokenVersion: version}, nil
}
