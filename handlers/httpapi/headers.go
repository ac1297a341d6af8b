package httpapi

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// maxClientID bounds an id a client chooses (X-Request-Id,
// X-Correlation-Id): it is copied into events and log lines.
const maxClientID = 128

// traceContext parses and writes W3C Trace Context headers.
var traceContext = propagation.TraceContext{}

// boundClientHeaders drops, before anything reads them, the headers a
// client chooses that go into events and log lines when they are not what
// they claim: an X-Request-Id or X-Correlation-Id that is not 1 to 128
// printable ASCII characters (the request gets an id of its own), and a
// traceparent or tracestate that W3C Trace Context does not parse (the
// request starts a trace of its own). A valid trace context is written
// back in its canonical form.
func boundClientHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header
		for _, name := range []string{echo.HeaderXRequestID, headerCorrelationID} {
			if values := h.Values(name); values != nil && (len(values) > 1 || !printableASCII(values[0], maxClientID)) {
				h.Del(name)
			}
		}
		if h.Values("Traceparent") != nil || h.Values("Tracestate") != nil {
			sc := trace.SpanContextFromContext(traceContext.Extract(context.Background(), propagation.HeaderCarrier(h)))
			h.Del("Traceparent")
			h.Del("Tracestate")
			if sc.IsValid() {
				traceContext.Inject(trace.ContextWithRemoteSpanContext(context.Background(), sc), propagation.HeaderCarrier(h))
			}
		}
		return next(c)
	}
}

// traceRoute names the request's span, when tracing records one (New
// wraps the API in otelhttp), after its route, "POST /v1/orders",
// as the HTTP semantic conventions say; the path's ids stay out of it.
func traceRoute(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if span := trace.SpanFromContext(c.Request().Context()); span.IsRecording() && c.Path() != "" {
			span.SetName(c.Request().Method + " " + c.Path())
			span.SetAttributes(semconv.HTTPRoute(c.Path()))
		}
		return next(c)
	}
}

// printableASCII reports whether s is 1 to limit printable ASCII
// characters.
func printableASCII(s string, limit int) bool {
	if s == "" || len(s) > limit {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// secureHeaders are on every answer: an API's answers are data, never a
// page to frame, sniff or follow links from.
// The header names are canonical, so they are set without the
// canonicalisation Header.Set does on every call. The values of an answer
// share one array, each value a slice of capacity one: Header.Add appends
// to a copy rather than into its neighbour.
func (s *Server) secureHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		v := []string{"nosniff", "DENY", "no-referrer", "default-src 'none'; frame-ancestors 'none'", hstsMaxAge}
		h["X-Content-Type-Options"] = v[0:1:1]
		h["X-Frame-Options"] = v[1:2:2]
		h["Referrer-Policy"] = v[2:3:3]
		h["Content-Security-Policy"] = v[3:4:4]
		if s.cfg.HSTS {
			// Browsers heed it only over HTTPS, which a proxy in front ends.
			h["Strict-Transport-Security"] = v[4:5:5]
		}
		return next(c)
	}
}

// hstsMaxAge is a year, in seconds.
const hstsMaxAge = "max-age=31536000"

// requestID names a request that came without an X-Request-Id: 32 hex
// digits from the runtime's ChaCha8 generator, which unlike Echo's default
// takes no lock shared by every request.
func requestID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

// noStore marks an answer as one no cache may keep: a token, or what only
// its signed-in reader may see.
func noStore(c echo.Context) {
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
}
