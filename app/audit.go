package app

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/store"
)

// The actions of the audit log: every admin command records one, in its
// own transaction.
const (
	AuditProductCreate  = "product.create"
	AuditProductUpdate  = "product.update"
	AuditProductRestock = "product.restock"
	AuditUserAdd        = "user.add"
	AuditUserRevoke     = "user.revoke"
	AuditUserRole       = "user.role"
)

// ErrNotAdmin refuses an admin command to an actor who is not one.
var ErrNotAdmin = fmt.Errorf("%w: only an admin may do this", domain.ErrForbidden)

// requireAdmin returns ErrNotAdmin unless actor is an admin.
func requireAdmin(actor Actor) error {
	if actor.Role != user.RoleAdmin {
		return ErrNotAdmin
	}
	return nil
}

// audit records, in tx, that actor did action to target (kind:id).
func audit(tx *store.Tx, actor Actor, action, kind string, id uuid.UUID, details any, now time.Time) error {
	return tx.Audit.Record(store.AuditEntry{
		At: domain.Time(now), ActorID: actor.UserID, Actor: actor.String(),
		Action: action, Target: kind + ":" + id.String(), Details: details,
	})
}
