package domain_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/domain"
)

// validationFields asserts that err is a *domain.ValidationError that is also
// domain.ErrInvalid, and returns its fields.
func validationFields(t *testing.T, err error) []domain.FieldError {
	t.Helper()
	if err == nil {
		t.Fatal("error = nil, want a *domain.ValidationError")
	}
	if !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("errors.Is(%v, domain.ErrInvalid) = false, want true", err)
	}
	var ve *domain.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("errors.As(%v, *domain.ValidationError) = false, want true", err)
	}
	return ve.Fields
}

func TestValidationErr(t *testing.T) {
	type add struct {
		field, message string
	}
	tests := []struct {
		name    string
		adds    []add
		want    []domain.FieldError
		wantMsg string
	}{
		{
			name: "nothing added",
			want: nil,
		},
		{
			name:    "one field",
			adds:    []add{{"email", "is required"}},
			want:    []domain.FieldError{{Field: "email", Message: "is required"}},
			wantMsg: "invalid input: email: is required",
		},
		{
			name: "several fields keep their order",
			adds: []add{
				{"items[2].quantity", "must be between 1 and 1000"},
				{"email", "is required"},
				{"name", "is required"},
			},
			want: []domain.FieldError{
				{Field: "items[2].quantity", Message: "must be between 1 and 1000"},
				{Field: "email", Message: "is required"},
				{Field: "name", Message: "is required"},
			},
			wantMsg: "invalid input: items[2].quantity: must be between 1 and 1000; email: is required; name: is required",
		},
		{
			name: "the same field twice is kept twice",
			adds: []add{{"name", "a"}, {"name", "b"}},
			want: []domain.FieldError{
				{Field: "name", Message: "a"},
				{Field: "name", Message: "b"},
			},
			wantMsg: "invalid input: name: a; name: b",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v domain.Validation
			for _, a := range tt.adds {
				v.Add(a.field, a.message)
			}
			err := v.Err()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Err() = %v, want nil", err)
				}
				return
			}
			got := validationFields(t, err)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("fields = %#v, want %#v", got, tt.want)
			}
			if err.Error() != tt.wantMsg {
				t.Errorf("Error() = %q, want %q", err.Error(), tt.wantMsg)
			}
		})
	}
}

func TestValidationCheck(t *testing.T) {
	tests := []struct {
		name       string
		oks        []bool
		wantFields []string
	}{
		{name: "all pass", oks: []bool{true, true, true}, wantFields: nil},
		{name: "one fails", oks: []bool{true, false, true}, wantFields: []string{"f1"}},
		{name: "all fail", oks: []bool{false, false}, wantFields: []string{"f0", "f1"}},
		{name: "none checked", oks: nil, wantFields: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v domain.Validation
			for i, ok := range tt.oks {
				if got := v.Check(ok, fmt.Sprintf("f%d", i), "bad"); got != ok {
					t.Errorf("Check(%v) = %v, want %v", ok, got, ok)
				}
			}
			err := v.Err()
			if tt.wantFields == nil {
				if err != nil {
					t.Fatalf("Err() = %v, want nil", err)
				}
				return
			}
			fields := validationFields(t, err)
			var names []string
			for _, f := range fields {
				names = append(names, f.Field)
				if f.Message != "bad" {
					t.Errorf("field %s message = %q, want %q", f.Field, f.Message, "bad")
				}
			}
			if !reflect.DeepEqual(names, tt.wantFields) {
				t.Errorf("fields = %v, want %v", names, tt.wantFields)
			}
		})
	}
}

func TestInvalid(t *testing.T) {
	err := domain.Invalid("quantity", "must be positive")
	fields := validationFields(t, err)
	want := []domain.FieldError{{Field: "quantity", Message: "must be positive"}}
	if !reflect.DeepEqual(fields, want) {
		t.Errorf("fields = %#v, want %#v", fields, want)
	}
	if got, wantMsg := err.Error(), "invalid input: quantity: must be positive"; got != wantMsg {
		t.Errorf("Error() = %q, want %q", got, wantMsg)
	}
}

