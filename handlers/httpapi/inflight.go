package httpapi

import (
	"errors"

	"github.com/labstack/echo/v4"
)

// errBusy answers a request that arrived while the API already worked on
// Config.MaxInFlight others.
var errBusy = errors.New("the server is busy; retry later")

// bound refuses, with 503 and Retry-After at once, a request that arrives
// while Config.MaxInFlight others are in hand; the probes are never
// refused. Past what the machine sustains, requests would otherwise pile
// up in the process, each with its goroutine and buffers, and wait seconds
// for an answer; refused at once, the client learns it straight away and
// the API's memory stays bounded by this limit, not by the backlog.
//
// It counts the requests in hand for shop_http_requests_in_flight even when
// there is no bound.
func (s *Server) bound(next echo.HandlerFunc) echo.HandlerFunc {
	limit := int64(s.cfg.MaxInFlight)
	return func(c echo.Context) error {
		switch c.Path() {
		case "/healthz", "/readyz":
			return next(c)
		}
		if s.inFlight.Add(1) > limit && limit > 0 {
			s.inFlight.Add(-1)
			s.metrics.refused.Inc()
			return errBusy
		}
		defer s.inFlight.Add(-1)
		return next(c)
	}
}
