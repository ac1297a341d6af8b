package main_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestProfilesOnlyOnTheOpsPortWhenAsked: with PPROF=true, a process's
// METRICS_ADDR serves Go's profiles, and the API's own port still serves
// none.
// (Without PPROF, TestRelayServesOpsAndStopsOnSIGTERM checks that none are
// served.)
func TestProfilesOnlyOnTheOpsPortWhenAsked(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": freshDatabaseURL(t), "HTTP_ADDR": "127.0.0.1:0", "JWT_SECRET": strings.Repeat("s", 32),
		"PPROF": "true"}
	if _, stderr, code := shop(t, env, "migrate"); code != 0 {
		t.Fatalf("migrate: %s", stderr)
	}
	api, addrs := startListening(t, env, "api")
	ops := "http://" + addrs["ops"]

	for _, tc := range []struct{ path, want string }{
		{"/debug/pprof/", "goroutine"},
		{"/debug/pprof/heap?debug=1", "heap profile"},
		{"/debug/pprof/cmdline", "shop"},
		{"/metrics", "go_goroutines"}, // and what the port served before
	} {
		status, body := get(t, ops+tc.path)
		if status != http.StatusOK || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s on METRICS_ADDR = %d, want 200 with %q:\n%.300s", tc.path, status, tc.want, body)
		}
	}
	if status := statusOf(t, "http://"+addrs["api"]+"/debug/pprof/"); status != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/ on the API's port = %d, want 404", status)
	}

	// A CPU profile: what `go tool pprof` reads, gzipped.
	status, body := get(t, ops+"/debug/pprof/profile?seconds=1")
	if status != http.StatusOK || !strings.HasPrefix(body, "\x1f\x8b") {
		t.Errorf("GET /debug/pprof/profile?seconds=1 = %d, want 200 with a gzipped profile (%d bytes)", status, len(body))
	}
	stop(t, api)
}

// get returns the status and body of a GET of url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read the answer to GET %s: %v", url, err)
	}
	return res.StatusCode, string(body)
}

// statusOf returns the status of a GET of url.
func statusOf(t *testing.T, url string) int {
	t.Helper()
	status, _ := get(t, url)
	return status
}
