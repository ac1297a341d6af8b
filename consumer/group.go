package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/internal/ops"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// Group is a consumer group as the registry (package handlers) declares
// it: its name, the events it handles and how it applies them. Its
// replicas compete on its queue, shop.<name>.
//
// A group applies events either in Postgres (Handlers: each event in a
// transaction with its inbox row, so a duplicate does nothing) or on its
// own (Project: for a store that is idempotent by itself, such as the Redis
// read models, which guard every write by aggregate version).
type Group struct {
	// Name names the group, its queues (shop.<name>, shop.<name>.dead) and
	// its inbox rows. Required.
	Name string
	// About says in a line what the group does, for shop help.
	About string
	// Keys are the routing keys the group's queue is bound to: the events
	// it handles. Required.
	Keys []string
	// Handlers apply each key's events in the inbox transaction. A key
	// without a handler is a configuration error.
	Handlers map[string]Handler
	// Prefetch reads what the handlers of a transaction's events of a
	// type will lock or read, for all of them at once, in the round trip
	// of their inbox claim, before they run: each handler then finds it in
	// the transaction. Optional, per key.
	Prefetch map[string]Prefetch
	// Project applies an event outside Postgres, with no inbox row and no
	// transaction, and reports whether anything changed. Either Handlers or
	// Project.
	Project func(ctx context.Context, e outbox.Envelope) (bool, error)
	// ProjectEach applies several events as Project would each, in one
	// round trip: it reports for each whether anything changed, and its
	// error; an event that failed is applied again alone by Project.
	// Optional.
	ProjectEach func(ctx context.Context, events []outbox.Envelope) (changed []bool, errs []error)
	// HandleEach applies the new events of a batch in tx, as their
	// Handlers would one at a time, and returns each one's error. An event
	// that failed is taken out of the batch (its inbox claim is released)
	// and applied again alone by its Handler, where retries and the dead
	// queue apply, while the others commit. It is for a group whose
	// handlers have an effect outside Postgres (the mail the emails group
	// sends), which a batch undone by one event's failure would repeat for
	// the others. It writes nothing for an event that failed, and appends
	// no events. Optional; it needs Handlers and Batches.
	HandleEach func(tx *store.Tx, events []Event) []error
	// Checks are what the group needs besides RabbitMQ and Postgres, for
	// readiness: the Redis of the projections. Optional.
	Checks []ops.Check
	// Batches says whether the deliveries in hand may be applied together
	// (Config.Batch). A group whose handlers have effects outside their
	// transaction batches only with HandleEach: a failed batch, applied
	// again one delivery at a time, would repeat them.
	Batches bool
}

// Route is the group's place in the topology: its queue bound to its keys.
func (g Group) Route() outbox.Route { return outbox.Route{Group: g.Name, Keys: g.Keys} }

// InPostgres reports whether the group applies events in Postgres
// transactions (and so holds a connection per delivery in hand).
func (g Group) InPostgres() bool { return g.Handlers != nil }

// Validate checks that the group handles exactly its keys.
func (g Group) Validate() error {
	switch {
	case g.Name == "":
		return errors.New("consumer: a group needs a name")
	case len(g.Keys) == 0:
		return fmt.Errorf("consumer %s: no routing keys", g.Name)
	case (g.Project == nil) == (g.Handlers == nil):
		return fmt.Errorf("consumer %s: either handlers or a projector is required", g.Name)
	case g.HandleEach != nil && (g.Handlers == nil || !g.Batches):
		return fmt.Errorf("consumer %s: HandleEach needs Handlers, which apply an event alone, and Batches", g.Name)
	case g.ProjectEach != nil && g.Project == nil:
		return fmt.Errorf("consumer %s: ProjectEach needs Project, which applies an event alone", g.Name)
	}
	for _, key := range g.Keys {
		if g.Project == nil && g.Handlers[key] == nil {
			return fmt.Errorf("consumer %s: no handler for %s", g.Name, key)
		}
	}
	for key := range g.Handlers {
		if !slices.Contains(g.Keys, key) {
			return fmt.Errorf("consumer %s: a handler for %s, which its queue is not bound to", g.Name, key)
		}
	}
	for key := range g.Prefetch {
		if g.Handlers[key] == nil {
			return fmt.Errorf("consumer %s: a prefetch for %s, which has no handler", g.Name, key)
		}
	}
	return nil
}

// Event is an event of a batch with the context of its delivery: its log
// attributes, trace and outbox metadata.
type Event struct {
	Ctx context.Context
	Env outbox.Envelope
}

// Handler applies one event inside tx, the transaction that also holds the
// event's inbox row. An error rolls both back. Handlers append the events
// they cause to the outbox with tx.Append.
type Handler func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error

// Prefetch reads into tx, in one round trip, what the handlers of events
// (all of one type, in a batch, or one alone) will lock or read, so that
// each handler finds it there instead of reading it.
type Prefetch func(ctx context.Context, tx *store.Tx, events []outbox.Envelope) error

// Decode unmarshals an event's data. Data that does not fit T (a type
// mismatch, not JSON) is invalid: the message goes to the dead queue.
// Unknown fields are ignored, so producers may add fields.
func Decode[T any](env outbox.Envelope) (T, error) {
	var v T
	if err := json.Unmarshal(env.Data, &v); err != nil {
		return v, fmt.Errorf("%w: decode %s data: %w", domain.ErrInvalid, env.Type, err)
	}
	return v, nil
}

// DecodeEach decodes the data of every event of a batch.
func DecodeEach[T any](envs []outbox.Envelope) ([]T, error) {
	out := make([]T, len(envs))
	for i, env := range envs {
		v, err := Decode[T](env)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}
