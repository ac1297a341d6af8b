package telemetry

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// PgxTracer returns a pgx tracer that records, inside a recording span
// only, a client span per statement, named after its operation ("SELECT",
// "INSERT"), with its text (placeholders, never the values), and ONE span
// per batch, named after its statements' operations ("BEGIN INSERT
// COMMIT"). It is ours rather than otelpgx's, which records a span per
// statement of a batch as well as the batch's: a unit of work sends its
// transaction as one or two batches, and those spans cost more than the
// transaction told nothing more (BENCHMARKS.md).
func PgxTracer(provider trace.TracerProvider) pgx.QueryTracer {
	return pgxTracer{tracer: provider.Tracer("github.com/shopdev/shop/internal/telemetry/pgx")}
}

type pgxTracer struct{ tracer trace.Tracer }

var _ pgx.BatchTracer = pgxTracer{}

func (t pgxTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx
	}
	op := operation(data.SQL)
	ctx, span := t.tracer.Start(ctx, op, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		semconv.DBSystemNamePostgreSQL, semconv.DBOperationName(op), semconv.DBQueryText(data.SQL)))
	return context.WithValue(ctx, pgxSpan{}, span)
}

// pgxSpan marks the context of a statement or batch this tracer started a
// span for: its end ends that span, never the caller's.
type pgxSpan struct{}

func (t pgxTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	endDB(ctx, data.Err)
}

func (t pgxTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx
	}
	ops := make([]string, len(data.Batch.QueuedQueries))
	for i, q := range data.Batch.QueuedQueries {
		ops[i] = operation(q.SQL)
	}
	summary := strings.Join(ops, " ")
	ctx, span := t.tracer.Start(ctx, summary, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		semconv.DBSystemNamePostgreSQL, semconv.DBOperationName("BATCH"), semconv.DBOperationBatchSize(len(ops)),
		attribute.String("db.query.summary", summary)))
	return context.WithValue(ctx, pgxSpan{}, span)
}

func (t pgxTracer) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	if span, ok := ctx.Value(pgxSpan{}).(trace.Span); ok && data.Err != nil {
		span.RecordError(data.Err, trace.WithAttributes(semconv.DBQueryText(data.SQL)))
	}
}

func (t pgxTracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	endDB(ctx, data.Err)
}

// endDB ends the span the tracer started for ctx's statement or batch, if
// it started one.
func endDB(ctx context.Context, err error) {
	span, ok := ctx.Value(pgxSpan{}).(trace.Span)
	if !ok {
		return
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// operation is a statement's first word, upper-cased: its operation.
func operation(sql string) string {
	sql = strings.TrimSpace(sql)
	if i := strings.IndexAny(sql, " \t\n("); i > 0 {
		sql = sql[:i]
	}
	return strings.ToUpper(sql)
}
