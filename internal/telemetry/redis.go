package telemetry

import (
	"context"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// RedisHook returns a go-redis hook that traces each command and pipeline
// sent inside a recording span, as a client span named after the command
// ("HSET", "pipeline"), with no arguments: keys and values stay out of the
// traces. Outside a span it does nothing, so the background work of a
// process (a cache's watch, say) starts no trace of its own. It is ours,
// not redisotel's, which starts a root span for every command.
func RedisHook(provider trace.TracerProvider) redis.Hook {
	return redisHook{tracer: provider.Tracer("github.com/shopdev/shop/internal/telemetry/redis")}
}

type redisHook struct{ tracer trace.Tracer }

func (h redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !trace.SpanFromContext(ctx).IsRecording() {
			return next(ctx, cmd)
		}
		ctx, span := h.tracer.Start(ctx, cmd.FullName(), trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(semconv.DBSystemNameRedis, semconv.DBOperationName(cmd.FullName())))
		defer span.End()
		err := next(ctx, cmd)
		record(span, err)
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !trace.SpanFromContext(ctx).IsRecording() {
			return next(ctx, cmds)
		}
		ctx, span := h.tracer.Start(ctx, "pipeline", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(semconv.DBSystemNameRedis, semconv.DBOperationName("pipeline"), semconv.DBOperationBatchSize(len(cmds))))
		defer span.End()
		err := next(ctx, cmds)
		record(span, err)
		return err
	}
}

// record marks span failed by err, unless err is nil or a Redis nil reply
// (a missing key is an answer).
func record(span trace.Span, err error) {
	if err != nil && err != redis.Nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
}
