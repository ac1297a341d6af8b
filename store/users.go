package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopdev/shop/domain/user"
)

// Users loads and saves users in a transaction.
type Users struct{ tx *Tx }

// Add queues the insert of a new user.
func (s Users) Add(u *user.User) {
	st := u.State()
	s.tx.queue(`INSERT INTO users (id, email, name, password_hash, role, version, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		st.ID, st.Email, st.Name, st.PasswordHash, string(st.Role), st.Version, st.CreatedAt)
}

// ByEmail loads a user by normalized email; user.ErrNotFound when none.
func (s Users) ByEmail(ctx context.Context, email string) (*user.User, error) {
	return s.one(ctx, `WHERE email = $1`, user.NormalizeEmail(email))
}

// ByID loads a user; user.ErrNotFound when none.
func (s Users) ByID(ctx context.Context, id uuid.UUID) (*user.User, error) {
	return s.one(ctx, `WHERE id = $1`, id)
}

func (s Users) one(ctx context.Context, where string, arg any) (*user.User, error) {
	var st user.State
	err := s.tx.read(ctx, func(rows pgx.Rows) (err error) {
		st, err = pgx.CollectExactlyOneRow(rows, func(row pgx.CollectableRow) (user.State, error) {
			var st user.State
			var role string
			err := row.Scan(&st.ID, &st.Email, &st.Name, &st.PasswordHash, &role, &st.Version, &st.CreatedAt)
			st.Role = user.Role(role)
			return st, err
		})
		return err
	}, `SELECT id, email, name, password_hash, role, version, created_at FROM users `+where, arg)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, user.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load user: %w", err)
	}
	return user.Restore(st), nil
}
