package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/product"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

var now = time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)

// fixture is a database with an admin and a customer.
type fixture struct {
	pool            *pgxpool.Pool
	uow             *store.UnitOfWork
	admin, customer app.Actor
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	pool := testenv.Pool(t)
	f := fixture{pool: pool, uow: store.NewUnitOfWork(pool, nil)}
	f.admin = app.Actor{UserID: f.register(t, "admin@example.com", user.RoleAdmin), Role: user.RoleAdmin}
	f.customer = app.Actor{UserID: f.register(t, "carl@example.com", user.RoleCustomer), Role: user.RoleCustomer}
	return f
}

func (f fixture) register(t *testing.T, email string, role user.Role) uuid.UUID {
	t.Helper()
	var u *user.User
	err := f.uow.Do(context.Background(), func(ctx context.Context, tx *store.Tx) (err error) {
		u, err = app.Register(ctx, tx, app.RegisterUser{Email: email, Name: "N", PasswordHash: "h", Role: role}, now)
		return err
	})
	testenv.Must(t, err, "register "+email)
	return u.ID()
}

// do runs fn in a transaction whose context carries request id rid.
func (f fixture) do(rid string, fn func(ctx context.Context, tx *store.Tx) error) error {
	return f.uow.Do(outbox.WithMetadata(context.Background(), outbox.Metadata{CausationID: rid}), fn)
}

// auditRow is a row of audit_log.
type auditRow struct {
	actorID                          *uuid.UUID
	actor, action, target, requestID string
	details                          map[string]any
}

// audit returns the rows of audit_log, oldest first.
func (f fixture) audit(t *testing.T) []auditRow {
	t.Helper()
	rows, err := f.pool.Query(context.Background(), `SELECT actor_id, actor, action, target, request_id, details::text FROM audit_log ORDER BY id`)
	testenv.Must(t, err, "query audit log")
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var r auditRow
		var details string
		testenv.Must(t, rows.Scan(&r.actorID, &r.actor, &r.action, &r.target, &r.requestID, &details), "scan")
		testenv.Must(t, json.Unmarshal([]byte(details), &r.details), "details")
		out = append(out, r)
	}
	testenv.Must(t, rows.Err(), "rows")
	return out
}

// access returns the role and token version Postgres has for id.
func (f fixture) access(t *testing.T, id uuid.UUID) (user.Role, int64) {
	t.Helper()
	role, tv, err := store.NewReads(f.pool).UserAccess(context.Background(), id)
	testenv.Must(t, err, "user access")
	return role, tv
}

func TestRevokeTokens(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tests := []struct {
		name      string
		actor     app.Actor
		email     string
		wantErr   error
		wantActor string
	}{
		{"by an admin", f.admin, "carl@example.com", nil, "user:" + f.admin.UserID.String()},
		{"by the command line, the email in capitals", app.Operator, " CARL@Example.com", nil, "cli"},
		{"an admin's own", f.admin, "admin@example.com", nil, "user:" + f.admin.UserID.String()},
		{"by a customer", f.customer, "admin@example.com", domain.ErrForbidden, ""},
		{"an unknown email", app.Operator, "nobody@example.com", user.ErrNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.audit(t))
			tokenVersions := map[uuid.UUID]int64{}
			for _, id := range []uuid.UUID{f.admin.UserID, f.customer.UserID} {
				_, tokenVersions[id] = f.access(t, id)
			}
			var revoked *user.User
			err := f.do("req-revoke", func(ctx context.Context, tx *store.Tx) (err error) {
				revoked, err = app.RevokeTokens(ctx, tx, tt.actor, tt.email, now)
				return err
			})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("RevokeTokens = %v, want %v", err, tt.wantErr)
			}
			rows := f.audit(t)
			for id, tv := range tokenVersions {
				want := tv
				if err == nil && id == revoked.ID() {
					want++
				}
				if _, got := f.access(t, id); got != want {
					t.Errorf("user %v: token version %d, want %d", id, got, want)
				}
			}
			if err != nil {
				if len(rows) != before {
					t.Errorf("a refused revoke wrote %d audit rows", len(rows)-before)
				}
				return
			}
			if len(rows) != before+1 {
				t.Fatalf("%d audit rows written, want 1", len(rows)-before)
			}
			r := rows[len(rows)-1]
			if r.actor != tt.wantActor || r.action != app.AuditUserRevoke || r.target != "user:"+revoked.ID().String() ||
				r.requestID != "req-revoke" || r.details["token_version"] != float64(revoked.TokenVersion()) {
				t.Errorf("audit row %+v, want %s revoking user:%v at token version %d in req-revoke",
					r, tt.wantActor, revoked.ID(), revoked.TokenVersion())
			}
			if (r.actorID == nil) != (tt.actor == app.Operator) || (r.actorID != nil && *r.actorID != tt.actor.UserID) {
				t.Errorf("audit row actor id %v, want the acting user's (none from the command line)", r.actorID)
			}
		})
	}
}

