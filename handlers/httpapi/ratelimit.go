package httpapi

import (
	"errors"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"golang.org/x/time/rate"
)

// errRateLimited answers a client over its rate limit.
var errRateLimited = errors.New("too many requests; slow down and retry after the time in Retry-After")

// rateLimit limits each client to RateLimit requests per second (bursts of
// RateBurst), in this process's memory; none when RateLimit is 0. A client
// is its IP address: the peer's, or, when the peer is a proxy on a loopback
// or private address, the nearest address in X-Forwarded-For that is not
// such a proxy. /healthz, /readyz and /metrics are never limited. The one
// error handler answers 429 with Retry-After.
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
