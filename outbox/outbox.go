// Package outbox owns the transactional outbox: the event envelope that goes
// on the wire, the appender that writes a command's events into the outbox
// table inside the command's own Postgres transaction, and the partitioning
// that lets the relay keep every aggregate's events in order.
package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopdev/shop/domain"
)

// Partitions is how many partitions the outbox is split into. Every event of
// one aggregate lands in the same partition, and the relay publishes a
// partition in id order, so an aggregate's events stay in version order.
// Changing it while rows are pending could reorder those rows.
const Partitions = 16

// SchemaVersion is the version of the Envelope layout.
const SchemaVersion = 1

// Envelope is the JSON document published for every event.
type Envelope struct {
	ID               uuid.UUID         `json:"id"`
	Type             string            `json:"type"`
	SchemaVersion    int               `json:"schema_version"`
	AggregateType    string            `json:"aggregate_type"`
	AggregateID      uuid.UUID         `json:"aggregate_id"`
	AggregateVersion int64             `json:"aggregate_version"`
	OccurredAt       time.Time         `json:"occurred_at"`
	CorrelationID    string            `json:"correlation_id"`
	CausationID      string            `json:"causation_id"`
	Trace            map[string]string `json:"trace,omitempty"`
	Data             json.RawMessage   `json:"data"`
}

// Metadata ties events to what caused them. It travels in the context from
// the HTTP request (or the consumed message) to the appender.
type Metadata struct {
	CorrelationID string            // the first request of a flow; every event of the flow carries it
	CausationID   string            // the request or event that directly caused these events
	Trace         map[string]string // W3C Trace Context (traceparent, tracestate) of the span that caused them; nil: none
}

type metadataKey struct{}

// WithMetadata returns a context carrying md.
func WithMetadata(ctx context.Context, md Metadata) context.Context {
	return context.WithValue(ctx, metadataKey{}, md)
}

// MetadataFrom returns the metadata of ctx, or the zero Metadata.
func MetadataFrom(ctx context.Context) Metadata {
	md, _ := ctx.Value(metadataKey{}).(Metadata)
	return md
}

// Partition returns the partition of an aggregate: FNV-1a of its id.
func Partition(aggregateID uuid.UUID) int16 {
	h := fnv.New32a()
	_, _ = h.Write(aggregateID[:])
	return int16(h.Sum32() % Partitions)
}

// NewEnvelope wraps a domain event for the wire.
func NewEnvelope(e domain.Event, md Metadata) (Envelope, error) {
	data, err := json.Marshal(e.Data)
	if err != nil {
		return Envelope{}, fmt.Errorf("encode %s data: %w", e.Type, err)
	}
	env := Envelope{
		ID:               e.ID,
		Type:             e.Type,
		SchemaVersion:    SchemaVersion,
		AggregateType:    e.AggregateType,
		AggregateID:      e.AggregateID,
		AggregateVersion: e.AggregateVersion,
		OccurredAt:       e.OccurredAt,
		CorrelationID:    md.CorrelationID,
		CausationID:      md.CausationID,
		Data:             data,
	}
	if env.CorrelationID == "" {
		env.CorrelationID = e.ID.String()
	}
	if md.Trace["traceparent"] != "" {
		env.Trace = md.Trace
	}
	return env, nil
}

// Queuer is where the appender writes: a *pgx.Batch that the unit of work
// sends inside its transaction.
type Queuer interface {
	Queue(query string, arguments ...any) *pgx.QueuedQuery
}

const insertSQL = `INSERT INTO outbox (event_id, partition, routing_key, aggregate_type, aggregate_id, aggregate_version, payload)
VALUES ($1, $2, $3, $4, $5, $6, $7)`

// Append queues one INSERT per event, in the order given, into q. The rows
// become visible to the relay only when q's transaction commits; their ids
// follow the order of the events.
func Append(q Queuer, md Metadata, events ...domain.Event) error {
	for _, e := range events {
		env, err := NewEnvelope(e, md)
		if err != nil {
			return err
		}
		payload, err := json.Marshal(env)
		if err != nil {
			return fmt.Errorf("encode %s envelope: %w", e.Type, err)
		}
		q.Queue(insertSQL, e.ID, Partition(e.AggregateID), e.Type, e.AggregateType, e.AggregateID, e.AggregateVersion, string(payload))
	}
	return nil
}
