package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopdev/shop/domain/user"
)

// Users loads and adds users in a transaction; the transaction writes back
// the ones it locked or added and that changed when it commits.
type Users struct{ tx *Tx }

const userColumns = `id, email, name, password_hash, role, token_version, version, created_at`

// Add queues the insert of a new user.
func (s Users) Add(u *user.User) {
	st := u.State()
	s.tx.queue(`INSERT INTO users (`+userColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		st.ID, st.Email, st.Name, st.PasswordHash, string(st.Role), st.TokenVersion, st.Version, st.CreatedAt)
	s.tx.users.hold(st.ID, u)
}

// update queues the write of a user loaded at version loaded; it fails
// with ErrConcurrentUpdate if another transaction changed it.
func (s Users) update(u *user.User, loaded int64) {
	st := u.State()
	s.tx.queueUpdate("user", st.ID, `UPDATE users SET role = $2, token_version = $3, version = $4
		WHERE id = $1 AND version = $5`,
		st.ID, string(st.Role), st.TokenVersion, st.Version, loaded)
}

// ByEmail loads a user by normalized email, without locking it, to read;
// user.ErrNotFound when none.
func (s Users) ByEmail(ctx context.Context, email string) (*user.User, error) {
	return s.one(ctx, `WHERE email = $1`, user.NormalizeEmail(email))
}

// ByID loads a user, without locking it, to read; user.ErrNotFound when
// none. A user ReadMany read in this transaction is not read again.
func (s Users) ByID(ctx context.Context, id uuid.UUID) (*user.User, error) {
	if u, found, known := s.tx.readUsers.get(id); known {
		if !found {
			return nil, user.ErrNotFound
		}
		return u, nil
	}
	return s.one(ctx, `WHERE id = $1`, id)
}

// ReadMany loads the users with the given ids that exist, without locking
// them, to read, in one round trip (with whatever is queued before it),
// and returns them; ByID then answers them without reading again.
func (s Users) ReadMany(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]*user.User, error) {
	queueLock(s.tx, &s.tx.readUsers, ids, `SELECT `+userColumns+` FROM users WHERE id = ANY($1)`,
		scanUser, func(st user.State) uuid.UUID { return st.ID }, user.Restore)
	if err := s.tx.sendReads(ctx); err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}
	return s.tx.readUsers.held(ids), nil
}

// GetByEmailForUpdate loads a user by normalized email and locks its row
// until the transaction ends, to change it; user.ErrNotFound when none. A
// user the transaction holds already is the one returned (its row was
// locked with it), so that the transaction writes it back once.
func (s Users) GetByEmailForUpdate(ctx context.Context, email string) (*user.User, error) {
	var list []user.State
	err := s.tx.read(ctx, func(rows pgx.Rows) (err error) {
		list, err = pgx.CollectRows(rows, scanUser)
		return err
	}, `SELECT `+userColumns+` FROM users WHERE email = $1 FOR NO KEY UPDATE`, user.NormalizeEmail(email))
	if err != nil {
		return nil, fmt.Errorf("lock user: %w", err)
	}
	if len(list) == 0 {
		return nil, user.ErrNotFound
	}
	st := list[0]
	if held, found, _ := s.tx.users.get(st.ID); found {
		return held, nil
	}
	u := user.Restore(st)
	s.tx.users.hold(st.ID, u)
	return u, nil
}

func (s Users) one(ctx context.Context, where string, arg any) (*user.User, error) {
	var st user.State
	err := s.tx.read(ctx, func(rows pgx.Rows) (err error) {
		st, err = pgx.CollectExactlyOneRow(rows, scanUser)
		return err
	}, `SELECT `+userColumns+` FROM users `+where, arg)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, user.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load user: %w", err)
	}
	return user.Restore(st), nil
}

func scanUser(row pgx.CollectableRow) (user.State, error) {
	var st user.State
	var role string
	err := row.Scan(&st.ID, &st.Email, &st.Name, &st.PasswordHash, &role, &st.TokenVersion, &st.Version, &st.CreatedAt)
	st.Role = user.Role(role)
	return st, err
}
