package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/bcrypt"

	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/handlers/httpapi"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/store"
)

// TestPostgresDownIs503 runs the API against a Postgres that does not answer:
// commands and /readyz answer 503 problems quickly, /healthz stays 200.
func TestPostgresDownIs503(t *testing.T) {
	t.Parallel()
	pool, err := store.Open(context.Background(), store.Config{
		DatabaseURL:    "postgres://postgres@127.0.0.1:1/shop?sslmode=disable", // nothing listens on port 1
		ConnectTimeout: time.Second,
	})
	testenv.Must(t, err, "pool")
	t.Cleanup(pool.Close)
	au, err := auth.New(auth.Config{Secret: testSecret, PasswordCost: bcrypt.MinCost})
	testenv.Must(t, err, "auth")
	e, err := httpapi.New(newConfig(t, pool, au))
	testenv.Must(t, err, "api")
	srv := httptest.NewServer(checked(t, e))
	t.Cleanup(srv.Close)
	a := &api{srv: srv, logs: &testenv.Logs{}}

	tests := []struct {
		name, method, path string
		body               any
		want               int
	}{
		{"register", "POST", "/v1/users", map[string]any{"email": "a@example.com", "name": "A", "password": password}, http.StatusServiceUnavailable},
		{"log in", "POST", "/v1/tokens", map[string]any{"email": "a@example.com", "password": password}, http.StatusServiceUnavailable},
		{"readiness", "GET", "/readyz", nil, http.StatusServiceUnavailable},
		{"liveness", "GET", "/healthz", nil, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.do(t, tt.method, tt.path, "", tt.body, nil)
			if r.status != tt.want {
				t.Fatalf("%s %s = %d, want %d: %s", tt.method, tt.path, r.status, tt.want, r.raw)
			}
			switch {
			case tt.path == "/readyz": // the readiness of every process: it names what does not answer
				if down, _ := r.body["unavailable"].([]any); len(down) != 1 || down[0] != "postgres" {
					t.Errorf("/readyz says %s; want postgres unavailable", r.raw)
				}
			case tt.want == http.StatusServiceUnavailable:
				r.problem(t, tt.want)
				if r.header.Get("Retry-After") == "" {
					t.Error("503 without Retry-After")
				}
			}
		})
	}
}

// TestUnexpectedErrorsAre500WithoutInternals adds routes that fail in ways
// no handler should, and checks the one error handler answers 500 with the
// request id only and logs the cause under that id.
func TestUnexpectedErrorsAre500WithoutInternals(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	e := a.srv.Config.Handler.(*echo.Echo)
	e.GET("/test/error", func(echo.Context) error {
		return errors.New("pq: relation \"secret_table\" does not exist at store.go:42")
	})
	e.GET("/test/crash", func(echo.Context) error { panic("nil map in goroutine 7") })

	for _, path := range []string{"/test/error", "/test/crash"} {
		t.Run(path, func(t *testing.T) {
			correlation := "corr-" + strings.TrimPrefix(path, "/test/")
			r := a.do(t, "GET", path, "", nil, headers{"X-Correlation-Id": correlation})
			p := r.problem(t, http.StatusInternalServerError)
			for _, secret := range []string{"secret_table", "store.go", "goroutine", "nil map"} {
				if strings.Contains(string(r.raw), secret) {
					t.Errorf("500 body leaks %q: %s", secret, r.raw)
				}
			}
			line := a.logLine(p.RequestID)
			if line == "(none)" {
				t.Fatalf("the 500 with request id %s was not logged", p.RequestID)
			}
			if !strings.Contains(line, `"correlation_id":"`+correlation+`"`) {
				t.Errorf("the log line does not carry the caller's correlation id %q: %s", correlation, line)
			}
		})
	}
}
