// Package app owns shop's use cases: every command, whether an HTTP request
// or a consumed event asks for it, is one function here. Each runs inside a
// store.Tx that its caller opened (the HTTP layer, to store an
// Idempotency-Key reply in the same transaction; the consumer runtime, to
// write the event's inbox row with it): it loads aggregates, asks the
// domain to decide, and appends the events they recorded to the outbox.
// The transaction writes back every aggregate that changed when it commits.
//
// Where a consumer applies many events in one transaction, a Load function
// locks what all of them need in one round trip first; each event's use
// case then finds it in the transaction.
package app

import (
	"github.com/google/uuid"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/store"
)

// Actor is who issues a command: a signed-in user (UserID, and the Role
// its token carries), or Operator.
type Actor struct {
	UserID uuid.UUID
	Role   user.Role
	cli    bool
}

// Operator is the actor of the command line's admin commands (shop user
// add, revoke, role): whoever may run shop against the database acts as an
// admin with no account. The audit log names it "cli".
var Operator = Actor{Role: user.RoleAdmin, cli: true}

// String names the actor as the audit log does: "user:<id>" or "cli".
func (a Actor) String() string {
	if a.cli {
		return "cli"
	}
	return "user:" + a.UserID.String()
}

func newID() uuid.UUID { return uuid.Must(uuid.NewV7()) }

// recorded appends the events agg recorded to the outbox of tx and returns
// agg: how every use case ends that made or changed one aggregate.
func recorded[A interface{ Events() []domain.Event }](tx *store.Tx, agg A) (A, error) {
	if err := tx.Append(agg.Events()...); err != nil {
		var none A
		return none, err
	}
	return agg, nil
}
