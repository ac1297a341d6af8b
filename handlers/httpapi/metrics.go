package httpapi

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// unmatchedRoute labels every request that no route matched.
const unmatchedRoute = "unmatched"

// metrics counts and times every request by what it asked for and what it
// got. Every label takes one of a fixed set of values, whatever clients
// send: the route template (or unmatchedRoute), one of the methods the API
// knows (or OTHER), and the status the client received. No label comes
// from the Host header or a raw path, so no client can grow the series.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	limiter  prometheus.Counter
	refused  prometheus.Counter // requests refused for the bound on requests in flight

	// The series of each (status, method, route) seen, so that a request
	// does not hash its labels into both vectors.
	mu     sync.RWMutex
	series map[seriesKey]series
}

type seriesKey struct {
	code          int
	method, route string
}

type series struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// of returns the series of an answer; the labels are bounded (see metrics).
func (m *metrics) of(code int, method, route string) series {
	k := seriesKey{code, method, route}
	m.mu.RLock()
	s, ok := m.series[k]
	m.mu.RUnlock()
	if ok {
		return s
	}
	status := strconv.Itoa(code)
	s = series{m.requests.WithLabelValues(status, method, route), m.duration.WithLabelValues(status, method, route)}
	m.mu.Lock()
	m.series[k] = s
	m.mu.Unlock()
	return s
}

func newMetrics(reg prometheus.Registerer, hashes func() uint64, inFlight func() float64) (*metrics, error) {
	m := &metrics{
		series: map[seriesKey]series{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "shop", Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests answered, by route template, method and the status sent.",
		}, []string{"code", "method", "route"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "shop", Subsystem: "http", Name: "request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route template, method and the status sent.",
			Buckets: prometheus.DefBuckets,
		}, []string{"code", "method", "route"}),
		limiter: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "shop", Subsystem: "http", Name: "rate_limiter_errors_total",
			Help: "Requests the shared rate limiter could not decide (Redis did not answer): let through, or refused on the routes that fail closed.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "shop", Subsystem: "http", Name: "busy_refused_total",
			Help: "Requests answered 503 at once because HTTP_MAX_IN_FLIGHT others were in hand.",
		}),
	}
	inFlightGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "shop", Subsystem: "http", Name: "requests_in_flight",
		Help: "Requests the API is working on now, the probes left out.",
	}, inFlight)
	passwords := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "shop", Subsystem: "auth", Name: "password_hashes_total",
		Help: "bcrypt hashes and comparisons computed (registrations and logins): the CPU that passwords cost.",
	}, func() float64 { return float64(hashes()) })
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.limiter, m.refused, inFlightGauge, passwords} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// observe is the outermost middleware after the request id: by the time
// the handler returns, the one error handler has answered, so the status
// is the one the client received.
func (m *metrics) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		route := c.Path()
		if route == "" {
			route = unmatchedRoute
		}
		s := m.of(c.Response().Status, knownMethod(c.Request().Method), route)
		s.requests.Inc()
		s.duration.Observe(time.Since(start).Seconds())
		return nil
	}
}

// knownMethod is the method, or OTHER for one the API does not know.
func knownMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}
