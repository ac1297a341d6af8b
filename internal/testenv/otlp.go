package testenv

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // accept exports compressed with OTEL_EXPORTER_OTLP_COMPRESSION=gzip
	"google.golang.org/protobuf/proto"
)

// Span is a span as an OTLP receiver got it, flattened: ids are lowercase
// hex, every attribute value is rendered as a string (ints in decimal,
// bools as true/false, doubles in the shortest form, bytes in hex, arrays
// joined by ",", maps as k=v joined by ",").
type Span struct {
	Service       string // resource attribute service.name
	Scope         string // instrumentation scope name
	TraceID       string
	SpanID        string
	ParentSpanID  string // "" for a root span
	Name          string
	Kind          string // server, client, producer, consumer, internal or unspecified
	Attrs         map[string]string
	Links         []Link
	Status        string // ok, error or unset
	StatusMessage string
	Start, End    time.Time
}

// Link is a span's link to another span.
type Link struct {
	TraceID, SpanID string
}

// Receiver is an OTLP trace receiver on loopback ports, over OTLP/HTTP
// (protobuf) and OTLP/gRPC, that keeps the spans it receives.
type Receiver struct {
	httpEndpoint string
	grpcEndpoint string

	mu       sync.Mutex
	spans    []Span
	requests int
}

// maxOTLPBody bounds an OTLP/HTTP request body, after decompression.
const maxOTLPBody = 64 << 20

// OTLP starts an OTLP trace receiver for t: an HTTP server taking POST
// /v1/traces and a gRPC server with the TraceService. Both stop when t ends.
func OTLP(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{}

	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	Must(t, err, "listen for otlp/http")
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/traces", r.serveHTTP)
	httpSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = httpSrv.Serve(httpLn) }()
	t.Cleanup(func() { _ = httpSrv.Close() })
	r.httpEndpoint = "http://" + httpLn.Addr().String()

	grpcLn, err := net.Listen("tcp", "127.0.0.1:0")
	Must(t, err, "listen for otlp/grpc")
	grpcSrv := grpc.NewServer(grpc.MaxRecvMsgSize(maxOTLPBody))
	collectortrace.RegisterTraceServiceServer(grpcSrv, traceService{r: r})
	go func() { _ = grpcSrv.Serve(grpcLn) }()
	t.Cleanup(grpcSrv.Stop)
	r.grpcEndpoint = "http://" + grpcLn.Addr().String()

	return r
}

// HTTPEndpoint is the OTLP/HTTP base URL, "http://127.0.0.1:PORT", for
// OTEL_EXPORTER_OTLP_ENDPOINT with OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
// (the exporter appends /v1/traces).
func (r *Receiver) HTTPEndpoint() string { return r.httpEndpoint }

// GRPCEndpoint is the OTLP/gRPC URL, "http://127.0.0.1:PORT", for
// OTEL_EXPORTER_OTLP_ENDPOINT with OTEL_EXPORTER_OTLP_PROTOCOL=grpc.
func (r *Receiver) GRPCEndpoint() string { return r.grpcEndpoint }

