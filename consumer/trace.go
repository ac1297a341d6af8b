package consumer

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopdev/shop/internal/telemetry"
	"github.com/shopdev/shop/outbox"
)

// The trace of a delivery: a consumer span per delivery, the child of the
// trace context its headers carry (the relay's span that published it) or,
// for a message published without them, of its envelope's (the span that
// appended the event); and a span per batch, linked to every delivery in
// it. The unit of work makes each transaction a span below them (when the
// process traces it). The events a delivery causes carry its span's context
// on (causedBy). With tracing off (Config.Tracing nil)
// none of it runs.

// Trace Context headers a message may carry (the relay writes them).
const (
	headerTraceparent = "traceparent"
	headerTracestate  = "tracestate"
)

// traceDelivery starts the span of a delivery around everything done with
// it (retries, dead queue) and puts it in the message's context.
func (g *Runner) traceDelivery(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		var carrier map[string]string
		if tp := msg.Metadata.Get(headerTraceparent); tp != "" {
			carrier = map[string]string{headerTraceparent: tp, headerTracestate: msg.Metadata.Get(headerTracestate)}
		} else if env, err := decode(msg.Payload); err == nil {
			carrier = env.Trace
		}
		ctx, span := g.tracer.Start(telemetry.Extract(msg.Context(), carrier), "process "+g.route.Queue(),
			trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(g.messaging(msg.Metadata.Get(metaType))...),
			trace.WithAttributes(semconv.MessagingMessageID(msg.UUID)))
		defer span.End()
		msg.SetContext(ctx)
		out, err := h(msg)
		if reason := msg.Metadata.Get(MetaReason); reason != "" {
			span.SetStatus(codes.Error, "dead-lettered: "+reason)
		} else if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		return out, err
	}
}

// messaging are the attributes of the group's consumer spans.
func (g *Runner) messaging(routingKey string) []attribute.KeyValue {
	return []attribute.KeyValue{
		semconv.MessagingSystemRabbitMQ, semconv.MessagingOperationTypeProcess, semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(outbox.Exchange), semconv.MessagingRabbitMQDestinationRoutingKey(routingKey),
		semconv.MessagingConsumerGroupName(g.cfg.Group.Name), semconv.MessagingDestinationSubscriptionName(g.route.Queue()),
	}
}

// traceBatch starts the span of a batch: the child of its first
// delivery's, linked to every delivery's. It returns ctx and a no-op end
// when tracing is off.
func (g *Runner) traceBatch(ctx context.Context, batch []*job) (context.Context, func(error)) {
	if g.tracer == nil {
		return ctx, func(error) {}
	}
	links := make([]trace.Link, len(batch))
	for i, j := range batch {
		links[i] = trace.Link{SpanContext: trace.SpanContextFromContext(j.ctx)}
	}
	ctx, span := g.tracer.Start(ctx, "process batch "+g.route.Queue(), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(links...), trace.WithAttributes(g.messaging("")[:2]...),
		trace.WithAttributes(semconv.MessagingBatchMessageCount(len(batch)), semconv.MessagingConsumerGroupName(g.cfg.Group.Name)))
	return ctx, func(err error) { end(span, err) }
}

func end(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
