package httpapi

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/limit"
)

// errLimiterDown answers a request on a route that fails closed while the
// shared limiter cannot decide.
var errLimiterDown = fmt.Errorf("rate limiter %w", domain.ErrUnavailable)

// rateLimit spends one request of the client's budget, shared by every
// replica through Redis (Config.Limiter; none when nil). A client is its
// user when the request carries a validly signed token, else its address
// (clientIP). Every limited answer says the budget in RateLimit-Limit,
// -Remaining and -Reset; past it, the one error handler answers 429 with
// Retry-After. /healthz and /readyz are never limited.
//
// When Redis does not answer, the limiter fails open, except on the two
// routes that anyone may call and that cost a password hash, POST
// /v1/tokens and POST /v1/users, which fail closed (503): an outage of
// Redis must not open them to guessing and mass registration.
func (s *Server) rateLimit(next echo.HandlerFunc) echo.HandlerFunc {
	if s.cfg.Limiter == nil {
		return next
	}
	return func(c echo.Context) error {
		switch c.Path() {
		case "/healthz", "/readyz":
			return next(c)
		}
		d, err := s.cfg.Limiter.Allow(c.Request().Context(), s.clientKey(c))
		if err != nil {
			s.metrics.limiter.Inc()
			if failsClosed(c) {
				return errLimiterDown
			}
			return next(c)
		}
		// Written in canonical form straight into the map: Header.Set would
		// canonicalize (and allocate) each name on every request.
		h := c.Response().Header()
		h["Ratelimit-Limit"] = []string{strconv.Itoa(d.Limit)}
		h["Ratelimit-Remaining"] = []string{strconv.Itoa(d.Remaining)}
		h["Ratelimit-Reset"] = []string{strconv.Itoa(seconds(d.Reset))}
		if !d.Allowed {
			return &limit.ExceededError{Detail: "too many requests; slow down and retry after the time in Retry-After", RetryAfter: d.RetryAfter}
		}
		return next(c)
	}
}

// clientKey is whose budget a request spends: its user's when it carries
// a token signed by one of our keys (revoked or not: the budget is about
// load, not rights), else its address's.
func (s *Server) clientKey(c echo.Context) string {
	if scheme, token, ok := strings.Cut(c.Request().Header.Get(echo.HeaderAuthorization), " "); ok && strings.EqualFold(scheme, "Bearer") {
		if claims, err := s.cfg.Auth.Verify(strings.TrimSpace(token)); err == nil {
			return "user:" + claims.UserID.String()
		}
	}
	return "ip:" + c.RealIP()
}

func failsClosed(c echo.Context) bool {
	if c.Request().Method != http.MethodPost {
		return false
	}
	p := c.Path()
	return p == "/v1/tokens" || p == "/v1/users"
}

// seconds rounds d up to whole seconds, at least 1 when d is positive, as
// Retry-After and RateLimit-Reset count.
func seconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return max(1, int(math.Ceil(d.Seconds())))
}

// exceeded answers a spent budget: 429 with Retry-After.
func exceeded(err error, c echo.Context, p *Problem) bool {
	var ex *limit.ExceededError
	if !errors.As(err, &ex) {
		return false
	}
	p.Status, p.Detail = http.StatusTooManyRequests, ex.Detail
	c.Response().Header().Set("Retry-After", strconv.Itoa(max(1, seconds(ex.RetryAfter))))
	return true
}
