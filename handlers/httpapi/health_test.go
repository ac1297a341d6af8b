package httpapi_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/shopdev/shop/internal/testenv"
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

// TestMetricsCountRequests: every request is counted and timed by route
// template, method and the status the client received; /metrics is not
// on the API's port (it is on METRICS_ADDR, which can stay private).
func TestMetricsCountRequests(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, token := a.registerCustomer(t, "xena@example.com")
	a.do(t, "GET", "/v1/nowhere", "", nil, nil).expect(t, http.StatusNotFound)
	a.do(t, "GET", "/v1/orders/"+uuid.NewString(), token, nil, nil).expect(t, http.StatusNotFound)
	for range 3 {
		a.do(t, "POST", "/v1/tokens", "", map[string]any{"email": "xena@example.com", "password": "not the password"}, nil).expect(t, http.StatusUnauthorized)
	}
	a.do(t, "GET", "/metrics", "", nil, nil).expect(t, http.StatusNotFound)

	got := a.scrape(t)
	for _, want := range []string{
		`shop_http_requests_total{code="201",method="POST",route="/v1/users"} 1`,
		`shop_http_requests_total{code="200",method="POST",route="/v1/tokens"} 1`,
		`shop_http_requests_total{code="401",method="POST",route="/v1/tokens"} 3`,
		`shop_http_requests_total{code="404",method="GET",route="/v1/orders/:id"} 1`,
		`shop_http_requests_total{code="404",method="GET",route="unmatched"} 2`,
		`shop_http_request_duration_seconds_count{code="401",method="POST",route="/v1/tokens"} 3`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(got, `code="500"`) {
		t.Errorf("/metrics counts a 500, but the API answered none:\n%s", grepLines(got, "shop_http_requests_total"))
	}
}

// TestMetricsCannotBeInflated: requests with random unmatched paths,
// methods and Host headers add no series: /metrics stays the size it was.
func TestMetricsCannotBeInflated(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	rng := testenv.Rand(t)
	methods := []string{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "PROPFIND", "BREW", "X-EVIL"}
	random := func() *http.Request {
		path := fmt.Sprintf("/%x/%d/%s", rng.Uint64(), rng.IntN(1e6), strings.Repeat("a", rng.IntN(200)))
		req, err := http.NewRequest(methods[rng.IntN(len(methods))], a.srv.URL+path, nil)
		testenv.Must(t, err, "request")
		req.Host = fmt.Sprintf("h%d.example", rng.Uint32())
		return req
	}
	send := func(req *http.Request) {
		res, err := a.srv.Client().Do(req)
		testenv.Must(t, err, "send")
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	for _, m := range methods { // every series the flood can reach
		req := random()
		req.Method = m
		send(req)
	}
	before := len(a.scrape(t))
	for range 5000 {
		send(random())
	}
	after := len(a.scrape(t))
	if float64(after) > 1.1*float64(before) {
		t.Errorf("/metrics grew from %d to %d bytes after 5,000 random requests, want within 10%%", before, after)
	}
}

func grepLines(s, substr string) string {
	var out strings.Builder
	for line := range strings.Lines(s) {
		if strings.Contains(line, substr) {
			out.WriteString(line)
		}
	}
	return out.String()
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
