package consumer_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/shopdev/shop/consumer"
)

func TestRouterLoggerWritesWhatTheLevelAllows(t *testing.T) {
	t.Parallel()
	calls := map[string]func(watermill.LoggerAdapter){
		"trace": func(l watermill.LoggerAdapter) { l.Trace("a trace line", watermill.LogFields{"message_uuid": "m1"}) },
		"debug": func(l watermill.LoggerAdapter) { l.Debug("a debug line", watermill.LogFields{"message_uuid": "m1"}) },
		// The library's Info is its per-subscription chatter: shop logs it at debug.
		"info":  func(l watermill.LoggerAdapter) { l.Info("an info line", watermill.LogFields{"topic": "shop.orders"}) },
		"error": func(l watermill.LoggerAdapter) { l.Error("an error line", errors.New("boom"), nil) },
	}
	tests := []struct {
		level slog.Level
		want  map[string]bool // call → written
	}{
		{watermill.LevelTrace, map[string]bool{"trace": true, "debug": true, "info": true, "error": true}},
		{slog.LevelDebug, map[string]bool{"trace": false, "debug": true, "info": true, "error": true}},
		{slog.LevelInfo, map[string]bool{"trace": false, "debug": false, "info": false, "error": true}},
		{slog.LevelError, map[string]bool{"trace": false, "debug": false, "info": false, "error": true}},
	}
	for _, tt := range tests {
		for call, want := range tt.want {
			t.Run(tt.level.String()+"/"+call, func(t *testing.T) {
				t.Parallel()
				var out bytes.Buffer
				log := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: tt.level}))
				// With keeps the gate: the router adds fields to its logger.
				calls[call](consumer.RouterLogger(log).With(watermill.LogFields{"handler_name": "orders"}))
				if written := out.Len() > 0; written != want {
					t.Fatalf("at %s, %s wrote %q, want written = %v", tt.level, call, out.String(), want)
				}
				if want && !strings.Contains(out.String(), `"handler_name":"orders"`) {
					t.Errorf("at %s, %s lost the fields added with With: %s", tt.level, call, out.String())
				}
			})
		}
	}
}

// BenchmarkRouterLoggerTraceOff measures what a router's trace call costs
// when trace is off, as it is unless LOG_LEVEL asks for it: the router
// makes such calls for every delivery.
//
//	go test -run '^$' -bench RouterLoggerTraceOff -benchmem ./consumer/
func BenchmarkRouterLoggerTraceOff(b *testing.B) {
	log := slog.New(slog.NewJSONHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	for _, tt := range []struct {
		name   string
		logger watermill.LoggerAdapter
	}{
		{"adapter=watermill", watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})},
		{"adapter=gated", consumer.RouterLogger(log)},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			fields := watermill.LogFields{"message_uuid": "0193a5c0-7b1e-7c2d-9f00-000000000000", "topic": "shop.orders", "handler": "orders"}
			for b.Loop() {
				tt.logger.Trace("Received message", fields)
			}
		})
	}
}
