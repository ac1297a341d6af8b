// Package telemetry owns the tracing of a shop process: the OpenTelemetry
// SDK set up from the standard OTEL_* variables (off, and free, when no
// endpoint is set), the W3C Trace Context that carries a trace across HTTP,
// the outbox and RabbitMQ, the spans of Redis commands, and the log
// handler that stamps trace_id and span_id on every line logged inside a
// span.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Config is what the OTEL_* variables say; the zero Config is tracing off.
type Config struct {
	// Endpoint is OTEL_EXPORTER_OTLP_ENDPOINT: the collector's base URL
	// (http://host:4318 for OTLP/HTTP, whose traces go to /v1/traces;
	// http://host:4317 for gRPC). Empty, with TracesEndpoint empty too:
	// tracing is off, nothing is exported and nothing dials.
	Endpoint string
	// TracesEndpoint is OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: the full URL
	// traces go to, which wins over Endpoint.
	TracesEndpoint string
	// Protocol is OTEL_EXPORTER_OTLP_PROTOCOL: http/protobuf (default) or
	// grpc.
	Protocol string
	// Headers is OTEL_EXPORTER_OTLP_HEADERS: key=value pairs, comma
	// separated, URL-encoded, sent with every export (a collector's API
	// key, say). Never logged.
	Headers string
	// ServiceName is OTEL_SERVICE_NAME; default DefaultService.
	ServiceName string
	// DefaultService names the process when neither OTEL_SERVICE_NAME nor
	// service.name in ResourceAttributes does: shop-api, shop-relay,
	// shop-consume-<groups>, shop-run.
	DefaultService string
	// ResourceAttributes is OTEL_RESOURCE_ATTRIBUTES: key=value pairs,
	// comma separated, URL-encoded (deployment.environment=prod, say).
	ResourceAttributes string
	// Sampler is OTEL_TRACES_SAMPLER: always_on, always_off, traceidratio,
	// parentbased_always_on (default), parentbased_always_off or
	// parentbased_traceidratio.
	Sampler string
	// SamplerArg is OTEL_TRACES_SAMPLER_ARG: the ratio of a traceidratio
	// sampler, from 0 to 1 (default 1).
	SamplerArg string
	// Disabled is OTEL_SDK_DISABLED=true: tracing off whatever the rest
	// says.
	Disabled bool
}

// Enabled reports whether c turns tracing on.
func (c Config) Enabled() bool {
	return !c.Disabled && (c.Endpoint != "" || c.TracesEndpoint != "")
}

// Validate checks c without connecting anywhere.
func (c Config) Validate() error {
	var errs []error
	if c.Protocol != "" && c.Protocol != "http/protobuf" && c.Protocol != "grpc" {
		errs = append(errs, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf or grpc, not %q", c.Protocol))
	}
	for name, raw := range map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": c.Endpoint, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": c.TracesEndpoint} {
		if raw == "" {
			continue
		}
		if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s must be a URL like http://collector:4318, not %q", name, raw))
		}
	}
	if _, err := c.sampler(); err != nil {
		errs = append(errs, err)
	}
	if _, err := pairs("OTEL_RESOURCE_ATTRIBUTES", c.ResourceAttributes); err != nil {
		errs = append(errs, err)
	}
	if _, err := pairs("OTEL_EXPORTER_OTLP_HEADERS", c.Headers); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Telemetry is the tracing of one process.
type Telemetry struct {
	provider trace.TracerProvider
	shutdown func(context.Context) error // flushes and stops the exporter; nil when off
}

// Off is tracing off: a tracer provider whose spans record nothing.
func Off() *Telemetry { return &Telemetry{provider: noop.NewTracerProvider()} }

// Start sets up tracing as cfg says. With tracing off it returns Off():
// no exporter, no goroutine, no connection. Export failures are logged to
// log, at most once a minute.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Telemetry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return Off(), nil
	}
	exporter, err := cfg.exporter(ctx)
	if err != nil {
		return nil, err
	}
	res, err := cfg.resource()
	if err != nil {
		return nil, err
	}
	sampler, _ := cfg.sampler() // validated
	provider := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler),
	)
	// The SDK reports export failures to the global error handler only.
	otel.SetErrorHandler(throttled(log, time.Minute))
	return &Telemetry{provider: provider, shutdown: provider.Shutdown}, nil
}

// Enabled reports whether spans are recorded and exported.
func (t *Telemetry) Enabled() bool { return t.shutdown != nil }

// Provider is the tracer provider of the process's instrumentation.
func (t *Telemetry) Provider() trace.TracerProvider { return t.provider }

