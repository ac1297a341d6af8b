package logctx_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/shopdev/shop/internal/logctx"
)

func TestLoggerAddsTheContextsAttributes(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	base := slog.New(slog.NewTextHandler(&buf, nil))
	ctx := logctx.With(context.Background(), "event_id", "e1")
	ctx = logctx.With(ctx, "group", "emails")
	logctx.Logger(ctx, base).Info("email")
	logctx.Logger(context.Background(), base).Info("plain")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("logged %q", buf.String())
	}
	if !strings.Contains(lines[0], "event_id=e1") || !strings.Contains(lines[0], "group=emails") {
		t.Errorf("the line logged in the event's context lacks its attributes: %s", lines[0])
	}
	if strings.Contains(lines[1], "event_id") {
		t.Errorf("a line logged outside any event has event attributes: %s", lines[1])
	}
}
