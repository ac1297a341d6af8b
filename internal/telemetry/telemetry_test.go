package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopdev/shop/internal/telemetry"
	"github.com/shopdev/shop/internal/testenv"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     telemetry.Config
		wantErr string // "" : valid
	}{
		{"nothing set", telemetry.Config{}, ""},
		{"http endpoint", telemetry.Config{Endpoint: "http://collector:4318"}, ""},
		{"grpc", telemetry.Config{Endpoint: "http://collector:4317", Protocol: "grpc"}, ""},
		{"every sampler", telemetry.Config{Sampler: "parentbased_traceidratio", SamplerArg: "0.25"}, ""},
		{"attributes", telemetry.Config{ResourceAttributes: "deployment.environment=prod,team=shop%20core", Headers: "api-key=s3cr3t"}, ""},
		{"unknown protocol", telemetry.Config{Protocol: "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{"endpoint without scheme", telemetry.Config{Endpoint: "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{"traces endpoint not a URL", telemetry.Config{TracesEndpoint: "::"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
		{"unknown sampler", telemetry.Config{Sampler: "sometimes"}, "OTEL_TRACES_SAMPLER"},
		{"ratio above 1", telemetry.Config{Sampler: "traceidratio", SamplerArg: "2"}, "OTEL_TRACES_SAMPLER_ARG"},
		{"ratio not a number", telemetry.Config{SamplerArg: "half"}, "OTEL_TRACES_SAMPLER_ARG"},
		{"attribute without value", telemetry.Config{ResourceAttributes: "team"}, "OTEL_RESOURCE_ATTRIBUTES"},
		{"header not encoded", telemetry.Config{Headers: "key=%zz"}, "OTEL_EXPORTER_OTLP_HEADERS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.wantErr)
			case tc.wantErr != "" && strings.Contains(err.Error(), "s3cr3t"):
				t.Fatalf("the error shows a header's value: %v", err)
			}
		})
	}
}

func TestEnabledAndServiceName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		cfg         telemetry.Config
		enabled     bool
		wantService string
	}{
		{"no endpoint", telemetry.Config{DefaultService: "shop-api"}, false, "shop-api"},
		{"endpoint", telemetry.Config{Endpoint: "http://c:4318", DefaultService: "shop-relay"}, true, "shop-relay"},
		{"traces endpoint", telemetry.Config{TracesEndpoint: "http://c:4318/v1/traces"}, true, ""},
		{"disabled", telemetry.Config{Endpoint: "http://c:4318", Disabled: true}, false, ""},
		{"service from attributes", telemetry.Config{ResourceAttributes: "service.name=edge", DefaultService: "shop-api"}, false, "edge"},
		{"OTEL_SERVICE_NAME wins", telemetry.Config{ServiceName: "mine", ResourceAttributes: "service.name=edge", DefaultService: "shop-api"}, false, "mine"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cfg.Enabled(); got != tc.enabled {
				t.Errorf("Enabled() = %v, want %v", got, tc.enabled)
			}
			if got := tc.cfg.Service(); got != tc.wantService {
				t.Errorf("Service() = %q, want %q", got, tc.wantService)
			}
		})
	}
}

func TestStartWithoutEndpointIsOff(t *testing.T) {
	t.Parallel()
	tel, err := telemetry.Start(context.Background(), telemetry.Config{Sampler: "always_on"}, slog.New(slog.DiscardHandler))
	testenv.Must(t, err, "start")
	if tel.Enabled() {
		t.Fatal("tracing is on without an endpoint")
	}
	_, span := tel.Provider().Tracer("test").Start(context.Background(), "work")
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Errorf("a span of tracing off records (%v) or has an id (%v)", span.IsRecording(), span.SpanContext().IsValid())
	}
	testenv.Must(t, tel.Shutdown(context.Background()), "shutdown")
}

func TestStartRefusesBadConfig(t *testing.T) {
	t.Parallel()
	if _, err := telemetry.Start(context.Background(), telemetry.Config{Endpoint: "http://c:4318", Sampler: "sometimes"}, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("Start took an unknown sampler")
	}
}

