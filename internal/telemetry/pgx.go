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

// Postgres traces the Postgres work done inside a recording span: a
// transaction of a unit of work (StartTx, which store.UnitOfWork calls) is
// ONE client span, "transaction", whose db.query.summary names its
// statements in order, round trip by round trip ("BEGIN SELECT | INSERT
// INSERT COMMIT"); a statement or batch sent outside one is a span of its
// own, named after its operations ("SELECT", "BEGIN INSERT COMMIT"), with a
// statement's text (placeholders, never the values). Outside a recording
// span it does nothing. It is ours rather than otelpgx's, which records a
// span per statement of a batch as well as the batch's: the spans of a
// transaction's round trips cost more than they tell (BENCHMARKS.md).
type Postgres struct{ tracer trace.Tracer }

// NewPostgres returns the Postgres tracer of provider: the pool's
// QueryTracer and the unit of work's TxTracer.
func NewPostgres(provider trace.TracerProvider) *Postgres {
	return &Postgres{tracer: provider.Tracer("github.com/shopdev/shop/internal/telemetry/pgx")}
}

var _ pgx.BatchTracer = (*Postgres)(nil)

// txSpan is a transaction's span and the operations of its round trips so
// far; a transaction runs on one goroutine.
type txSpan struct {
	span  trace.Span
	trips []string
}

type txKey struct{}

// StartTx starts the span of a transaction inside ctx's recording span,
// if any; the statements sent with the returned context are its.
func (t *Postgres) StartTx(ctx context.Context) (context.Context, func(error)) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, func(error) {}
	}
	ctx, span := t.tracer.Start(ctx, "transaction", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(semconv.DBSystemNamePostgreSQL, semconv.DBOperationName("TRANSACTION")))
	tx := &txSpan{span: span}
	return context.WithValue(ctx, txKey{}, tx), func(err error) {
		span.SetAttributes(attribute.String("db.query.summary", strings.Join(tx.trips, " | ")), attribute.Int("db.round_trips", len(tx.trips)))
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

func (t *Postgres) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if tx, ok := ctx.Value(txKey{}).(*txSpan); ok {
		tx.trips = append(tx.trips, operation(data.SQL))
		return ctx
	}
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

func (t *Postgres) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	endDB(ctx, data.Err)
}

func (t *Postgres) TraceBatchStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	tx, inTx := ctx.Value(txKey{}).(*txSpan)
	if !inTx && !trace.SpanFromContext(ctx).IsRecording() {
		return ctx
	}
	ops := make([]string, len(data.Batch.QueuedQueries))
	for i, q := range data.Batch.QueuedQueries {
		ops[i] = operation(q.SQL)
	}
	summary := strings.Join(ops, " ")
	if inTx {
		tx.trips = append(tx.trips, summary)
		return ctx
	}
	ctx, span := t.tracer.Start(ctx, summary, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		semconv.DBSystemNamePostgreSQL, semconv.DBOperationName("BATCH"), semconv.DBOperationBatchSize(len(ops)),
		attribute.String("db.query.summary", summary)))
	return context.WithValue(ctx, pgxSpan{}, span)
}

func (t *Postgres) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	if data.Err == nil {
		return
	}
	if span, ok := ctx.Value(pgxSpan{}).(trace.Span); ok {
		span.RecordError(data.Err, trace.WithAttributes(semconv.DBQueryText(data.SQL)))
	} else if tx, ok := ctx.Value(txKey{}).(*txSpan); ok {
		tx.span.RecordError(data.Err, trace.WithAttributes(semconv.DBQueryText(data.SQL)))
	}
}

func (t *Postgres) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	endDB(ctx, data.Err)
}

// endDB ends the span the tracer started for ctx's statement or batch, if
// it started one (none inside a transaction: the transaction's span ends
// with it).
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
