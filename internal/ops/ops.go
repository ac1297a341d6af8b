// Package ops is what operators and orchestrators ask of every long-running
// shop process, in one handler: /healthz (the process is alive), /readyz
// (every dependency it needs answers) and /metrics (Prometheus). Every
// process serves it on METRICS_ADDR; the API also on its own port. With
// WithProfiles, METRICS_ADDR also serves Go's profiles (PPROF).
package ops

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one dependency /readyz asks: Ready returns nil when it answers.
type Check struct {
	Name  string // "postgres", "rabbitmq", ...
	Ready func(ctx context.Context) error
}

// Timeout bounds each readiness check.
const Timeout = 2 * time.Second

// Readiness is what a process needs to be ready: the checks of its parts,
// added as they are wired. Safe for concurrent use.
type Readiness struct {
	mu     sync.Mutex
	checks []Check
}

// NewReadiness returns a Readiness of checks.
func NewReadiness(checks ...Check) *Readiness { return &Readiness{checks: checks} }

// Add adds checks.
func (r *Readiness) Add(checks ...Check) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, checks...)
}

// Failing runs every check at once, each within Timeout, and returns the
// names of those that failed, in the order they were added.
func (r *Readiness) Failing(ctx context.Context) []string {
	r.mu.Lock()
	checks := slices.Clone(r.checks)
	r.mu.Unlock()
	return Failing(ctx, checks...)
}

// Handler serves /healthz, /readyz (every check of ready; nil: none) and
// /metrics (what reg gathers).
func Handler(reg prometheus.Gatherer, ready *Readiness) http.Handler {
	if ready == nil {
		ready = NewReadiness()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, "application/json", map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		failing := ready.Failing(r.Context())
		if len(failing) == 0 {
			writeJSON(w, http.StatusOK, "application/json", map[string]string{"status": "ready"})
			return
		}
		// What failed, by name: the errors themselves (addresses, user
		// names) stay out of an answer the API's port may serve to anyone.
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, "application/problem+json", map[string]any{
			"type": "about:blank", "title": http.StatusText(http.StatusServiceUnavailable),
			"status": http.StatusServiceUnavailable, "detail": "not ready: a dependency does not answer",
			"unavailable": failing,
		})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// WithProfiles serves Go's runtime profiles under /debug/pprof/ (CPU, heap,
// goroutines, mutexes, execution traces: what `go tool pprof` fetches)
// and passes every other request to h. The profiles say much about the
// process and cost CPU while they run, so they belong on an operator's
// port (METRICS_ADDR), never on the API's. (net/http/pprof also registers
// them on http.DefaultServeMux, which no shop server serves.) A CPU
// profile or trace may outlast the server's write timeout: the handler
// extends its own deadline.
func WithProfiles(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("GET /debug/pprof/", pprof.Index) // and every named profile: /debug/pprof/heap, ...
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// Failing runs every check at once, each within Timeout, and returns the
// names of those that failed, in the order given.
func Failing(ctx context.Context, checks ...Check) []string {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	failed := make([]bool, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { failed[i] = c.Ready(ctx) != nil })
	}
	wg.Wait()
	out := []string{}
	for i, c := range checks {
		if failed[i] {
			out = append(out, c.Name)
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
