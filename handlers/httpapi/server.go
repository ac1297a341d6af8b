// Package http owns the HTTP API: the Echo server, its routes, request
// decoding and validation, authentication, Idempotency-Key handling, the
// query endpoints over the Redis read models (with Postgres as fallback),
// and the one error handler that turns every error into problem+json.
// Handlers are thin: decode, call a command of package app in a unit of work
// or a read, encode.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo-contrib/echoprometheus"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/projections"
	"github.com/shopdev/shop/store"
)

// Config wires the API to its dependencies.
type Config struct {
	// Pool is the Postgres pool; required.
	Pool *pgxpool.Pool
	// Auth hashes passwords and verifies tokens; required.
	Auth *auth.Auth
	// Notifier hears which outbox partitions each command wrote, to wake
	// the relays; default none (the relays poll).
	Notifier store.CommitNotifier
	// Logger receives request and error logs; required.
	Logger *slog.Logger
	// Registry receives the HTTP metrics and is served on /metrics;
	// default a new registry.
	Registry *prometheus.Registry
	// Now is the clock; default time.Now.
	Now func() time.Time
	// BodyLimit caps request bodies, e.g. "1M". Default "1M".
	BodyLimit string
	// ReadyTimeout bounds the dependency checks of /readyz. Default 2s.
	ReadyTimeout time.Duration
	// Redis holds the read models the GET endpoints serve; nil serves them
	// from Postgres.
	Redis *projections.Store
	// Watcher lets ?min_version wait for a model; nil does not wait.
	Watcher *projections.Watcher
	// MinVersionWait bounds a ?min_version wait. Default 2s.
	MinVersionWait time.Duration
	// RedisTimeout bounds each Redis read, so the API never hangs on it.
	// Default 250ms.
	RedisTimeout time.Duration
	// RateLimit is how many requests per second one client may make on
	// average, RateBurst how many at once; beyond, 429 with Retry-After.
	// A client is its IP address: the peer's, or when the peer is a proxy
	// on a loopback or private address, the nearest address in
	// X-Forwarded-For that is not such a proxy. /healthz, /readyz and /metrics are never limited.
	// Each API process counts on its own. Default 0: no limit.
	RateLimit float64
	// RateBurst defaults to twice RateLimit (at least 1).
	RateBurst int
}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Pool == nil:
		return errors.New("http: pool is required")
	case c.Auth == nil:
		return errors.New("http: auth is required")
	case c.Logger == nil:
		return errors.New("http: logger is required")
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.BodyLimit == "" {
		c.BodyLimit = "1M"
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 2 * time.Second
	}
	if c.MinVersionWait == 0 {
		c.MinVersionWait = 2 * time.Second
	}
	if c.RedisTimeout == 0 {
		c.RedisTimeout = 250 * time.Millisecond
	}
	if c.RateLimit < 0 || c.RateBurst < 0 {
		return errors.New("http: rate limit and burst must not be negative")
	}
	if c.RateLimit > 0 && c.RateBurst == 0 {
		c.RateBurst = max(1, int(2*c.RateLimit))
	}
	return nil
}

// Server holds the handlers' dependencies.
type Server struct {
	cfg   Config
	uow   *store.UnitOfWork
	reads *reads
}

// New returns the API as an http.Handler built on Echo.
func New(cfg Config) (*echo.Echo, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, uow: store.NewUnitOfWork(cfg.Pool, cfg.Notifier), reads: newReads(cfg)}
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
	s.routes(e, promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{}))
	return e, nil
}

// errRateLimited answers a client over its rate limit.
var errRateLimited = errors.New("too many requests; slow down and retry after the time in Retry-After")

// rateLimit limits each client to RateLimit requests per second (bursts of
// RateBurst), in this process's memory; none when RateLimit is 0.
func (s *Server) rateLimit() echo.MiddlewareFunc {
	if s.cfg.RateLimit == 0 {
		return func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	return middleware.RateLimiterWithConfig(middleware.RateLimiterConfig{
		Skipper: func(c echo.Context) bool {
			switch c.Path() {
			case "/healthz", "/readyz", "/metrics":
				return true
			}
			return false
		},
		Store: middleware.NewRateLimiterMemoryStoreWithConfig(middleware.RateLimiterMemoryStoreConfig{
			Rate: rate.Limit(s.cfg.RateLimit), Burst: s.cfg.RateBurst, ExpiresIn: 3 * time.Minute,
		}),
		IdentifierExtractor: func(c echo.Context) (string, error) { return c.RealIP(), nil },
		DenyHandler:         func(echo.Context, string, error) error { return errRateLimited },
	})
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

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 when Postgres answers within ReadyTimeout, else 503.
func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), s.cfg.ReadyTimeout)
	defer cancel()
	if err := s.cfg.Pool.Ping(ctx); err != nil {
		return problemError{status: http.StatusServiceUnavailable, detail: "postgres is not answering"}
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready", "postgres": "ok"})
}
