package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// change locks the user with email in one transaction and lets fn change it.
func change(t *testing.T, uow *store.UnitOfWork, email string, fn func(u *user.User)) error {
	t.Helper()
	return uow.Do(context.Background(), func(ctx context.Context, tx *store.Tx) error {
		u, err := tx.Users.GetByEmailForUpdate(ctx, email)
		if err != nil {
			return err
		}
		fn(u)
		return nil
	})
}

// TestUserTokenVersionRoundTrips: a user's role and token version are
// written back when they change, and read back by every load and by
// UserAccess.
func TestUserTokenVersionRoundTrips(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	uow := store.NewUnitOfWork(pool, nil)
	reads := store.NewReads(pool)
	u := addCustomer(t, uow, "tv@example.com")

	tests := []struct {
		name        string
		change      func(t *testing.T, u *user.User)
		wantRole    user.Role
		wantVersion int64 // the token version, and the aggregate's
	}{
		{"as registered", func(*testing.T, *user.User) {}, user.RoleCustomer, 1},
		{"revoked", func(_ *testing.T, u *user.User) { u.Revoke() }, user.RoleCustomer, 2},
		{"revoked twice in one transaction", func(_ *testing.T, u *user.User) { u.Revoke(); u.Revoke() }, user.RoleCustomer, 4},
		{"made admin", func(t *testing.T, u *user.User) { testenv.Must(t, u.ChangeRole(user.RoleAdmin), "change role") }, user.RoleAdmin, 5},
		{"made admin again: nothing changes", func(t *testing.T, u *user.User) { testenv.Must(t, u.ChangeRole(user.RoleAdmin), "change role") }, user.RoleAdmin, 5},
		{"made customer", func(t *testing.T, u *user.User) { testenv.Must(t, u.ChangeRole(user.RoleCustomer), "change role") }, user.RoleCustomer, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testenv.Must(t, change(t, uow, "TV@example.com", func(u *user.User) { tt.change(t, u) }), "change")

			var loaded *user.User
			err := uow.Do(context.Background(), func(ctx context.Context, tx *store.Tx) (err error) {
				loaded, err = tx.Users.ByID(ctx, u.ID())
				return err
			})
			testenv.Must(t, err, "load")
			if loaded.Role() != tt.wantRole || loaded.TokenVersion() != tt.wantVersion || loaded.Version() != tt.wantVersion {
				t.Errorf("loaded role %q, token version %d, version %d; want %q, %d, %d",
					loaded.Role(), loaded.TokenVersion(), loaded.Version(), tt.wantRole, tt.wantVersion, tt.wantVersion)
			}
			role, tv, err := reads.UserAccess(context.Background(), u.ID())
			testenv.Must(t, err, "user access")
			if role != tt.wantRole || tv != tt.wantVersion {
				t.Errorf("UserAccess = %q, %d; want %q, %d", role, tv, tt.wantRole, tt.wantVersion)
			}
		})
	}
}

func TestUserAccessOfAnUnknownUser(t *testing.T) {
	t.Parallel()
	_, _, err := store.NewReads(testenv.Pool(t)).UserAccess(context.Background(), uuid.New())
	if !errors.Is(err, user.ErrNotFound) {
		t.Fatalf("UserAccess of an unknown id: %v, want user.ErrNotFound", err)
	}
}

// TestStaleUserWriteIsRefused: a user whose row moved on between its load
// and the commit is not overwritten, and nothing of the transaction stays.
func TestStaleUserWriteIsRefused(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	uow := store.NewUnitOfWork(pool, nil)
	u := addCustomer(t, uow, "stale@example.com")
	tests := []struct {
		name   string
		change func(*user.User) error
	}{
		{"revoke", func(u *user.User) error { u.Revoke(); return nil }},
		{"change role", func(u *user.User) error { return u.ChangeRole(user.RoleAdmin) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before int64
			testenv.Must(t, pool.QueryRow(context.Background(), `SELECT version FROM users WHERE id = $1`, u.ID()).Scan(&before), "version")
			err := uow.Do(context.Background(), func(ctx context.Context, tx *store.Tx) error {
				locked, err := tx.Users.GetByEmailForUpdate(ctx, "stale@example.com")
				if err != nil {
					return err
				}
				again, err := tx.Users.GetByEmailForUpdate(ctx, "stale@example.com")
				if err != nil {
					return err
				}
				if again != locked {
					t.Error("a second lock in the transaction gave another copy of the user")
				}
				store.QueueBehindTheBack(tx, `UPDATE users SET version = version + 1 WHERE id = $1`, u.ID())
				return tt.change(locked)
			})
			if !errors.Is(err, store.ErrConcurrentUpdate) {
				t.Fatalf("Do() = %v, want ErrConcurrentUpdate", err)
			}
			if n := testenv.Count(t, pool, `SELECT count(*) FROM users WHERE id = $1 AND version = $2 AND token_version = 1 AND role = 'customer'`,
				u.ID(), before); n != 1 {
				t.Error("the refused write changed the user's row")
			}
		})
	}
}

