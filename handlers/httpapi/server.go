// Package httpapi is the HTTP adapter: the Echo server, the middleware
// (bounded client headers, request ids, request logs, metrics, security
// headers, the shared rate limit, body limits), and handlers that each turn
// one request into one call: a use case of package app inside a unit of
// work (command.go, with the Idempotency-Key), or a read of the
// projections' Reader. routes.go lists every route; errors.go is the one
// place where errors become responses.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/internal/ops"
	"github.com/shopdev/shop/internal/telemetry"
	"github.com/shopdev/shop/limit"
	"github.com/shopdev/shop/projections"
	"github.com/shopdev/shop/store"
)

// BodyLimit caps every request body: 1 MiB.
const BodyLimit = 1 << 20

// Config wires the API to its dependencies.
type Config struct {
	// UnitOfWork runs the commands, each in one transaction. Required.
	UnitOfWork *store.UnitOfWork
	// Reads serves the GET endpoints. Required.
	Reads *projections.Reader
	// Users reads the users' roles and token versions, which decide what a
	// token may do. Required.
	Users *store.Reads
	// Auth hashes passwords and verifies tokens. Required.
	Auth *auth.Auth
	// Logger receives request and error logs. Required.
	Logger *slog.Logger
	// Registry receives the HTTP metrics. Default a new registry.
	Registry *prometheus.Registry
	// Ops serves /healthz and /readyz on the API's port (/metrics is
	// served on the process's METRICS_ADDR only, which can stay private).
	// Default ops.Handler of Registry, with no readiness checks.
	Ops http.Handler
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// AccessTTL is how long a user's role and token version are cached:
	// a demotion, a revocation or a deleted user ends its tokens within
	// it. Default 10s; at most 30s.
	AccessTTL time.Duration
	// Limiter is the rate limit every replica shares. nil: no limit.
	Limiter *limit.Limiter
	// Logins throttles failed logins per account. nil: no throttle.
	Logins *limit.Logins
	// TrustedProxies are the peers whose X-Forwarded-For is believed: the
	// client address is read from it right to left, skipping trusted
	// hops. Empty: the peer is the client.
	TrustedProxies []netip.Prefix
	// HSTS sends Strict-Transport-Security (for an API served over HTTPS
	// by the proxy in front).
	HSTS bool
	// CommandBatchMax is how many concurrent commands share one
	// transaction at most (store.Group): each under a savepoint of its own,
	// one COMMIT for all. Default 64; 1 runs each in its own transaction.
	CommandBatchMax int
	// CommandLanes is how many command transactions run at once: groups
	// form while all are busy. Default 1.
	CommandLanes int
	// MaxInFlight is how many requests the API works on at once; one more
	// is answered 503 with Retry-After at once (bound). 0: no bound.
	MaxInFlight int
	// Backlog holds new commands back while too many events wait in the
	// outbox (outbox.Backlog): a command waits at its Admit, and is
	// answered its error (503 with Retry-After) if the wait ends without
	// room. nil: commands are never held.
	Backlog interface {
		Admit(ctx context.Context) error
	}
	// Tracing records a server span per request (otelhttp around the
	// server, the span named after its route by traceRoute) and the spans
	// below it. nil: none, at no cost.
	Tracing trace.TracerProvider
}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.UnitOfWork == nil:
		return errors.New("httpapi: unit of work is required")
	case c.Reads == nil:
		return errors.New("httpapi: reads are required")
	case c.Users == nil:
		return errors.New("httpapi: users' reads are required")
	case c.Auth == nil:
		return errors.New("httpapi: auth is required")
	case c.Logger == nil:
		return errors.New("httpapi: logger is required")
	case c.MaxInFlight < 0:
		return fmt.Errorf("httpapi: requests in flight must be 0 (no bound) or more, not %d", c.MaxInFlight)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Ops == nil {
		c.Ops = ops.Handler(c.Registry, nil)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Server holds the handlers' dependencies.
type Server struct {
	cfg      Config
	gate     *auth.Gate
	metrics  *metrics
	docs     *openAPIDocs
	commands *store.Group
	inFlight atomic.Int64 // requests in hand (bound)
}

// New returns the API as an http.Handler built on Echo: the *echo.Echo
// itself, or, with Config.Tracing, wrapped in otelhttp's server span.
func New(cfg Config) (http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	gate, err := auth.NewGate(auth.GateConfig{Auth: cfg.Auth, TTL: cfg.AccessTTL,
		Lookup: func(ctx context.Context, id uuid.UUID) (auth.Access, error) {
			return app.UserAccess(ctx, cfg.Users, id)
		}})
	if err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	s := &Server{cfg: cfg, gate: gate}
	m, err := newMetrics(cfg.Registry, cfg.Auth.Hashes, func() float64 { return float64(s.inFlight.Load()) })
	if err != nil {
		return nil, fmt.Errorf("httpapi: register metrics: %w", err)
	}
	docs, err := newOpenAPIDocs()
	if err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	commands, err := cfg.UnitOfWork.Group(store.GroupConfig{Max: cfg.CommandBatchMax, Lanes: cfg.CommandLanes})
	if err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	s.metrics, s.docs, s.commands = m, docs, commands
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.IPExtractor = clientIP(cfg.TrustedProxies)
	e.Use(once(
		boundClientHeaders,
		traceRoute,
		middleware.RequestIDWithConfig(middleware.RequestIDConfig{Generator: requestID}),
		m.observe,
		s.logRequests,
		middleware.RecoverWithConfig(middleware.RecoverConfig{
			// A panic is a bug: handleError logs it with the stack of its
			// goroutine and answers 500 with the request id only.
			DisableStackAll: true,
			LogErrorFunc: func(_ echo.Context, err error, stack []byte) error {
				return fmt.Errorf("panic: %w\n%s", err, stack)
			},
		}),
		s.secureHeaders,
		s.bound,
		s.rateLimit,
		middleware.BodyLimit(fmt.Sprint(BodyLimit)),
	))
	s.routes(e)
	if cfg.Tracing == nil {
		return e, nil
	}
	// A span per request, continuing a valid traceparent (the invalid ones
	// boundClientHeaders drops are not valid for otelhttp either), else a
	// trace of its own; traceRoute names it after its route. The probes are
	// left out.
	return otelhttp.NewHandler(e, "http", otelhttp.WithTracerProvider(cfg.Tracing), otelhttp.WithPropagators(telemetry.Propagator()),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }),
		otelhttp.WithFilter(func(r *http.Request) bool { return r.URL.Path != "/healthz" && r.URL.Path != "/readyz" })), nil
}

