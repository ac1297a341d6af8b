package testenv

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
)

// Logs collects what a logger writes, from any number of goroutines, for a
// test to read back: give it to slog.NewJSONHandler.
type Logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything written so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Lines returns the JSON lines written so far, decoded; a line that is not
// JSON fails the test.
func (l *Logs) Lines(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for raw := range strings.Lines(l.String()) {
		if raw = strings.TrimSpace(raw); raw == "" {
			continue
		}
		var line map[string]any
		Must(t, json.Unmarshal([]byte(raw), &line), "decode log line "+raw)
		out = append(out, line)
	}
	return out
}

// Line returns the first JSON line written with message msg.
func (l *Logs) Line(t testing.TB, msg string) (map[string]any, bool) {
	t.Helper()
	for _, line := range l.Lines(t) {
		if line["msg"] == msg {
			return line, true
		}
	}
	return nil, false
}
