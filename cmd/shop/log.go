package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/shopdev/shop/internal/telemetry"
)

// parseLevel reads LOG_LEVEL.
func parseLevel(level string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return l, fmt.Errorf("LOG_LEVEL must be debug, info, warn or error, not %q", level)
	}
	return l, nil
}

// newLogger writes to w: human-readable text when format is "text", or
// "auto" and w is a terminal; JSON lines otherwise. Durations read as
// durations ("1.5s"), not as nanoseconds.
func newLogger(w io.Writer, s logSection) *slog.Logger {
	level, _ := parseLevel(s.Level) // validated with the configuration
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Value.Kind() == slog.KindDuration {
			return slog.String(a.Key, a.Value.Duration().String())
		}
		return a
	}}
	// A line logged with the context of a span carries its trace_id and
	// span_id.
	if s.Format == "text" || (s.Format == "auto" && isTerminal(w)) {
		return slog.New(telemetry.LogHandler(slog.NewTextHandler(w, opts)))
	}
	return slog.New(telemetry.LogHandler(slog.NewJSONHandler(w, opts)))
}

// isTerminal reports whether w is a character device: a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