func TestCarrierAndExtractRoundTrip(t *testing.T) {
	t.Parallel()
	if c := telemetry.Carrier(context.Background()); c != nil {
		t.Errorf("Carrier of a context without a span = %v, want nil", c)
	}
	tp, _ := testenv.Recorder(t)
	ctx, span := tp.Tracer("test").Start(context.Background(), "work")
	defer span.End()
	carrier := telemetry.Carrier(ctx)
	if !strings.Contains(carrier["traceparent"], span.SpanContext().TraceID().String()) {
		t.Fatalf("Carrier = %v, want the span's traceparent", carrier)
	}
	got := trace.SpanContextFromContext(telemetry.Extract(context.Background(), carrier))
	if got.TraceID() != span.SpanContext().TraceID() || got.SpanID() != span.SpanContext().SpanID() || !got.IsRemote() {
		t.Errorf("Extract(Carrier) = %v, want the span's context, remote", got)
	}
	if got := telemetry.Extract(context.Background(), map[string]string{"traceparent": "00-garbage"}); trace.SpanContextFromContext(got).IsValid() {
		t.Errorf("Extract took an invalid traceparent")
	}
}

func TestLogLinesInsideASpanCarryItsIDs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(&buf, nil))).With("part", "test")
	tp, _ := testenv.Recorder(t)
	ctx, span := tp.Tracer("test").Start(context.Background(), "work")
	log.InfoContext(ctx, "inside")
	span.End()
	log.InfoContext(context.Background(), "outside")
	log.WithGroup("g").InfoContext(ctx, "grouped")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("logged %q", buf.String())
	}
	var inside, outside, grouped map[string]any
	testenv.Must(t, json.Unmarshal([]byte(lines[0]), &inside), "decode")
	testenv.Must(t, json.Unmarshal([]byte(lines[1]), &outside), "decode")
	testenv.Must(t, json.Unmarshal([]byte(lines[2]), &grouped), "decode")
	sc := span.SpanContext()
	if inside["trace_id"] != sc.TraceID().String() || inside["span_id"] != sc.SpanID().String() || inside["part"] != "test" {
		t.Errorf("line inside the span = %v, want its trace_id %s and span_id %s", inside, sc.TraceID(), sc.SpanID())
	}
	if _, ok := outside["trace_id"]; ok {
		t.Errorf("line outside any span has a trace_id: %v", outside)
	}
	if g, _ := grouped["g"].(map[string]any); g["trace_id"] != sc.TraceID().String() {
		t.Errorf("line of a grouped logger = %v, want the trace_id", grouped)
	}
	attrs := telemetry.LogAttrs(ctx)
	if len(attrs) != 4 || attrs[1] != sc.TraceID().String() || attrs[3] != sc.SpanID().String() {
		t.Errorf("LogAttrs = %v", attrs)
	}
	if attrs := telemetry.LogAttrs(context.Background()); attrs != nil {
		t.Errorf("LogAttrs without a span = %v, want none", attrs)
	}
}

// TestRedisHookTracesOnlyInsideASpan runs commands against the real Redis:
// inside a recording span each command and pipeline is a client span,
// named after the command, without its arguments; outside, none.
func TestRedisHookTracesOnlyInsideASpan(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.Redis(t)
	tp, rec := testenv.Recorder(t)
	rdb.AddHook(telemetry.RedisHook(tp))
	key := prefix + "traced"

	testenv.Must(t, rdb.Set(context.Background(), key, "outside", 0).Err(), "SET outside a span")
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("%d spans for a command outside any span", n)
	}
	ctx, parent := tp.Tracer("test").Start(context.Background(), "delivery")
	testenv.Must(t, rdb.Set(ctx, key, "secret value", 0).Err(), "SET")
	if err := rdb.Get(ctx, prefix+"missing").Err(); err != redis.Nil {
		t.Fatalf("GET of a missing key = %v, want redis.Nil", err)
	}
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Get(ctx, key)
		p.Del(ctx, key)
		return nil
	})
	testenv.Must(t, err, "pipeline")
	parent.End()

	spans := rec.Ended()
	var names []string
	inside := map[trace.SpanID]bool{parent.SpanContext().SpanID(): true}
	for _, sp := range spans[:len(spans)-1] { // the last is the parent
		inside[sp.SpanContext().SpanID()] = true
	}
	for _, sp := range spans[:len(spans)-1] {
		if sp.Parent().SpanID() == parent.SpanContext().SpanID() {
			names = append(names, sp.Name())
		}
		if !inside[sp.Parent().SpanID()] || sp.SpanKind() != trace.SpanKindClient {
			// A command that dials a connection does its handshake (HELLO) inside its own span.
			t.Errorf("span %s: parent %s kind %s, want inside the delivery's, client", sp.Name(), sp.Parent().SpanID(), sp.SpanKind())
		}
		for _, a := range sp.Attributes() {
			if strings.Contains(a.Value.String(), "secret value") || strings.Contains(a.Value.String(), prefix) {
				t.Errorf("span %s shows a key or value: %s=%s", sp.Name(), a.Key, a.Value.String())
			}
		}
		if sp.Name() == "get" && sp.Status().Code != codes.Unset {
			t.Errorf("a missing key marked the span %v", sp.Status())
		}
	}
	if want := []string{"set", "get", "pipeline"}; strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("spans %v, want %v", names, want)
	}
}

