package ops_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopdev/shop/internal/ops"
)

func TestReadinessNamesWhatDoesNotAnswer(t *testing.T) {
	t.Parallel()
	up := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("dial tcp 10.0.0.7:5432: connection refused") }
	tests := []struct {
		name       string
		checks     []ops.Check
		wantStatus int
		wantDown   []string
	}{
		{"no dependencies", nil, http.StatusOK, nil},
		{"all answer", []ops.Check{{"postgres", up}, {"rabbitmq", up}}, http.StatusOK, nil},
		{"one does not", []ops.Check{{"postgres", up}, {"rabbitmq", down}}, http.StatusServiceUnavailable, []string{"rabbitmq"}},
		{"none does", []ops.Check{{"postgres", down}, {"redis", down}}, http.StatusServiceUnavailable, []string{"postgres", "redis"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			ops.Handler(prometheus.NewRegistry(), ops.NewReadiness(tt.checks...)).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
			if rec.Code != tt.wantStatus {
				t.Fatalf("/readyz = %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			var body struct {
				Unavailable []string `json:"unavailable"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if !slices.Equal(body.Unavailable, tt.wantDown) {
				t.Errorf("unavailable = %v, want %v", body.Unavailable, tt.wantDown)
			}
			if strings.Contains(rec.Body.String(), "10.0.0.7") {
				t.Errorf("the answer gives the error away: %s", rec.Body)
			}
		})
	}
}

func TestHealthAndMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "ops_test_total", Help: "a test counter"})
	reg.MustRegister(c)
	c.Inc()
	h := ops.Handler(reg, ops.NewReadiness(ops.Check{Name: "postgres", Ready: func(context.Context) error { return errors.New("down") }}))
	for path, want := range map[string]string{"/healthz": `"status":"ok"`, "/metrics": "ops_test_total 1"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("GET %s = %d %q, want 200 with %s (alive whatever its dependencies)", path, rec.Code, rec.Body, want)
		}
	}
}

func TestWithProfilesServesProfilesBesideTheHandler(t *testing.T) {
	t.Parallel()
	h := ops.WithProfiles(ops.Handler(prometheus.NewRegistry(), nil))
	tests := []struct {
		method, path string
		wantStatus   int
		wantBody     string
	}{
		{"GET", "/debug/pprof/", http.StatusOK, "goroutine"},
		{"GET", "/debug/pprof/heap?debug=1", http.StatusOK, "heap profile"},
		{"GET", "/debug/pprof/goroutine?debug=1", http.StatusOK, "goroutine profile"},
		{"GET", "/debug/pprof/cmdline", http.StatusOK, ""},
		{"GET", "/debug/pprof/no-such-profile", http.StatusNotFound, "Unknown profile"},
		{"POST", "/debug/pprof/heap", http.StatusNotFound, ""}, // profiles are read with GET only
		// What the wrapped handler serves is served as before.
		{"GET", "/healthz", http.StatusOK, `"status":"ok"`},
		{"GET", "/metrics", http.StatusOK, ""},
		{"GET", "/nothing-here", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.wantStatus {
				t.Fatalf("%s %s = %d, want %d: %s", tt.method, tt.path, rec.Code, tt.wantStatus, rec.Body)
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("%s %s answered %q, want it to contain %q", tt.method, tt.path, rec.Body, tt.wantBody)
			}
		})
	}
}

func TestHandlerAloneServesNoProfiles(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	ops.Handler(prometheus.NewRegistry(), nil).ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without WithProfiles = %d, want 404", rec.Code)
	}
}