// once wraps middleware, the first outermost, around the handler the
// router found for a request (c.Handler(): the route's, or the 404 or 405
// handler), once and for all, and gives the result as one middleware for
// Echo.Use. Echo wraps what Use was given around the route's handler again
// on every request, a closure per middleware; the one it gets here returns
// the same chain every time.
func once(middleware ...echo.MiddlewareFunc) echo.MiddlewareFunc {
	chain := func(c echo.Context) error { return c.Handler()(c) }
	for i := len(middleware) - 1; i >= 0; i-- {
		chain = middleware[i](chain)
	}
	return func(echo.HandlerFunc) echo.HandlerFunc { return chain }
}

// clientIP is who sent a request: the peer, unless the peer is one of the
// trusted proxies, which name the client in X-Forwarded-For; then the
// nearest address in it, right to left, that is not a trusted proxy.
// Without trusted proxies X-Forwarded-For is never read: any client could
// write it.
func clientIP(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		p = p.Masked()
		opts = append(opts, echo.TrustIPRange(&net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// logRequests writes one debug line per request; errors are answered (and
// 5xx logged) by handleError.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		if err := next(c); err != nil {
			c.Error(err)
		}
		req, res := c.Request(), c.Response()
		if !s.cfg.Logger.Enabled(req.Context(), slog.LevelDebug) {
			return nil // the attributes below cost more than the rest of a cached read
		}
		s.cfg.Logger.LogAttrs(req.Context(), slog.LevelDebug, "request",
			slog.String("method", req.Method), slog.String("route", c.Path()),
			slog.Int("status", res.Status), slog.Duration("duration", time.Since(start)),
			slog.String("request_id", res.Header().Get(echo.HeaderXRequestID)),
			slog.String("correlation_id", correlationID(c)))
		return nil
	}
}