// TestPgxTracerTracesStatementsAndBatchesInsideASpan runs statements
// against the real Postgres: inside a recording span each statement is a
// client span named after its operation, with its text and no values, a
// batch is one span named after its statements, and a transaction (StartTx)
// is one span naming its round trips' statements; outside, none.
func TestPgxTracerTracesStatementsAndBatchesInsideASpan(t *testing.T) {
	t.Parallel()
	tp, rec := testenv.Recorder(t)
	cfg, err := pgxpool.ParseConfig(testenv.DatabaseURL(t))
	testenv.Must(t, err, "parse database url")
	pg := telemetry.NewPostgres(tp)
	cfg.ConnConfig.Tracer = pg
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	testenv.Must(t, err, "pool")
	t.Cleanup(pool.Close)

	var n int
	testenv.Must(t, pool.QueryRow(context.Background(), "SELECT $1::int", 41).Scan(&n), "query outside a span")
	if got := len(rec.Ended()); got != 0 {
		t.Fatalf("%d spans for a statement outside any span", got)
	}
	ctx, parent := tp.Tracer("test").Start(context.Background(), "command")
	testenv.Must(t, pool.QueryRow(ctx, "select $1::int + 1", 41).Scan(&n), "query")
	batch := &pgx.Batch{}
	batch.Queue("BEGIN")
	batch.Queue("SELECT $1::text", "secret value")
	batch.Queue("COMMIT")
	testenv.Must(t, pool.SendBatch(ctx, batch).Close(), "batch")
	if _, err := pool.Exec(ctx, "SELECT * FROM no_such_table"); err == nil {
		t.Fatal("a query of a missing table worked")
	}
	// A unit of work's transaction: one span for its round trips.
	conn, err := pool.Acquire(ctx)
	testenv.Must(t, err, "acquire")
	txCtx, end := pg.StartTx(ctx)
	begin := &pgx.Batch{}
	begin.Queue("BEGIN")
	begin.Queue("SELECT $1::text", "secret value")
	testenv.Must(t, conn.SendBatch(txCtx, begin).Close(), "first round trip")
	_, err = conn.Exec(txCtx, "insert into no_such_table values ($1)", 41)
	if err == nil {
		t.Fatal("an insert into a missing table worked")
	}
	_, _ = conn.Exec(txCtx, "ROLLBACK")
	end(err)
	conn.Release()
	parent.End()

	type want struct {
		name, text, summary string
		failed              bool
	}
	var got []want
	for _, sp := range rec.Ended() {
		if sp.Name() == "command" {
			continue
		}
		if sp.Parent().SpanID() != parent.SpanContext().SpanID() || sp.SpanKind() != trace.SpanKindClient {
			t.Errorf("span %s: parent %s, kind %s; want the command's, client", sp.Name(), sp.Parent().SpanID(), sp.SpanKind())
		}
		w := want{name: sp.Name(), failed: sp.Status().Code == codes.Error}
		for _, a := range sp.Attributes() {
			if strings.Contains(a.Value.String(), "secret value") || strings.Contains(a.Value.String(), "41") {
				t.Errorf("span %s shows a value: %s=%s", sp.Name(), a.Key, a.Value.String())
			}
			switch a.Key {
			case "db.query.text":
				w.text = a.Value.AsString()
			case "db.query.summary":
				w.summary = a.Value.AsString()
			}
		}
		got = append(got, w)
	}
	wantSpans := []want{
		{name: "SELECT", text: "select $1::int + 1"},
		{name: "BEGIN SELECT COMMIT", summary: "BEGIN SELECT COMMIT"},
		{name: "SELECT", text: "SELECT * FROM no_such_table", failed: true},
		{name: "transaction", summary: "BEGIN SELECT | INSERT | ROLLBACK", failed: true},
	}
	if len(got) != len(wantSpans) {
		t.Fatalf("spans %+v, want %+v", got, wantSpans)
	}
	for i := range wantSpans {
		if got[i] != wantSpans[i] {
			t.Errorf("span %d = %+v, want %+v", i, got[i], wantSpans[i])
		}
	}
}
