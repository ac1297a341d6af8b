package testenv_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/shopdev/shop/internal/testenv"
)

// TestOTLPReceivesSDKExports exports a parent and a child span with the
// real OTel SDK exporters, over each transport, and checks what the
// receiver decoded.
func TestOTLPReceivesSDKExports(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		name     string
		exporter func(r *testenv.Receiver) (sdktrace.SpanExporter, error)
	}{
		{"http", func(r *testenv.Receiver) (sdktrace.SpanExporter, error) {
			return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(r.HTTPEndpoint()+"/v1/traces"), otlptracehttp.WithInsecure())
		}},
		{"http gzip", func(r *testenv.Receiver) (sdktrace.SpanExporter, error) {
			return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(r.HTTPEndpoint()+"/v1/traces"), otlptracehttp.WithInsecure(),
				otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
		}},
		{"grpc", func(r *testenv.Receiver) (sdktrace.SpanExporter, error) {
			return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(r.GRPCEndpoint()), otlptracegrpc.WithInsecure())
		}},
		{"grpc gzip", func(r *testenv.Receiver) (sdktrace.SpanExporter, error) {
			return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(r.GRPCEndpoint()), otlptracegrpc.WithInsecure(),
				otlptracegrpc.WithCompressor("gzip"))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := testenv.OTLP(t)
			exp, err := tc.exporter(r)
			testenv.Must(t, err, "create exporter")
			service := "otlp-test-" + strings.ReplaceAll(tc.name, " ", "-")
			tp := sdktrace.NewTracerProvider(
				sdktrace.WithBatcher(exp),
				sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", service))),
			)
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

			linked := trace.NewSpanContext(trace.SpanContextConfig{
				TraceID:    trace.TraceID{0xaa, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
				SpanID:     trace.SpanID{0xbb, 1, 2, 3, 4, 5, 6, 7},
				TraceFlags: trace.FlagsSampled,
			})
			tracer := tp.Tracer("otlp-test")
			pctx, parent := tracer.Start(ctx, "GET /orders", trace.WithSpanKind(trace.SpanKindServer))
			_, child := tracer.Start(pctx, "publish order.created",
				trace.WithSpanKind(trace.SpanKindProducer),
				trace.WithLinks(trace.Link{SpanContext: linked}),
				trace.WithAttributes(
					attribute.String("messaging.system", "rabbitmq"),
					attribute.Int("retry", 3),
					attribute.Bool("redelivered", false),
					attribute.Float64("ratio", 0.5),
					attribute.StringSlice("tags", []string{"a", "b"}),
					attribute.Int64Slice("sizes", []int64{1, 22}),
				))
			child.SetStatus(codes.Error, "broker down")
			child.End()
			parent.End()
			flushCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			testenv.Must(t, tp.ForceFlush(flushCtx), "force flush")

			spans := r.WaitFor(t, 10*time.Second, func(s []testenv.Span) bool { return len(s) >= 2 })
			if len(spans) != 2 {
				t.Fatalf("got %d spans, want 2: %+v", len(spans), spans)
			}
			if r.Requests() < 1 {
				t.Errorf("Requests() = %d, want at least 1", r.Requests())
			}
			p, c := findSpan(t, spans, "GET /orders"), findSpan(t, spans, "publish order.created")

			wantTrace := parent.SpanContext().TraceID().String()
			for _, s := range []testenv.Span{p, c} {
				if s.Service != service {
					t.Errorf("%s: Service = %q, want %q", s.Name, s.Service, service)
				}
				if s.Scope != "otlp-test" {
					t.Errorf("%s: Scope = %q, want otlp-test", s.Name, s.Scope)
				}
				if s.TraceID != wantTrace {
					t.Errorf("%s: TraceID = %q, want %q", s.Name, s.TraceID, wantTrace)
				}
				if s.Start.IsZero() || s.End.Before(s.Start) {
					t.Errorf("%s: Start %v, End %v", s.Name, s.Start, s.End)
				}
			}
			if p.SpanID != parent.SpanContext().SpanID().String() || p.ParentSpanID != "" {
				t.Errorf("parent: SpanID %q ParentSpanID %q, want %s and none", p.SpanID, p.ParentSpanID, parent.SpanContext().SpanID())
			}
			if c.SpanID != child.SpanContext().SpanID().String() || c.ParentSpanID != p.SpanID {
				t.Errorf("child: SpanID %q ParentSpanID %q, want %s and %s", c.SpanID, c.ParentSpanID, child.SpanContext().SpanID(), p.SpanID)
			}
			if p.Kind != "server" || c.Kind != "producer" {
				t.Errorf("kinds: parent %q child %q, want server and producer", p.Kind, c.Kind)
			}
			if p.Status != "unset" || c.Status != "error" || c.StatusMessage != "broker down" {
				t.Errorf("status: parent %q, child %q %q; want unset, error \"broker down\"", p.Status, c.Status, c.StatusMessage)
			}
			wantAttrs := map[string]string{
				"messaging.system": "rabbitmq",
				"retry":            "3",
				"redelivered":      "false",
				"ratio":            "0.5",
				"tags":             "a,b",
				"sizes":            "1,22",
			}
			if fmt.Sprint(c.Attrs) != fmt.Sprint(wantAttrs) {
				t.Errorf("child attrs = %v, want %v", c.Attrs, wantAttrs)
			}
			if len(p.Attrs) != 0 {
				t.Errorf("parent attrs = %v, want none", p.Attrs)
			}
			wantLink := testenv.Link{TraceID: linked.TraceID().String(), SpanID: linked.SpanID().String()}
			if len(c.Links) != 1 || c.Links[0] != wantLink {
				t.Errorf("child links = %v, want [%v]", c.Links, wantLink)
			}
			if len(p.Links) != 0 {
				t.Errorf("parent links = %v, want none", p.Links)
			}
		})
	}
}