// Shutdown exports the spans still buffered, within ctx, and stops.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t.shutdown == nil {
		return nil
	}
	if err := t.shutdown(ctx); err != nil {
		return fmt.Errorf("flush traces: %w", err)
	}
	return nil
}

func (c Config) exporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	headers, _ := pairs("", c.Headers) // validated
	endpoint := c.TracesEndpoint
	if c.Protocol == "grpc" {
		if endpoint == "" {
			endpoint = c.Endpoint
		}
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(endpoint), otlptracegrpc.WithHeaders(headers))
		if err != nil {
			return nil, fmt.Errorf("otlp grpc exporter: %w", err)
		}
		return exp, nil
	}
	if endpoint == "" {
		// The base endpoint's signal path, as the specification says.
		endpoint = strings.TrimSuffix(c.Endpoint, "/") + "/v1/traces"
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint), otlptracehttp.WithHeaders(headers))
	if err != nil {
		return nil, fmt.Errorf("otlp http exporter: %w", err)
	}
	return exp, nil
}

// Service is the name the spans give their service: ServiceName, else
// service.name of ResourceAttributes, else DefaultService.
func (c Config) Service() string {
	if c.ServiceName != "" {
		return c.ServiceName
	}
	given, _ := pairs("", c.ResourceAttributes)
	if name := given[string(semconv.ServiceNameKey)]; name != "" {
		return name
	}
	return c.DefaultService
}

func (c Config) resource() (*resource.Resource, error) {
	given, _ := pairs("", c.ResourceAttributes) // validated
	attrs := make([]attribute.KeyValue, 0, len(given)+1)
	for k, v := range given {
		attrs = append(attrs, attribute.String(k, v))
	}
	attrs = append(attrs, semconv.ServiceName(c.Service()))
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attrs...))
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	return res, nil
}

func (c Config) sampler() (sdktrace.Sampler, error) {
	ratio := 1.0
	if c.SamplerArg != "" {
		r, err := strconv.ParseFloat(c.SamplerArg, 64)
		if err != nil || r < 0 || r > 1 {
			return nil, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG must be a ratio from 0 to 1, not %q", c.SamplerArg)
		}
		ratio = r
	}
	switch c.Sampler {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER must be always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio, not %q", c.Sampler)
}

// pairs parses key=value,key=value with URL-encoded values, as the OTEL_*
// variables write them.
func pairs(name, list string) (map[string]string, error) {
	out := map[string]string{}
	for item := range strings.SplitSeq(list, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%s must be comma-separated key=value pairs", name)
		}
		value, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("%s: the value of %q is not URL-encoded", name, k)
		}
		out[k] = value
	}
	return out, nil
}

// throttled logs the SDK's errors (an export the collector refused, or
// could not reach) at most once per every, with how many it left out.
func throttled(log *slog.Logger, every time.Duration) otel.ErrorHandlerFunc {
	var mu sync.Mutex
	var last time.Time
	var skipped int
	return func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(last) < every {
			skipped++
			return
		}
		log.Warn("traces not exported", "error", err.Error(), "errors_not_logged", skipped)
		last, skipped = time.Now(), 0
	}
}

// The W3C Trace Context (traceparent, tracestate): what every hop writes
// and reads.
var propagator = propagation.TraceContext{}

// Propagator is the W3C Trace Context propagator every hop uses.
func Propagator() propagation.TextMapPropagator { return propagator }

// Carrier returns the trace context of ctx's span as traceparent (and
// tracestate) entries, for an envelope or message headers; nil when ctx has
// no valid span context.
func Carrier(ctx context.Context) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	c := propagation.MapCarrier{}
	propagator.Inject(ctx, c)
	return c
}

// Extract returns ctx with the remote span context carrier holds, if it
// holds a valid one.
func Extract(ctx context.Context, carrier map[string]string) context.Context {
	if len(carrier) == 0 {
		return ctx
	}
	return propagator.Extract(ctx, propagation.MapCarrier(carrier))
}

// LogAttrs are the trace_id and span_id of ctx's span, as slog key-value
// pairs, for a logger made once per unit of work; none when ctx has none.
func LogAttrs(ctx context.Context) []any {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return nil
	}
	return []any{"trace_id", sc.TraceID().String(), "span_id", sc.SpanID().String()}
}

// LogHandler wraps h so that a line logged with a context (InfoContext,
// LogAttrs, ...) inside a span carries the span's trace_id and span_id.
func LogHandler(h slog.Handler) slog.Handler { return logHandler{h} }

type logHandler struct{ slog.Handler }

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{h.Handler.WithAttrs(attrs)}
}

func (h logHandler) WithGroup(name string) slog.Handler { return logHandler{h.Handler.WithGroup(name)} }