func TestChangeRole(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	dana := f.register(t, "dana@example.com", user.RoleCustomer)
	tests := []struct {
		name        string
		actor       app.Actor
		role        user.Role
		wantErr     error
		wantChanged bool
		wantRole    user.Role
	}{
		{"a customer made admin", app.Operator, user.RoleAdmin, nil, true, user.RoleAdmin},
		{"again: nothing changes", app.Operator, user.RoleAdmin, nil, false, user.RoleAdmin},
		{"an unknown role", app.Operator, "root", domain.ErrInvalid, false, user.RoleAdmin},
		{"by a customer", f.customer, user.RoleCustomer, domain.ErrForbidden, false, user.RoleAdmin},
		{"made customer by an admin", f.admin, user.RoleCustomer, nil, true, user.RoleCustomer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.audit(t))
			_, tv := f.access(t, dana)
			var changed bool
			err := f.do("", func(ctx context.Context, tx *store.Tx) (err error) {
				_, changed, err = app.ChangeRole(ctx, tx, tt.actor, "dana@example.com", tt.role, now)
				return err
			})
			if !errors.Is(err, tt.wantErr) || changed != tt.wantChanged {
				t.Fatalf("ChangeRole = changed %v, %v; want %v, %v", changed, err, tt.wantChanged, tt.wantErr)
			}
			wantTV, wantRows := tv, before
			if tt.wantChanged {
				wantTV, wantRows = tv+1, before+1
			}
			if role, got := f.access(t, dana); role != tt.wantRole || got != wantTV {
				t.Errorf("dana is %s at token version %d, want %s at %d", role, got, tt.wantRole, wantTV)
			}
			rows := f.audit(t)
			if len(rows) != wantRows {
				t.Fatalf("%d audit rows written, want %d", len(rows)-before, wantRows-before)
			}
			if !tt.wantChanged {
				return
			}
			r := rows[len(rows)-1]
			if r.action != app.AuditUserRole || r.target != "user:"+dana.String() || r.actor != tt.actor.String() ||
				r.requestID != "" || r.details["role"] != string(tt.role) || r.details["email"] != "dana@example.com" {
				t.Errorf("audit row %+v, want %s setting dana's role to %s, no request id", r, tt.actor, tt.role)
			}
		})
	}
	if err := f.do("", func(ctx context.Context, tx *store.Tx) error {
		_, _, err := app.ChangeRole(ctx, tx, app.Operator, "nobody@example.com", user.RoleAdmin, now)
		return err
	}); !errors.Is(err, user.ErrNotFound) {
		t.Errorf("ChangeRole of an unknown email = %v, want user.ErrNotFound", err)
	}
}

