package outbox_test

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/api"
	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/product"
	"github.com/shopdev/shop/domain/stock"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/handlers"
	"github.com/shopdev/shop/outbox"
)

// These tests hold the event stream's contract, api/asyncapi.yaml, to the
// code: the topology of the registry, and the events the domain records as
// outbox.NewEnvelope puts them on the wire. They need no service.

// domainKeys are the event types the domain packages declare.
var domainKeys = []string{user.EventRegistered, product.EventCreated, product.EventUpdated, product.EventStockChanged,
	order.EventPlaced, stock.EventReserved, stock.EventRejected, order.EventConfirmed, order.EventRejected,
	order.EventCancelled, stock.EventReleased}

func contractEvents(t *testing.T) []api.Event {
	t.Helper()
	events, err := api.Events()
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// TestContractChannelsAreTheRoutingKeys: the document has a channel for
// every routing key the registry binds and the domain declares, and for no
// other.
func TestContractChannelsAreTheRoutingKeys(t *testing.T) {
	t.Parallel()
	var documented []string
	for _, e := range contractEvents(t) {
		documented = append(documented, e.RoutingKey)
	}
	bound := map[string]bool{}
	for _, r := range handlers.Topology() {
		for _, k := range r.Keys {
			bound[k] = true
		}
	}
	sorted := func(keys []string) []string { return slices.Sorted(slices.Values(keys)) }
	if got, want := sorted(documented), slices.Sorted(maps.Keys(bound)); !slices.Equal(got, want) {
		t.Errorf("api/asyncapi.yaml has channels %v; the topology binds %v", got, want)
	}
	if got, want := sorted(documented), sorted(domainKeys); !slices.Equal(got, want) {
		t.Errorf("api/asyncapi.yaml has channels %v; the domain declares %v", got, want)
	}
}

// TestContractSubscribersAreTheBindings: the groups the document names as
// subscribers of a routing key are exactly the groups whose queue the
// topology binds to it.
func TestContractSubscribersAreTheBindings(t *testing.T) {
	t.Parallel()
	topology := handlers.Topology()
	for _, e := range contractEvents(t) {
		var binding []string
		for _, r := range topology {
			if slices.Contains(r.Keys, e.RoutingKey) {
				binding = append(binding, r.Group)
			}
		}
		if got, want := slices.Sorted(slices.Values(e.Groups)), slices.Sorted(slices.Values(binding)); !slices.Equal(got, want) {
			t.Errorf("%s: api/asyncapi.yaml names subscribers %v; the topology binds the queues of %v", e.RoutingKey, got, want)
		}
	}
}

// recorded returns, through the domain's own commands, at least one event
// of every type, and of each the variants whose data differ: every reason
// of stock.changed, a cancellation of a pending and of a confirmed order,
// a rejection with its reason.
func recorded(t *testing.T) []domain.Event {
	t.Helper()
	now := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	id := func() uuid.UUID { return uuid.Must(uuid.NewV7()) }
	var events []domain.Event

	u, err := user.Register(id(), " Ann@Example.com ", " Ann ", "hash", user.RoleCustomer, now)
	must(err)
	events = append(events, u.Events()...)

	mug, err := product.Create(id(), "MUG-1", "Mug", 1200, 10, now)
	must(err)
	rare, err := product.Create(id(), "RARE-1", "Rare", 0, 0, now)
	must(err)
	name := "Big mug"
	must(mug.Update(&name, nil, now))
	must(mug.Restock(5, now))
	events = append(events, mug.Events()...)
	events = append(events, rare.Events()...)

	line := func(p *product.Product, q int64) order.Line {
		return order.Line{ProductID: p.ID(), SKU: p.SKU(), Name: p.Name(), Quantity: q, UnitPriceCents: p.PriceCents()}
	}
	products := map[uuid.UUID]*product.Product{mug.ID(): mug, rare.ID(): rare}
	place := func(lines ...order.Line) (*order.Order, []stock.Line) {
		t.Helper()
		o, err := order.Place(id(), u.ID(), lines, now)
		must(err)
		events = append(events, o.Events()...)
		var sl []stock.Line
		for _, l := range lines {
			sl = append(sl, stock.Line{ProductID: l.ProductID, Quantity: l.Quantity})
		}
		return o, sl
	}

	// Reserved, confirmed, cancelled confirmed, released.
	confirmed, lines := place(line(mug, 2))
	r, err := stock.Reserve(confirmed.ID(), lines, products, now)
	must(err)
	events = append(events, r.Events()...)
	must(confirmed.Confirm(now))
	must(confirmed.Cancel(now))
	events = append(events, confirmed.Events()...)
	released, err := r.Release(products, now)
	must(err)
	if !released {
		t.Fatal("a reserved order released nothing")
	}
	events = append(events, r.Events()...)
	events = append(events, mug.Events()...) // reserved, released

	// Rejected for want of stock, with the reason.
	rejected, lines := place(line(mug, 1), line(rare, 2))
	r, err = stock.Reserve(rejected.ID(), lines, products, now)
	must(err)
	events = append(events, r.Events()...)
	must(rejected.Reject(r.Reason(), now))
	events = append(events, rejected.Events()...)

	// Cancelled while pending.
	pending, _ := place(line(mug, 1))
	must(pending.Cancel(now))
	events = append(events, pending.Events()...)
	return events
}

// onTheWire returns e as the relay publishes it, with metadata md.
func onTheWire(t *testing.T, e domain.Event, md outbox.Metadata) []byte {
	t.Helper()
	env, err := outbox.NewEnvelope(e, md)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// metadatas are what events are recorded with: a request's (with a trace
// context), and none (a command run outside a request).
var metadatas = map[string]outbox.Metadata{
	"from a request": {CorrelationID: "4c1f8a0b2d9e4f7a", CausationID: "4c1f8a0b2d9e4f7a", Trace: map[string]string{
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "vendor=value"}},
	"from a consumer group": {CorrelationID: "4c1f8a0b2d9e4f7a", CausationID: uuid.Must(uuid.NewV7()).String()},
	"outside a request":     {},
}

// TestDomainEventsFollowTheContract: every event the domain records, as
// the outbox wraps it, validates against its schema.
func TestDomainEventsFollowTheContract(t *testing.T) {
	t.Parallel()
	schemas, err := api.LoadEventSchemas()
	if err != nil {
		t.Fatal(err)
	}
	events := recorded(t)
	seen := map[string]bool{}
	for name, md := range metadatas {
		for _, e := range events {
			seen[e.Type] = true
			if err := schemas.Validate(e.Type, onTheWire(t, e, md)); err != nil {
				t.Errorf("%s: %v\n%s", name, err, onTheWire(t, e, md))
			}
		}
	}
	if got, want := slices.Sorted(maps.Keys(seen)), slices.Sorted(slices.Values(schemas.RoutingKeys())); !slices.Equal(got, want) {
		t.Errorf("the test recorded %v; the contract has %v", got, want)
	}
}

// neverWritten are fields of a data struct that the domain never writes
// for an event, which its schema therefore does not allow.
var neverWritten = map[string][]string{
	order.EventConfirmed: {"reason"}, // StatusChanged.Reason is a rejection's only
	order.EventCancelled: {"reason"},
}

// requiredWhen are omitempty fields that the schema requires in some cases,
// as the domain always writes them then.
var requiredWhen = map[string][]string{
	product.EventStockChanged: {"order_id"}, // a reservation's and a release's, never a restock's
}

// TestContractRequiresWhatGoAlwaysWrites: for each event's data struct, a
// field without omitempty is required by the schema, one with omitempty is
// optional (unless required in the sample's case), and every field the
// struct has is in the schema (none is refused as unknown) unless the
// domain never writes it for that event.
func TestContractRequiresWhatGoAlwaysWrites(t *testing.T) {
	t.Parallel()
	schemas, err := api.LoadEventSchemas()
	if err != nil {
		t.Fatal(err)
	}
	// One event of each type, the one whose data has the most fields.
	sample := map[string]domain.Event{}
	for _, e := range recorded(t) {
		if prev, ok := sample[e.Type]; !ok || len(fieldsOf(t, e)) > len(fieldsOf(t, prev)) {
			sample[e.Type] = e
		}
	}
	for key, e := range sample {
		var env map[string]any
		if err := json.Unmarshal(onTheWire(t, e, outbox.Metadata{}), &env); err != nil {
			t.Fatal(err)
		}
		data := env["data"].(map[string]any)
		for _, f := range jsonFields(reflect.TypeOf(e.Data)) {
			if slices.Contains(neverWritten[key], f.name) {
				continue
			}
			if _, ok := data[f.name]; !ok {
				t.Errorf("%s: the sample has no %s; the test cannot check it", key, f.name)
				continue
			}
			saved := data[f.name]
			delete(data, f.name)
			err := validateMap(t, schemas, key, env)
			data[f.name] = saved
			switch {
			case f.omitempty && err != nil && !slices.Contains(requiredWhen[key], f.name):
				t.Errorf("%s: without %s (omitempty in Go) refused: %v", key, f.name, err)
			case !f.omitempty && err == nil:
				t.Errorf("%s: without %s (always written by Go) accepted; the schema must require it", key, f.name)
			}
		}
		data["undocumented"] = true
		if err := validateMap(t, schemas, key, env); err == nil {
			t.Errorf("%s: an undocumented data field accepted; the schema must close the object", key)
		}
	}
}

type jsonField struct {
	name      string
	omitempty bool
}

// jsonFields are the fields encoding/json writes for struct type typ.
func jsonFields(typ reflect.Type) []jsonField {
	var out []jsonField
	for f := range typ.Fields() {
		tag := f.Tag.Get("json")
		if !f.IsExported() || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		out = append(out, jsonField{name: name, omitempty: slices.Contains(strings.Split(opts, ","), "omitempty")})
	}
	return out
}

func fieldsOf(t *testing.T, e domain.Event) map[string]any {
	t.Helper()
	var data map[string]any
	raw, err := json.Marshal(e.Data)
	if err == nil {
		err = json.Unmarshal(raw, &data)
	}
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func validateMap(t *testing.T, schemas *api.EventSchemas, key string, env map[string]any) error {
	t.Helper()
	body, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return schemas.Validate(key, body)
}
