package store

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopdev/shop/domain/user"
)

// UserAccess returns what a token of user id must still agree with: the
// user's role and token version (raised by revoking its tokens or changing
// its role); user.ErrNotFound when there is no such user. One primary-key
// read, for every authenticated request.
func (r *Reads) UserAccess(ctx context.Context, id uuid.UUID) (role user.Role, tokenVersion int64, err error) {
	type access struct {
		role    string
		version int64
	}
	a, found, err := one(ctx, r, "read user access", func(row pgx.CollectableRow) (access, error) {
		var a access
		err := row.Scan(&a.role, &a.version)
		return a, err
	}, `SELECT role, token_version FROM users WHERE id = $1`, id)
	switch {
	case err != nil:
		return "", 0, err
	case !found:
		return "", 0, user.ErrNotFound
	}
	return user.Role(a.role), a.version, nil
}
