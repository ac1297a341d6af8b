package store

import (
	"github.com/google/uuid"
)

// Email is one email the system sent, as recorded.
type Email struct {
	ID        uuid.UUID
	EventID   uuid.UUID // the event it answers
	Kind      string    // welcome, order_confirmed, ...
	UserID    uuid.UUID
	Recipient string
	Subject   string
	Body      string
	Transport string // smtp or log
}

// Emails records sent emails in a transaction.
type Emails struct{ tx *Tx }

// Add queues the insert of an email. The table allows one email per event
// and kind; a second is a conflict the inbox normally prevents.
func (s Emails) Add(e Email) {
	s.tx.queue(`INSERT INTO emails (id, event_id, kind, user_id, recipient, subject, body, transport)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, e.ID, e.EventID, e.Kind, e.UserID, e.Recipient, e.Subject, e.Body, e.Transport)
}
