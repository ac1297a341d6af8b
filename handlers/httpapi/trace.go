package httpapi

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopdev/shop/internal/telemetry"
)

// traceRequests starts a server span per request, named after its route
// ("POST /v1/orders") with the HTTP semantic conventions' attributes,
// continuing the caller's traceparent when it is valid (boundClientHeaders
// dropped it otherwise), else starting a trace; the handlers and the
// Postgres work below run in it. The probes are left out. It is installed
// only when Config.Tracing is set. It is ours rather than otelhttp's
// around the whole server, which costs more per request, cannot know the
// route and leaves the span to be renamed (BENCHMARKS.md).
func (s *Server) traceRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		route := c.Path()
		if route == "/healthz" || route == "/readyz" {
			return next(c)
		}
		name := req.Method
		if route != "" {
			name += " " + route
		}
		ctx := telemetry.Propagator().Extract(req.Context(), propagation.HeaderCarrier(req.Header))
		ctx, span := s.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
			method(req.Method), semconv.HTTPRoute(route), semconv.URLPath(req.URL.Path), semconv.URLScheme(c.Scheme()),
			semconv.ClientAddress(c.RealIP()), semconv.UserAgentOriginal(req.UserAgent())))
		defer span.End()
		c.SetRequest(req.WithContext(ctx))
		if err := next(c); err != nil {
			c.Error(err) // answered here, so that the span sees its status
		}
		status := c.Response().Status
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
		if status >= http.StatusInternalServerError {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
		return nil
	}
}

// method is the http.request.method attribute: a known method, or _OTHER.
func method(m string) attribute.KeyValue {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return semconv.HTTPRequestMethodKey.String(m)
	}
	return semconv.HTTPRequestMethodKey.String("_OTHER")
}