// TestAdminCommandsAreAudited: each admin command writes one audit row in
// its transaction, with the request id of its context; a command that
// fails, or whose transaction fails after it, writes none.
func TestAdminCommandsAreAudited(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var spoon uuid.UUID
	err := f.do("", func(ctx context.Context, tx *store.Tx) error {
		p, err := app.AddProduct(ctx, tx, f.admin, app.CreateProduct{SKU: "SPOON", Name: "Spoon", PriceCents: 100, Stock: 1}, now)
		if p != nil {
			spoon = p.ID()
		}
		return err
	})
	testenv.Must(t, err, "add spoon")
	name, price := "Teaspoon", int64(150)
	errLater := errors.New("the transaction fails after the command")

	tests := []struct {
		name       string
		fn         func(ctx context.Context, tx *store.Tx) error
		wantErr    error
		wantAction string
		wantTarget string // a prefix
		wantDetail map[string]any
	}{
		{"create a product", func(ctx context.Context, tx *store.Tx) error {
			_, err := app.AddProduct(ctx, tx, f.admin, app.CreateProduct{SKU: "FORK", Name: "Fork", PriceCents: 200, Stock: 3}, now)
			return err
		}, nil, app.AuditProductCreate, "product:", map[string]any{"sku": "FORK", "name": "Fork", "price_cents": float64(200), "stock": float64(3)}},
		{"update a product", func(ctx context.Context, tx *store.Tx) error {
			_, err := app.UpdateProduct(ctx, tx, f.admin, spoon, &name, &price, now)
			return err
		}, nil, app.AuditProductUpdate, "product:" + spoon.String(), map[string]any{"sku": "SPOON", "name": name, "price_cents": float64(price)}},
		{"update a price only", func(ctx context.Context, tx *store.Tx) error {
			_, err := app.UpdateProduct(ctx, tx, f.admin, spoon, nil, &price, now)
			return err
		}, nil, app.AuditProductUpdate, "product:" + spoon.String(), map[string]any{"sku": "SPOON", "price_cents": float64(price)}},
		{"restock a product", func(ctx context.Context, tx *store.Tx) error {
			_, err := app.Restock(ctx, tx, f.admin, spoon, 4, now)
			return err
		}, nil, app.AuditProductRestock, "product:" + spoon.String(), map[string]any{"sku": "SPOON", "quantity": float64(4), "stock": float64(5)}},
		{"add a user", func(ctx context.Context, tx *store.Tx) error {
			_, err := app.AddUser(ctx, tx, app.Operator, app.RegisterUser{Email: "Eve@example.com", Name: "Eve", PasswordHash: "h", Role: user.RoleAdmin}, now)
			return err
		}, nil, app.AuditUserAdd, "user:", map[string]any{"email": "eve@example.com", "role": "admin"}},

		{"a taken SKU", func(ctx context.Context, tx *store.Tx) error {
			_, err := app.AddProduct(ctx, tx, f.admin, app.CreateProduct{SKU: "SPOON", Name: "Spoon", PriceCents: 1}, now)
			return err
		}, product.ErrSKUTaken, "", "", nil},
		{"an invalid restock", func(ctx context.Context, tx *store.Tx) error {
			_, err := app.Restock(ctx, tx, f.admin, spoon, 0, now)
			return err
		}, domain.ErrInvalid, "", "", nil},
		{"an unknown product", func(ctx context.Context, tx *store.Tx) error {
			_, err := app.UpdateProduct(ctx, tx, f.admin, uuid.New(), &name, nil, now)
			return err
		}, product.ErrNotFound, "", "", nil},
		{"a taken email", func(ctx context.Context, tx *store.Tx) error {
			_, err := app.AddUser(ctx, tx, app.Operator, app.RegisterUser{Email: "carl@example.com", Name: "C", PasswordHash: "h", Role: user.RoleCustomer}, now)
			return err
		}, user.ErrEmailTaken, "", "", nil},
		{"a user added by a customer", func(ctx context.Context, tx *store.Tx) error {
			_, err := app.AddUser(ctx, tx, f.customer, app.RegisterUser{Email: "mallory@example.com", Name: "M", PasswordHash: "h", Role: user.RoleAdmin}, now)
			return err
		}, domain.ErrForbidden, "", "", nil},
		{"a restock whose transaction fails later", func(ctx context.Context, tx *store.Tx) error {
			if _, err := app.Restock(ctx, tx, f.admin, spoon, 1, now); err != nil {
				return err
			}
			return errLater
		}, errLater, "", "", nil},
		{"a revoke whose transaction fails later", func(ctx context.Context, tx *store.Tx) error {
			if _, err := app.RevokeTokens(ctx, tx, app.Operator, "carl@example.com", now); err != nil {
				return err
			}
			return errLater
		}, errLater, "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.audit(t))
			err := f.do("req-"+tt.name, tt.fn)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			rows := f.audit(t)
			if tt.wantErr != nil {
				if len(rows) != before {
					t.Errorf("a failed command wrote %d audit rows", len(rows)-before)
				}
				return
			}
			if len(rows) != before+1 {
				t.Fatalf("%d audit rows written, want 1", len(rows)-before)
			}
			r := rows[len(rows)-1]
			if r.action != tt.wantAction || len(r.target) < len(tt.wantTarget) || r.target[:len(tt.wantTarget)] != tt.wantTarget ||
				r.requestID != "req-"+tt.name || !equalDetails(r.details, tt.wantDetail) {
				t.Errorf("audit row %+v, want action %s on %s…, details %v, request id %q",
					r, tt.wantAction, tt.wantTarget, tt.wantDetail, "req-"+tt.name)
			}
		})
	}
}

func equalDetails(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
