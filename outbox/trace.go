package outbox

import (
	"context"
	"encoding/json"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopdev/shop/internal/telemetry"
)

// The relay's trace of a round, when RelayConfig.Tracing is set: for each
// row, a producer span "create shop.events", the child of the trace
// context its envelope carries (the span that appended the event), from
// publish to confirm; its context goes out as the message's traceparent
// and tracestate headers, so that the consumers' spans are its children.
// The round is one producer span "send shop.events", a root linked to every
// message's.

// traced is a round's spans: one per row, and the round's.
type traced struct {
	rows  []trace.Span
	round trace.Span
}

// traceRound starts the spans of a round that publishes batch and sets
// each publishing's headers; nil when tracing is off.
func (r *Relay) traceRound(ctx context.Context, batch []row, pubs []amqp.Publishing) *traced {
	if r.tracer == nil || len(batch) == 0 {
		return nil
	}
	t := &traced{rows: make([]trace.Span, len(batch))}
	links := make([]trace.Link, len(batch))
	for i, x := range batch {
		var env struct {
			Trace map[string]string `json:"trace"`
		}
		_ = json.Unmarshal(x.payload, &env) // a row without a trace context starts a trace
		opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
			semconv.MessagingSystemRabbitMQ, semconv.MessagingOperationTypeCreate, semconv.MessagingOperationName("create"),
			semconv.MessagingDestinationName(Exchange), semconv.MessagingRabbitMQDestinationRoutingKey(x.key),
			semconv.MessagingMessageID(x.eventID))}
		if len(env.Trace) == 0 {
			opts = append(opts, trace.WithNewRoot())
		}
		sctx, span := r.tracer.Start(telemetry.Extract(context.WithoutCancel(ctx), env.Trace), "create "+Exchange, opts...)
		t.rows[i] = span
		links[i] = trace.Link{SpanContext: span.SpanContext()}
		headers := amqp.Table{}
		for k, v := range telemetry.Carrier(sctx) {
			headers[k] = v
		}
		pubs[i].Headers = headers
	}
	_, t.round = r.tracer.Start(ctx, "send "+Exchange, trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithLinks(links...), trace.WithAttributes(semconv.MessagingSystemRabbitMQ, semconv.MessagingOperationTypeSend,
			semconv.MessagingOperationName("send"), semconv.MessagingDestinationName(Exchange), semconv.MessagingBatchMessageCount(len(batch))))
	return t
}

// end ends the spans: failed[i] says why row i was not taken ("" if it
// was); err, that the round's outcome is unknown.
func (t *traced) end(failed []string, err error) {
	if t == nil {
		return
	}
	for i, span := range t.rows {
		switch {
		case err != nil:
			span.SetStatus(codes.Error, err.Error())
		case failed[i] != "":
			span.SetStatus(codes.Error, failed[i])
		}
		span.End()
	}
	if err != nil {
		t.round.SetStatus(codes.Error, err.Error())
	}
	t.round.End()
}