func TestLockingAnUnknownUser(t *testing.T) {
	t.Parallel()
	err := change(t, store.NewUnitOfWork(testenv.Pool(t), nil), "nobody@example.com", func(*user.User) {})
	if !errors.Is(err, user.ErrNotFound) {
		t.Fatalf("GetByEmailForUpdate of an unknown email: %v, want user.ErrNotFound", err)
	}
}

// TestAuditRecordAndPage: the audit log keeps what it is told, in bounds,
// with the request id of the context, and pages it newest first.
func TestAuditRecordAndPage(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	uow := store.NewUnitOfWork(pool, nil)
	admin := uuid.New()
	requests := []string{"req-1", "", strings.Repeat("é", 100) + "\xff\x00", "req-4", "req-5"}
	for i, rid := range requests {
		ctx := outbox.WithMetadata(context.Background(), outbox.Metadata{CausationID: rid})
		err := uow.Do(ctx, func(ctx context.Context, tx *store.Tx) error {
			e := store.AuditEntry{At: now, ActorID: admin, Actor: "user:" + admin.String(), Action: "test.action",
				Target: "thing:" + strings.Repeat("x", i*100), Details: map[string]int{"n": i}}
			if i == 1 {
				e.ActorID, e.Actor, e.Details = uuid.Nil, "cli", nil
			}
			return tx.Audit.Record(e)
		})
		testenv.Must(t, err, "record")
	}

	var got []store.AuditRecord
	var pages int
	for before := int64(0); ; pages++ {
		var page []store.AuditRecord
		var next int64
		err := uow.Do(context.Background(), func(ctx context.Context, tx *store.Tx) (err error) {
			page, next, err = tx.Audit.Page(ctx, before, 2)
			return err
		})
		testenv.Must(t, err, "page")
		got = append(got, page...)
		if next == 0 {
			break
		}
		before = next
	}
	if pages != 2 || len(got) != len(requests) {
		t.Fatalf("%d records in %d pages after the first, want %d in 2", len(got), pages, len(requests))
	}
	for i, r := range got {
		n := len(requests) - 1 - i // newest first
		if i > 0 && r.ID >= got[i-1].ID {
			t.Errorf("record %d has id %d after id %d: not newest first", i, r.ID, got[i-1].ID)
		}
		if !utf8.ValidString(r.RequestID) || len(r.RequestID) > 128 || strings.ContainsRune(r.RequestID, 0) {
			t.Errorf("record %d: request id %q is not bounded, valid UTF-8", n, r.RequestID)
		}
		if n != 2 && r.RequestID != requests[n] {
			t.Errorf("record %d: request id %q, want %q", n, r.RequestID, requests[n])
		}
		if len(r.Target) > 128 || !strings.HasPrefix(r.Target, "thing:") {
			t.Errorf("record %d: target %q is not the one given, cut to 128 bytes", n, r.Target)
		}
		var details map[string]int
		testenv.Must(t, json.Unmarshal(r.Details, &details), "details")
		wantActor, wantDetails := "user:"+admin.String(), map[string]int{"n": n}
		if n == 1 {
			wantActor, wantDetails = "cli", map[string]int{}
		}
		if r.Actor != wantActor || len(details) != len(wantDetails) || details["n"] != wantDetails["n"] || !r.At.Equal(now) {
			t.Errorf("record %d = %+v, want actor %s, details %v, at %v", n, r, wantActor, wantDetails, now)
		}
	}
	if n := testenv.Count(t, pool, `SELECT count(*) FROM audit_log WHERE actor_id IS NULL`); n != 1 {
		t.Errorf("%d rows without an actor id, want the command line's one", n)
	}
}

// TestReadManyAnswersByID: users read with ReadMany are returned by it and
// then by ByID, and an id it did not find is user.ErrNotFound.
func TestReadManyAnswersByID(t *testing.T) {
	t.Parallel()
	uow := store.NewUnitOfWork(testenv.Pool(t), nil)
	a, b := addCustomer(t, uow, "many-a@example.com"), addCustomer(t, uow, "many-b@example.com")
	unknown := uuid.New()
	testenv.Must(t, uow.Do(context.Background(), func(ctx context.Context, tx *store.Tx) error {
		found, err := tx.Users.ReadMany(ctx, []uuid.UUID{a.ID(), unknown, b.ID()})
		if err != nil {
			return err
		}
		if len(found) != 2 || found[a.ID()].Email() != "many-a@example.com" || found[b.ID()].Email() != "many-b@example.com" {
			t.Errorf("ReadMany found %d users: %v", len(found), found)
		}
		if u, err := tx.Users.ByID(ctx, b.ID()); err != nil || u.Email() != "many-b@example.com" {
			t.Errorf("ByID of a user read = %v, %v", u, err)
		}
		if _, err := tx.Users.ByID(ctx, unknown); !errors.Is(err, user.ErrNotFound) {
			t.Errorf("ByID of an id read and not found = %v, want user.ErrNotFound", err)
		}
		return nil
	}), "read many")
}