func TestValidationErrorIsOnlyErrInvalid(t *testing.T) {
	err := domain.Invalid("x", "y")
	wrapped := fmt.Errorf("creating thing: %w", err)
	tests := []struct {
		name   string
		err    error
		target error
		want   bool
	}{
		{"direct is ErrInvalid", err, domain.ErrInvalid, true},
		{"wrapped is ErrInvalid", wrapped, domain.ErrInvalid, true},
		{"not ErrNotFound", err, domain.ErrNotFound, false},
		{"not ErrConflict", err, domain.ErrConflict, false},
		{"not ErrUnauthorized", err, domain.ErrUnauthorized, false},
		{"not ErrForbidden", err, domain.ErrForbidden, false},
		{"not an unrelated error", err, errors.New("invalid"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errors.Is(tt.err, tt.target); got != tt.want {
				t.Errorf("errors.Is(%v, %v) = %v, want %v", tt.err, tt.target, got, tt.want)
			}
		})
	}
	var ve *domain.ValidationError
	if !errors.As(wrapped, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Field != "x" {
		t.Errorf("errors.As on a wrapped validation error did not find field x: %#v", ve)
	}
}

func TestErrorKindsAreDistinct(t *testing.T) {
	kinds := []error{domain.ErrInvalid, domain.ErrNotFound, domain.ErrConflict, domain.ErrUnauthorized, domain.ErrForbidden}
	for i, a := range kinds {
		for j, b := range kinds {
			if got, want := errors.Is(a, b), i == j; got != want {
				t.Errorf("errors.Is(%v, %v) = %v, want %v", a, b, got, want)
			}
		}
	}
}

func TestNewEvent(t *testing.T) {
	aggID := uuid.New()
	paris := time.FixedZone("UTC+2", 2*60*60)
	local := time.Date(2025, 6, 1, 14, 30, 0, 123, paris)
	type payload struct{ N int }
	tests := []struct {
		name    string
		typ     string
		aggType string
		version int64
		at      time.Time
		data    any
	}{
		{"utc time", "order.placed", "order", 1, time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC), payload{N: 1}},
		{"non-utc time is converted", "stock.changed", "product", 7, local, payload{N: 2}},
		{"nil data", "user.registered", "user", 1, local, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := domain.NewEvent(tt.typ, tt.aggType, aggID, tt.version, tt.at, tt.data)
			if e.ID == uuid.Nil {
				t.Fatal("ID is nil")
			}
			if got := e.ID.Version(); got != 7 {
				t.Errorf("ID version = %d, want 7", got)
			}
			if got := e.ID.Variant(); got != uuid.RFC4122 {
				t.Errorf("ID variant = %v, want RFC4122", got)
			}
			if e.Type != tt.typ {
				t.Errorf("Type = %q, want %q", e.Type, tt.typ)
			}
			if e.AggregateType != tt.aggType {
				t.Errorf("AggregateType = %q, want %q", e.AggregateType, tt.aggType)
			}
			if e.AggregateID != aggID {
				t.Errorf("AggregateID = %v, want %v", e.AggregateID, aggID)
			}
			if e.AggregateVersion != tt.version {
				t.Errorf("AggregateVersion = %d, want %d", e.AggregateVersion, tt.version)
			}
			if want := tt.at.Truncate(time.Microsecond); !e.OccurredAt.Equal(want) {
				t.Errorf("OccurredAt = %v, want the instant %v to the microsecond", e.OccurredAt, want)
			}
			if e.OccurredAt.Location() != time.UTC {
				t.Errorf("OccurredAt location = %v, want UTC", e.OccurredAt.Location())
			}
			if !reflect.DeepEqual(e.Data, tt.data) {
				t.Errorf("Data = %#v, want %#v", e.Data, tt.data)
			}
		})
	}
}

func TestNewEventIDsAreUniqueAndOrdered(t *testing.T) {
	const n = 1000
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	seen := make(map[uuid.UUID]bool, n)
	var prev string
	for i := range n {
		e := domain.NewEvent("t", "a", uuid.Nil, 1, at, nil)
		if seen[e.ID] {
			t.Fatalf("event %d: duplicate id %v", i, e.ID)
		}
		seen[e.ID] = true
		// UUIDv7 generated in one process are monotonic; their canonical
		// strings sort in generation order.
		s := e.ID.String()
		if s <= prev {
			t.Fatalf("event %d: id %s does not sort after %s", i, s, prev)
		}
		prev = s
	}
}

func TestRecorder(t *testing.T) {
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		types []string
	}{
		{"none", nil},
		{"one", []string{"a.one"}},
		{"several in order", []string{"a.one", "a.two", "a.three"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r domain.Recorder
			for i, typ := range tt.types {
				r.Record(domain.NewEvent(typ, "a", uuid.Nil, int64(i+1), at, nil))
			}
			got := r.Events()
			if len(got) != len(tt.types) {
				t.Fatalf("Events() returned %d events, want %d", len(got), len(tt.types))
			}
			for i, e := range got {
				if e.Type != tt.types[i] || e.AggregateVersion != int64(i+1) {
					t.Errorf("event %d = %s v%d, want %s v%d", i, e.Type, e.AggregateVersion, tt.types[i], i+1)
				}
			}
			if again := r.Events(); len(again) != 0 {
				t.Errorf("second Events() returned %d events, want 0", len(again))
			}
			// Recording after a drain starts afresh.
			r.Record(domain.NewEvent("a.later", "a", uuid.Nil, 99, at, nil))
			later := r.Events()
			if len(later) != 1 || later[0].Type != "a.later" {
				t.Errorf("Events() after a new Record = %v, want only a.later", types(later))
			}
			// A drained slice is not changed by later recording.
			if len(got) != len(tt.types) {
				t.Errorf("drained slice changed length to %d", len(got))
			}
			for i, e := range got {
				if e.Type != tt.types[i] {
					t.Errorf("drained event %d changed to %s", i, e.Type)
				}
			}
		})
	}
}

func types(events []domain.Event) string {
	s := make([]string, len(events))
	for i, e := range events {
		s[i] = e.Type
	}
	return "[" + strings.Join(s, " ") + "]"
}
