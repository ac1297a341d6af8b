// Package domain owns what every bounded context shares: the recorded event,
// the error kinds that callers map to responses, and field validation errors.
// It is pure Go: no I/O, no clocks, no randomness beyond UUID generation.
package domain

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Error kinds. Every domain error wraps exactly one of them, so an adapter
// (the HTTP error handler, a message consumer) decides what to do with
// errors.Is(err, domain.ErrConflict) and never needs to know each error.
var (
	ErrInvalid      = errors.New("invalid")
	ErrNotFound     = errors.New("not found")
	ErrConflict     = errors.New("conflict")
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
	// ErrUnavailable means a dependency (Postgres, Redis, an SMTP server)
	// could not be reached or refused for now: the same request may
	// succeed later. The API answers 503; a consumer waits and retries.
	ErrUnavailable = errors.New("unavailable")
)

// FieldError says what is wrong with one input field. Field uses the JSON
// path of the request ("items[2].quantity").
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError lists every invalid field of one input. It is ErrInvalid.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true for a *ValidationError.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// Validation collects field errors; its Err is nil when none was added.
type Validation struct {
	fields []FieldError
}

// Add records that field is invalid for the given reason.
func (v *Validation) Add(field, message string) {
	v.fields = append(v.fields, FieldError{Field: field, Message: message})
}

// Check adds the error when ok is false and reports ok.
func (v *Validation) Check(ok bool, field, message string) bool {
	if !ok {
		v.Add(field, message)
	}
	return ok
}

// Err returns a *ValidationError with every recorded field, or nil.
func (v *Validation) Err() error {
	if len(v.fields) == 0 {
		return nil
	}
	return &ValidationError{Fields: v.fields}
}

// Text validates a required single-line text field: trimmed, not empty,
// valid UTF-8, no control characters (NUL cannot even be stored), at most
// maxRunes characters. It returns the trimmed value.
func (v *Validation) Text(field, value string, maxRunes int) string {
	value = strings.TrimSpace(value)
	switch {
	case value == "":
		v.Add(field, "is required")
	case !utf8.ValidString(value):
		v.Add(field, "must be valid UTF-8")
	case strings.ContainsFunc(value, unicode.IsControl):
		v.Add(field, "must not contain control characters")
	case utf8.RuneCountInString(value) > maxRunes:
		v.Add(field, fmt.Sprintf("must be at most %d characters", maxRunes))
	}
	return value
}

// Invalid is a shortcut for a validation error on a single field.
func Invalid(field, message string) error {
	return &ValidationError{Fields: []FieldError{{Field: field, Message: message}}}
}

// Event is something that happened to an aggregate, recorded by the aggregate
// itself. Data is the event's payload: a struct of the emitting package that
// carries enough state for read models to be rebuilt from events alone.
type Event struct {
	ID               uuid.UUID // UUIDv7; the idempotency key of every consumer
	Type             string    // past tense routing key, e.g. "order.placed"
	AggregateType    string
	AggregateID      uuid.UUID
	AggregateVersion int64 // the aggregate's version after this event
	OccurredAt       time.Time
	Data             any
}

// NewEvent records an event with a fresh UUIDv7 id.
func NewEvent(typ, aggregateType string, aggregateID uuid.UUID, version int64, at time.Time, data any) Event {
	return Event{
		ID:               uuid.Must(uuid.NewV7()),
		Type:             typ,
		AggregateType:    aggregateType,
		AggregateID:      aggregateID,
		AggregateVersion: version,
		OccurredAt:       Time(at),
		Data:             data,
	}
}

// Time is t as the domain keeps it: in UTC, to the microsecond (what
// Postgres stores), so that an aggregate reads the same whether it was
// just made or loaded again, and every answer about it shows one time.
func Time(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// Recorder is embedded by aggregates to keep the events they record until
// they are saved.
type Recorder struct {
	events []Event
}

// Record appends e to the pending events.
func (r *Recorder) Record(e Event) { r.events = append(r.events, e) }

// Events returns the pending events and forgets them.
func (r *Recorder) Events() []Event {
	out := r.events
	r.events = nil
	return out
}
