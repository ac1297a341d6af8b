package consumer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
)

// TestDeliverySpans: with Tracing set, each delivery is a consumer span,
// the child of the trace context in its headers or, for a message without
// them, of its envelope's; it names its routing key, event id and group.
// Deliveries applied together are one batch span linked to each of them,
// and the events each appends carry its own delivery span's context.
func TestDeliverySpans(t *testing.T) {
	t.Parallel()
	tp, rec := testenv.Recorder(t)
	const concurrency = 8
	envs := envelopes(t, concurrency*2)
	parents := map[string]string{} // event id → the span id its delivery's span must have as parent
	x, release := holding(t, len(envs), concurrency, consumer.NewMetrics(prometheus.NewRegistry()), echo, func(c *consumer.Config) { c.Tracing = tp })
	for i, env := range envs {
		traceID, spanID := fmt.Sprintf("%032x", i+1), fmt.Sprintf("%016x", i+1)
		traceparent := "00-" + traceID + "-" + spanID + "-01"
		if i%4 == 3 { // published without headers: the envelope's context
			env.Trace = map[string]string{"traceparent": traceparent}
			x.publishEnvelope(t, env)
		} else { // the relay's headers win over the envelope's
			env.Trace = map[string]string{"traceparent": "00-" + strings.Repeat("e", 32) + "-" + strings.Repeat("e", 16) + "-01"}
			x.publish(t, env.ID.String(), env.Type, mustJSON(t, env), amqp.Table{"traceparent": traceparent})
		}
		parents[env.ID.String()] = spanID
	}
	release()
	testenv.Eventually(t, 20*time.Second, func() error { return echoes(t, x, envs) })

	delivery := map[string]sdktrace.ReadOnlySpan{} // event id → its delivery's span
	var batchSpans []sdktrace.ReadOnlySpan
	testenv.Eventually(t, 10*time.Second, func() error {
		delivery, batchSpans = map[string]sdktrace.ReadOnlySpan{}, nil
		for _, sp := range rec.Ended() {
			switch sp.Name() {
			case "process " + group.Queue():
				for _, a := range sp.Attributes() {
					if a.Key == "messaging.message.id" {
						delivery[a.Value.AsString()] = sp
					}
				}
			case "process batch " + group.Queue():
				batchSpans = append(batchSpans, sp)
			}
		}
		if len(delivery) < len(envs) {
			return fmt.Errorf("%d delivery spans ended, want %d", len(delivery), len(envs))
		}
		return nil
	})
	for id, sp := range delivery {
		attrs := map[string]string{}
		for _, a := range sp.Attributes() {
			attrs[string(a.Key)] = a.Value.String()
		}
		switch {
		case sp.SpanKind() != trace.SpanKindConsumer:
			t.Errorf("delivery of %s: kind %s, want consumer", id, sp.SpanKind())
		case sp.Parent().SpanID().String() != parents[id] || !sp.Parent().IsRemote():
			t.Errorf("delivery of %s has parent %s, want the published context's %s", id, sp.Parent().SpanID(), parents[id])
		case attrs["messaging.system"] != "rabbitmq" || attrs["messaging.rabbitmq.destination.routing_key"] != "stock.reserved" ||
			attrs["messaging.consumer.group.name"] != group.Group || attrs["messaging.destination.name"] != outbox.Exchange:
			t.Errorf("delivery of %s has attributes %v", id, attrs)
		}
		var carried string
		testenv.Must(t, x.pool.QueryRow(context.Background(), `SELECT payload->'trace'->>'traceparent' FROM outbox WHERE payload->>'causation_id' = $1`, id).Scan(&carried), "echo")
		if want := "00-" + sp.SpanContext().TraceID().String() + "-" + sp.SpanContext().SpanID().String() + "-01"; carried != want {
			t.Errorf("the echo of %s carries %q, want its delivery's span %q", id, carried, want)
		}
	}
	linked := 0
	for _, b := range batchSpans {
		if len(b.Links()) < 2 {
			continue
		}
		linked++
		for _, l := range b.Links() {
			found := false
			for _, sp := range delivery {
				found = found || sp.SpanContext().SpanID() == l.SpanContext.SpanID()
			}
			if !found {
				t.Errorf("a batch span links to %s, which is no delivery's span", l.SpanContext.SpanID())
			}
		}
	}
	if linked == 0 {
		t.Errorf("no batch span links several deliveries (%d batch spans)", len(batchSpans))
	}
}

func mustJSON(t *testing.T, env outbox.Envelope) []byte {
	t.Helper()
	body, err := json.Marshal(env)
	testenv.Must(t, err, "encode envelope")
	return body
}
