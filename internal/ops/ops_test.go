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
