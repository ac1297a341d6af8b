// Package logctx carries log attributes in a context: the consumer runtime
// puts the ids of the event being applied there (event_id, event_type,
// correlation_id, causation_id), and whatever logs on the event's behalf
// (the log mailer, say) adds them to its lines.
package logctx

import (
	"context"
	"log/slog"
)

type key struct{}

// With returns ctx carrying attrs (slog key-value pairs) after those it
// carries already.
func With(ctx context.Context, attrs ...any) context.Context {
	prev, _ := ctx.Value(key{}).([]any)
	return context.WithValue(ctx, key{}, append(prev[:len(prev):len(prev)], attrs...))
}

// Logger returns base with the attributes of ctx; base itself when ctx
// carries none.
func Logger(ctx context.Context, base *slog.Logger) *slog.Logger {
	if attrs, ok := ctx.Value(key{}).([]any); ok {
		return base.With(attrs...)
	}
	return base
}
