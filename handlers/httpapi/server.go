// Package httpapi is the HTTP adapter: the Echo server, the middleware
// (request ids, request logs, metrics, the rate limit, body limits), and
// handlers that each turn one request into one call: a use case of package
// app inside a unit of work (command.go, with the Idempotency-Key), or a
// read of the projections' Reader. routes.go lists every route; errors.go
// is the one place where errors become responses.
package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo-contrib/echoprometheus"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/internal/ops"
	"github.com/shopdev/shop/projections"
	"github.com/shopdev/shop/store"
)

// Config wires the API to its dependencies.
type Config struct {
	// UnitOfWork runs the commands, each in one transaction. Required.
	UnitOfWork *store.UnitOfWork
	// Reads serves the GET endpoints. Required.
	Reads *projections.Reader
	// Auth hashes passwords and verifies tokens. Required.
	Auth *auth.Auth
	// Logger receives request and error logs. Required.
	Logger *slog.Logger
	// Registry receives the HTTP metrics. Default a new registry.
	Registry *prometheus.Registry
	// Ops serves /healthz, /readyz and /metrics on the API's port. Default
	// ops.Handler of Registry, with no readiness checks.
	Ops http.Handler
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// BodyLimit caps request bodies, e.g. "1M". Default "1M".
	BodyLimit string
	// RateLimit is how many requests per second one client may make on
	// average, RateBurst how many at once; beyond, 429 with Retry-After.
	// See ratelimit.go for who a client is. 0: no limit.
	RateLimit float64
	// RateBurst defaults to twice RateLimit (at least 1).
	RateBurst int
}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.UnitOfWork == nil:
		return errors.New("httpapi: unit of work is required")
	case c.Reads == nil:
		return errors.New("httpapi: reads are required")
	case c.Auth == nil:
		return errors.New("httpapi: auth is required")
	case c.Logger == nil:
		return errors.New("httpapi: logger is required")
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
	if c.BodyLimit == "" {
		c.BodyLimit = "1M"
	}
	if c.RateLimit < 0 || c.RateBurst < 0 {
		return errors.New("httpapi: rate limit and burst must not be negative")
	}
	if c.RateLimit > 0 && c.RateBurst == 0 {
		c.RateBurst = max(1, int(2*c.RateLimit))
	}
	return nil
}

// Server holds the handlers' dependencies.
type Server struct {
	cfg Config
}

// New returns the API as an http.Handler built on Echo.
func New(cfg Config) (*echo.Echo, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.IPExtractor = echo.ExtractIPFromXFFHeader() // trusts proxies on loopback and private networks
	e.Use(
		middleware.RequestID(),
		s.logRequests,
		middleware.RecoverWithConfig(middleware.RecoverConfig{
			// A panic is a bug: handleError logs it with the stack of its
			// goroutine and answers 500 with the request id only.
			DisableStackAll: true,
			LogErrorFunc: func(_ echo.Context, err error, stack []byte) error {
				return fmt.Errorf("panic: %w\n%s", err, stack)
			},
		}),
		echoprometheus.NewMiddlewareWithConfig(echoprometheus.MiddlewareConfig{
			Namespace: "shop", Subsystem: "http", Registerer: cfg.Registry,
			Skipper: func(c echo.Context) bool { return c.Path() == "/metrics" },
		}),
		s.rateLimit(),
		middleware.BodyLimit(cfg.BodyLimit),
	)
	s.routes(e)
	return e, nil
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
