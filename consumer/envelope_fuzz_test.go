package consumer_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/outbox"
)

// FuzzEnvelope decodes whatever body a delivery may carry, as every group
// does before it applies one (a body that fails goes to the dead queue,
// with the error as its reason). An accepted envelope has what every
// handler relies on, and encodes and decodes to itself. Its seed corpus is
// in testdata/fuzz, with an envelope as the relay publishes it added here.
func FuzzEnvelope(f *testing.F) {
	env, err := outbox.NewEnvelope(domain.Event{ID: uuid.Must(uuid.NewV7()), Type: "order.placed", AggregateType: "order",
		AggregateID: uuid.New(), AggregateVersion: 1, OccurredAt: time.Now(),
		Data: map[string]any{"user_id": uuid.NewString(), "items": []any{map[string]any{"product_id": uuid.NewString(), "quantity": 2}}}},
		outbox.Metadata{CorrelationID: "req-1", CausationID: "req-1", Trace: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}})
	if err != nil {
		f.Fatal(err)
	}
	published, err := json.Marshal(env)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(published)

	f.Fuzz(func(t *testing.T, body []byte) {
		env, err := consumer.DecodeEnvelope(body)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "decode envelope: ") {
				t.Fatalf("body %q: error %q does not say it is the envelope that is wrong", body, err)
			}
			return
		}
		switch {
		case env.ID == uuid.Nil:
			t.Fatalf("body %q accepted without an event id", body)
		case env.Type == "":
			t.Fatalf("body %q accepted without a type", body)
		case env.SchemaVersion != outbox.SchemaVersion:
			t.Fatalf("body %q accepted with schema version %d", body, env.SchemaVersion)
		case len(env.Data) == 0 || !json.Valid(env.Data):
			t.Fatalf("body %q accepted with data %q", body, env.Data)
		}

		enc, err := json.Marshal(env)
		if err != nil {
			t.Fatalf("body %q: accepted envelope does not encode: %v", body, err)
		}
		again, err := consumer.DecodeEnvelope(enc)
		if err != nil {
			t.Fatalf("body %q: accepted, but its encoding %s is not: %v", body, enc, err)
		}
		if !sameEnvelope(env, again) {
			t.Fatalf("body %q: decoded %+v, then from its encoding %s %+v", body, env, enc, again)
		}
	})
}

// sameEnvelope reports whether a and b hold the same event: the same
// instant, and data that decode alike (whitespace and escapes such as
// encoding/json's \u0026 for & do not count).
func sameEnvelope(a, b outbox.Envelope) bool {
	da, errA := decodeData(a.Data)
	db, errB := decodeData(b.Data)
	if errA != nil || errB != nil {
		return false
	}
	return a.ID == b.ID && a.Type == b.Type && a.SchemaVersion == b.SchemaVersion &&
		a.AggregateType == b.AggregateType && a.AggregateID == b.AggregateID &&
		a.AggregateVersion == b.AggregateVersion && a.OccurredAt.Equal(b.OccurredAt) &&
		a.CorrelationID == b.CorrelationID && a.CausationID == b.CausationID &&
		maps.Equal(a.Trace, b.Trace) && reflect.DeepEqual(da, db)
}

// decodeData decodes JSON data, its numbers as written.
func decodeData(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}