// TestOTLPHTTPRejects checks the OTLP/HTTP answers to raw requests: only a
// decodable protobuf body is accepted (and counted); nothing else adds a
// request or a span.
func TestOTLPHTTPRejects(t *testing.T) {
	t.Parallel()
	empty, err := proto.Marshal(&collectortrace.ExportTraceServiceRequest{})
	testenv.Must(t, err, "marshal empty request")
	cases := []struct {
		name        string
		method      string
		contentType string
		gzipped     bool
		body        []byte
		want        int
	}{
		{"garbage", http.MethodPost, "application/x-protobuf", false, []byte{0xff, 0xff, 0xff, 0xff}, http.StatusBadRequest},
		{"garbage text", http.MethodPost, "application/x-protobuf", false, []byte("this is not a protobuf"), http.StatusBadRequest},
		{"garbage gzipped", http.MethodPost, "application/x-protobuf", true, []byte{0xff, 0xff, 0xff, 0xff}, http.StatusBadRequest},
		{"json", http.MethodPost, "application/json", false, []byte(`{"resourceSpans":[]}`), http.StatusUnsupportedMediaType},
		{"get", http.MethodGet, "", false, nil, http.StatusMethodNotAllowed},
		{"empty request", http.MethodPost, "application/x-protobuf", false, empty, http.StatusOK},
		{"empty request gzipped", http.MethodPost, "application/x-protobuf", true, empty, http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := testenv.OTLP(t)
			resp := post(t, r.HTTPEndpoint()+"/v1/traces", tc.method, tc.contentType, tc.gzipped, tc.body)
			if resp.status != tc.want {
				t.Fatalf("status %d (%s), want %d", resp.status, resp.body, tc.want)
			}
			wantRequests := 0
			if tc.want == http.StatusOK {
				wantRequests = 1
				if resp.contentType != "application/x-protobuf" {
					t.Errorf("Content-Type %q, want application/x-protobuf", resp.contentType)
				}
				var out collectortrace.ExportTraceServiceResponse
				if err := proto.Unmarshal(resp.body, &out); err != nil {
					t.Errorf("decode response: %v", err)
				}
			}
			if n := r.Requests(); n != wantRequests {
				t.Errorf("Requests() = %d, want %d", n, wantRequests)
			}
			if s := r.Spans(); len(s) != 0 {
				t.Errorf("Spans() = %v, want none", s)
			}
		})
	}
}

// TestOTLPWaitForTimeout checks WaitFor fails the test, listing the spans
// it has.
func TestOTLPWaitForTimeout(t *testing.T) {
	t.Parallel()
	r := testenv.OTLP(t)
	ctx := context.Background()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(r.HTTPEndpoint()+"/v1/traces"), otlptracehttp.WithInsecure())
	testenv.Must(t, err, "create exporter")
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "waiter"))))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	_, span := tp.Tracer("otlp-test").Start(ctx, "lonely")
	span.End()

	ft := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.WaitFor(ft, 100*time.Millisecond, func(s []testenv.Span) bool { return len(s) >= 2 })
	}()
	<-done
	if !ft.failed {
		t.Fatal("WaitFor returned without failing")
	}
	for _, want := range []string{"waiter", `"lonely"`, span.SpanContext().TraceID().String()} {
		if !strings.Contains(ft.msg, want) {
			t.Errorf("failure message lacks %q:\n%s", want, ft.msg)
		}
	}
}

// fatalTB records a Fatalf and ends the goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

type response struct {
	status      int
	contentType string
	body        []byte
}

func post(t *testing.T, url, method, contentType string, gzipped bool, body []byte) response {
	t.Helper()
	if gzipped {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, err := zw.Write(body)
		testenv.Must(t, err, "gzip body")
		testenv.Must(t, zw.Close(), "gzip body")
		body = buf.Bytes()
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	testenv.Must(t, err, "new request")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if gzipped {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := http.DefaultClient.Do(req)
	testenv.Must(t, err, "send request")
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	testenv.Must(t, err, "read response")
	return response{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: got}
}

func findSpan(t *testing.T, spans []testenv.Span, name string) testenv.Span {
	t.Helper()
	for _, s := range spans {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no span %q among %+v", name, spans)
	return testenv.Span{}
}
