package outbox_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/outbox"
)

func TestPartitionIsStableAndInRange(t *testing.T) {
	t.Parallel()
	seen := map[int16]bool{}
	for range 2000 {
		id := uuid.Must(uuid.NewV7())
		p := outbox.Partition(id)
		if p < 0 || p >= outbox.Partitions {
			t.Fatalf("Partition(%s) = %d, outside [0, %d)", id, p, outbox.Partitions)
		}
		if again := outbox.Partition(id); again != p {
			t.Fatalf("Partition(%s) = %d then %d", id, p, again)
		}
		seen[p] = true
	}
	if len(seen) != outbox.Partitions {
		t.Fatalf("2000 ids used %d of %d partitions; the hash does not spread", len(seen), outbox.Partitions)
	}
}

func TestNewEnvelope(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	aggregate := uuid.New()
	e := domain.NewEvent("order.placed", "order", aggregate, 3, at, map[string]int{"n": 1})
	tests := []struct {
		name            string
		md              outbox.Metadata
		wantCorrelation string
		wantTrace       bool
	}{
		{"with metadata", outbox.Metadata{CorrelationID: "corr", CausationID: "req-1", Trace: map[string]string{"traceparent": "00-abc-def-01"}}, "corr", true},
		{"without metadata the event starts its own correlation", outbox.Metadata{}, e.ID.String(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := outbox.NewEnvelope(e, tt.md)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := json.Marshal(env)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			for _, field := range []string{"id", "type", "schema_version", "aggregate_type", "aggregate_id",
				"aggregate_version", "occurred_at", "correlation_id", "causation_id", "data"} {
				if _, ok := got[field]; !ok {
					t.Errorf("envelope lacks %q: %s", field, raw)
				}
			}
			if env.ID != e.ID || env.AggregateVersion != 3 || env.AggregateID != aggregate || !env.OccurredAt.Equal(at) {
				t.Errorf("envelope %+v does not carry the event's identity", env)
			}
			if env.CorrelationID != tt.wantCorrelation {
				t.Errorf("correlation = %q, want %q", env.CorrelationID, tt.wantCorrelation)
			}
			if (env.Trace["traceparent"] != "") != tt.wantTrace {
				t.Errorf("trace = %v, want traceparent present: %v", env.Trace, tt.wantTrace)
			}
			if string(env.Data) != `{"n":1}` {
				t.Errorf("data = %s", env.Data)
			}
		})
	}
}

func TestAppendQueuesOneInsertPerEvent(t *testing.T) {
	t.Parallel()
	var b pgx.Batch
	if err := outbox.Append(&b, outbox.Metadata{}); err != nil || b.Len() != 0 {
		t.Fatalf("Append with no events queued %d statements, err %v", b.Len(), err)
	}
	id := uuid.New()
	events := []domain.Event{
		domain.NewEvent("a.happened", "a", id, 1, time.Now(), struct{}{}),
		domain.NewEvent("a.happened", "a", id, 2, time.Now(), struct{}{}),
	}
	if err := outbox.Append(&b, outbox.Metadata{}, events...); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 2 {
		t.Fatalf("queued %d statements, want 2", b.Len())
	}
	if err := outbox.Append(&b, outbox.Metadata{}, domain.NewEvent("bad", "a", id, 3, time.Now(), func() {})); err == nil {
		t.Fatal("Append of unencodable data succeeded")
	}
}
