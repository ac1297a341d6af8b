package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Audit records the admin actions in a transaction: a row is written with
// the command's other writes, or not at all.
type Audit struct{ tx *Tx }

// AuditEntry is one admin action, as a use case records it.
type AuditEntry struct {
	At time.Time
	// ActorID is the user who acted; uuid.Nil for the command line.
	ActorID uuid.UUID
	// Actor names who acted: "user:<id>" or "cli".
	Actor string
	// Action is what was done, e.g. "product.create".
	Action string
	// Target is what it was done to, e.g. "product:<id>".
	Target string
	// Details is encoded as a JSON object: values the domain validated.
	Details any
}

// AuditRecord is a stored AuditEntry, as GET /v1/admin/audit shows it.
type AuditRecord struct {
	ID        int64           `json:"id"`
	At        time.Time       `json:"at"`
	Actor     string          `json:"actor"`
	Action    string          `json:"action"`
	Target    string          `json:"target"`
	RequestID string          `json:"request_id"`
	Details   json.RawMessage `json:"details"`
}

// Bounds of the audit log's texts (migration 7 checks them too).
const (
	maxAuditName    = 64
	maxAuditTarget  = 128
	maxAuditRequest = 128
	maxAuditDetails = 4096
)

// Record queues the insert of e, with the request id of the transaction's
// context (outbox.Metadata's causation id; empty from the command line).
// Texts are cut to their bounds rather than refused: a command must not
// fail because of what its audit row would say. Details come from values
// the domain bounded already; past their bound they are a bug, an error.
func (a Audit) Record(e AuditEntry) error {
	details := []byte("{}")
	if e.Details != nil {
		var err error
		if details, err = json.Marshal(e.Details); err != nil {
			return fmt.Errorf("encode audit details of %s: %w", e.Action, err)
		}
	}
	if len(details) > maxAuditDetails {
		return fmt.Errorf("audit details of %s: %d bytes, at most %d", e.Action, len(details), maxAuditDetails)
	}
	var actorID *uuid.UUID
	if e.ActorID != uuid.Nil {
		actorID = &e.ActorID
	}
	a.tx.queue(`INSERT INTO audit_log (at, actor_id, actor, action, target, request_id, details)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		e.At, actorID, bounded(e.Actor, maxAuditName), bounded(e.Action, maxAuditName),
		bounded(e.Target, maxAuditTarget), bounded(a.tx.md.CausationID, maxAuditRequest), string(details))
	return nil
}

// Page returns up to limit records, newest (highest id) first, with ids
// below before (0: from the newest), and the cursor of the next page (0
// on the last).
func (a Audit) Page(ctx context.Context, before int64, limit int) ([]AuditRecord, int64, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	var list []AuditRecord
	err := a.tx.read(ctx, func(rows pgx.Rows) (err error) {
		list, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (AuditRecord, error) {
			var r AuditRecord
			var details string
			err := row.Scan(&r.ID, &r.At, &r.Actor, &r.Action, &r.Target, &r.RequestID, &details)
			r.At, r.Details = r.At.UTC(), json.RawMessage(details)
			return r, err
		})
		return err
	}, `SELECT id, at, actor, action, target, request_id, details::text FROM audit_log
		WHERE id < $1 ORDER BY id DESC LIMIT $2`, before, limit+1)
	if err != nil {
		return nil, 0, fmt.Errorf("list audit log: %w", err)
	}
	if len(list) <= limit {
		return list, 0, nil
	}
	list = list[:limit]
	return list, list[limit-1].ID, nil
}

// bounded returns s as Postgres can store it (valid UTF-8, no NUL), cut to
// at most n bytes on a character boundary.
func bounded(s string, n int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
