package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestHealthEndpoints(t *testing.T) {
	t.Parallel()
	a := newAPI(t)

	tests := []struct {
		path       string
		wantStatus string
	}{
		{"/healthz", "ok"},
		{"/readyz", "ready"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := a.do(t, "GET", tt.path, "", nil, nil)
			r.expect(t, http.StatusOK)
			if r.body["status"] != tt.wantStatus {
				t.Errorf("status %v, want %q; body %s", r.body["status"], tt.wantStatus, r.raw)
			}
		})
	}
}

func TestMetricsCountRequests(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.registerCustomer(t, "xena@example.com")
	a.do(t, "GET", "/v1/nowhere", "", nil, nil)

	r := a.do(t, "GET", "/metrics", "", nil, nil)

	r.expect(t, http.StatusOK)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want the Prometheus text format", ct)
	}
	for _, want := range []string{"shop_http_requests_total", "shop_http_request_duration_seconds", `url="/v1/users"`, `code="201"`} {
		if !strings.Contains(string(r.raw), want) {
			t.Errorf("/metrics does not contain %s", want)
		}
	}
}

func TestUnknownRoutesAreProblems(t *testing.T) {
	t.Parallel()
	a := newAPI(t)

	tests := []struct {
		method, path string
		want         int
	}{
		{"GET", "/", http.StatusNotFound},
		{"GET", "/v1/nowhere", http.StatusNotFound},
		{"POST", "/v2/orders", http.StatusNotFound},
		{"POST", "/v1/orders/x/y/z", http.StatusNotFound},
		{"DELETE", "/v1/users", http.StatusMethodNotAllowed},
		{"PUT", "/v1/products", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			a.do(t, tt.method, tt.path, "", nil, nil).problem(t, tt.want)
		})
	}
}
