package httpapi_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopdev/shop/handlers/httpapi"
	"github.com/shopdev/shop/internal/testenv"
)

// TestClientHeadersAreBounded: what a client puts in X-Request-Id,
// X-Correlation-Id, traceparent and tracestate reaches an event and a log
// line only when it is what it claims: an id of at most 128 printable
// ASCII characters, a trace context that W3C Trace Context parses.
// Anything else is replaced (a fresh request id, a new trace), however
// large it is.
func TestClientHeadersAreBounded(t *testing.T) {
	t.Parallel()
	logs := &testenv.Logs{}
	a := newAPIWith(t, func(c *httpapi.Config, _ *pgxpool.Pool) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	big := strings.Repeat("r", 10<<10)
	tests := []struct {
		name       string
		hdr        headers
		keepID     bool   // the request id is the one sent
		trace      string // the traceparent the event carries
		mustNotLog string
	}{
		{"a 10 KiB X-Request-Id", headers{"X-Request-Id": big}, false, "", big[:200]},
		{"an X-Request-Id of 129 characters", headers{"X-Request-Id": strings.Repeat("i", 129)}, false, "", strings.Repeat("i", 129)},
		{"an X-Request-Id that is not ASCII", headers{"X-Request-Id": "req-é"}, false, "", "req-é"},
		{"a usable X-Request-Id", headers{"X-Request-Id": "req-12345"}, true, "", ""},
		{"a 10 KiB X-Correlation-Id", headers{"X-Correlation-Id": big}, false, "", big[:200]},
		{"a malformed traceparent", headers{"Traceparent": "00-zz-00f067aa0ba902b7-01"}, false, "", "00-zz-"},
		{"an all-zero trace id", headers{"Traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}, false, "", "00000000000000000000000000000000"},
		{"a 400 KiB traceparent", headers{"Traceparent": valid + strings.Repeat("-", 400<<10)}, false, "", strings.Repeat("-", 200)},
		{"a valid traceparent with a 10 KiB tracestate", headers{"Traceparent": valid, "Tracestate": "k=" + big}, false, valid, big[:200]},
		{"a valid traceparent", headers{"Traceparent": valid}, false, valid, ""},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			email := "bounded" + string(rune('a'+i)) + "@example.com"
			r := a.do(t, "POST", "/v1/users", "", map[string]any{"email": email, "name": "B", "password": password}, tc.hdr)
			r.expect(t, http.StatusCreated)
			id := r.header.Get("X-Request-Id")
			if len(id) == 0 || len(id) > 128 || (tc.keepID != (id == tc.hdr["X-Request-Id"])) {
				t.Errorf("X-Request-Id %.40q (%d bytes); want the one sent: %v", id, len(id), tc.keepID)
			}
			var u userJSON
			r.into(t, &u)
			rows := a.outbox(t, u.ID)
			if len(rows) != 1 {
				t.Fatalf("%d outbox rows for the user, want 1", len(rows))
			}
			var env envelope
			testenv.Must(t, json.Unmarshal(rows[0].Payload, &env), "decode envelope")
			if env.CausationID != id || (env.CorrelationID != id && env.CorrelationID != tc.hdr["X-Correlation-Id"]) {
				t.Errorf("causation %.40q, correlation %.40q; want the request id %q", env.CausationID, env.CorrelationID, id)
			}
			if len(env.CorrelationID) > 128 {
				t.Errorf("correlation id of %d bytes in the event", len(env.CorrelationID))
			}
			if got := env.Trace["traceparent"]; got != tc.trace {
				t.Errorf("event traceparent %.80q, want %q", got, tc.trace)
			}
			if tc.mustNotLog != "" {
				if strings.Contains(string(rows[0].Payload), tc.mustNotLog) {
					t.Error("the header reached the event")
				}
				if strings.Contains(logs.String(), tc.mustNotLog) {
					t.Error("the header reached a log line")
				}
			}
		})
	}
	if !strings.Contains(logs.String(), `"request_id":"req-12345"`) {
		t.Error("no log line carries the usable request id: the check for logged headers could not fail")
	}
}

// TestStrictTransportSecurityWhenAsked: HSTS sends
// Strict-Transport-Security on every answer; without it, none is sent (an
// API reached over plain HTTP must not pin HTTPS on its host).
func TestStrictTransportSecurityWhenAsked(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		a := newAPIWith(t, func(c *httpapi.Config, _ *pgxpool.Pool) { c.HSTS = on })
		for _, path := range []string{"/healthz", "/v1/products", "/v1/nowhere"} {
			got := a.do(t, "GET", path, "", nil, nil).header.Get("Strict-Transport-Security")
			if (got != "") != on || (on && !strings.HasPrefix(got, "max-age=")) {
				t.Errorf("HSTS %v: GET %s answered Strict-Transport-Security %q", on, path, got)
			}
		}
	}
}

// TestARequestWithoutAnIDIsGivenAFreshOne: 32 hex digits, never the same
// twice.
func TestARequestWithoutAnIDIsGivenAFreshOne(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	seen := map[string]bool{}
	for range 100 {
		r := a.do(t, "GET", "/v1/products/x", "", nil, nil)
		r.expect(t, http.StatusNotFound)
		id := r.header.Get("X-Request-Id")
		if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
			t.Fatalf("X-Request-Id %q, want 32 hex digits", id)
		}
		if seen[id] {
			t.Fatalf("X-Request-Id %q given twice", id)
		}
		seen[id] = true
	}
}