// Spans returns the spans received so far, in arrival order.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Requests returns how many export requests were accepted so far, over
// both transports; rejected (undecodable) requests do not count.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// WaitFor polls the received spans until done holds for them, and returns
// them; after timeout it fails t, listing the spans it has.
func (r *Receiver) WaitFor(t testing.TB, timeout time.Duration, done func([]Span) bool) []Span {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		spans := r.Spans()
		if done(spans) {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("spans not as expected within %s; %d export requests, %d spans:\n%s",
				timeout, r.Requests(), len(spans), listSpans(spans, 200))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listSpans renders spans one a line, at most limit lines.
func listSpans(spans []Span, limit int) string {
	var b strings.Builder
	for i, s := range spans {
		if i == limit {
			fmt.Fprintf(&b, "  ... and %d more\n", len(spans)-limit)
			break
		}
		fmt.Fprintf(&b, "  %s %q trace=%s span=%s parent=%s kind=%s status=%s\n",
			s.Service, s.Name, s.TraceID, s.SpanID, s.ParentSpanID, s.Kind, s.Status)
	}
	return b.String()
}

func (r *Receiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); ct != "application/x-protobuf" {
		http.Error(w, "only application/x-protobuf is supported", http.StatusUnsupportedMediaType)
		return
	}
	var body io.Reader = req.Body
	switch enc := strings.ToLower(strings.TrimSpace(req.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, "bad gzip body: "+err.Error(), http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = zr
	default:
		http.Error(w, "unsupported Content-Encoding "+enc, http.StatusUnsupportedMediaType)
		return
	}
	raw, err := io.ReadAll(io.LimitReader(body, maxOTLPBody+1))
	if err == nil && len(raw) > maxOTLPBody {
		err = errors.New("body too large")
	}
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	var export collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &export); err != nil {
		http.Error(w, "decode ExportTraceServiceRequest: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.record(&export)
	resp, err := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(resp)
}

type traceService struct {
	collectortrace.UnimplementedTraceServiceServer
	r *Receiver
}

func (s traceService) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	s.r.record(req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// record keeps the spans of one export request.
func (r *Receiver) record(req *collectortrace.ExportTraceServiceRequest) {
	var spans []Span
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = renderValue(kv.GetValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				spans = append(spans, flattenSpan(service, ss.GetScope().GetName(), sp))
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	r.spans = append(r.spans, spans...)
}

func flattenSpan(service, scope string, sp *tracepb.Span) Span {
	s := Span{
		Service:       service,
		Scope:         scope,
		TraceID:       hex.EncodeToString(sp.GetTraceId()),
		SpanID:        hex.EncodeToString(sp.GetSpanId()),
		ParentSpanID:  hex.EncodeToString(sp.GetParentSpanId()),
		Name:          sp.GetName(),
		Kind:          spanKind(sp.GetKind()),
		Attrs:         make(map[string]string, len(sp.GetAttributes())),
		Status:        statusCode(sp.GetStatus().GetCode()),
		StatusMessage: sp.GetStatus().GetMessage(),
		Start:         time.Unix(0, int64(sp.GetStartTimeUnixNano())),
		End:           time.Unix(0, int64(sp.GetEndTimeUnixNano())),
	}
	for _, kv := range sp.GetAttributes() {
		s.Attrs[kv.GetKey()] = renderValue(kv.GetValue())
	}
	for _, l := range sp.GetLinks() {
		s.Links = append(s.Links, Link{TraceID: hex.EncodeToString(l.GetTraceId()), SpanID: hex.EncodeToString(l.GetSpanId())})
	}
	return s
}

func spanKind(k tracepb.Span_SpanKind) string {
	switch k {
	case tracepb.Span_SPAN_KIND_SERVER:
		return "server"
	case tracepb.Span_SPAN_KIND_CLIENT:
		return "client"
	case tracepb.Span_SPAN_KIND_PRODUCER:
		return "producer"
	case tracepb.Span_SPAN_KIND_CONSUMER:
		return "consumer"
	case tracepb.Span_SPAN_KIND_INTERNAL:
		return "internal"
	default:
		return "unspecified"
	}
}

func statusCode(c tracepb.Status_StatusCode) string {
	switch c {
	case tracepb.Status_STATUS_CODE_OK:
		return "ok"
	case tracepb.Status_STATUS_CODE_ERROR:
		return "error"
	default:
		return "unset"
	}
}

// renderValue renders an attribute value as a string.
func renderValue(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BytesValue:
		return hex.EncodeToString(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		parts := make([]string, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			parts = append(parts, renderValue(e))
		}
		return strings.Join(parts, ",")
	case *commonpb.AnyValue_KvlistValue:
		parts := make([]string, 0, len(x.KvlistValue.GetValues()))
		for _, kv := range x.KvlistValue.GetValues() {
			parts = append(parts, kv.GetKey()+"="+renderValue(kv.GetValue()))
		}
		return strings.Join(parts, ",")
	default:
		return ""
	}
}

// Recorder returns a tracer provider whose ended spans the returned
// recorder keeps, in-process, for tests of one package's spans (the
// processes' own go through OTLP to a Receiver); it shuts down when t ends.
func Recorder(t testing.TB) (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, rec
}
