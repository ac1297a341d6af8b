package consumer_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/internal/retry"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// recorder is a slog handler that keeps every line it is given, with the
// attributes it was given by With, and counts the calls of With.
type recorder struct {
	level slog.Level
	attrs []slog.Attr
	state *recorded
}

type recorded struct {
	mu    sync.Mutex
	withs int
	lines []line
}

type line struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func newRecorder(level slog.Level) recorder { return recorder{level: level, state: &recorded{}} }

func (r recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= r.level }

func (r recorder) Handle(_ context.Context, rec slog.Record) error {
	l := line{level: rec.Level, msg: rec.Message, attrs: map[string]string{}}
	for _, a := range r.attrs {
		l.attrs[a.Key] = a.Value.String()
	}
	rec.Attrs(func(a slog.Attr) bool {
		l.attrs[a.Key] = a.Value.String()
		return true
	})
	r.state.mu.Lock()
	defer r.state.mu.Unlock()
	r.state.lines = append(r.state.lines, l)
	return nil
}

func (r recorder) WithAttrs(as []slog.Attr) slog.Handler {
	r.state.mu.Lock()
	r.state.withs++
	r.state.mu.Unlock()
	r.attrs = append(r.attrs[:len(r.attrs):len(r.attrs)], as...)
	return r
}

func (r recorder) WithGroup(string) slog.Handler { return r }

func (r recorder) snapshot() (withs int, lines []line) {
	r.state.mu.Lock()
	defer r.state.mu.Unlock()
	return r.state.withs, append([]line(nil), r.state.lines...)
}

// A delivery's lines name its event, and a delivery that writes no line
// formats none of its attributes: most deliveries log nothing at the usual
// levels, and formatting them cost a few percent of a group's CPU.
func TestEventLinesNameTheEventAndCostNothingWhenOff(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	broker := newBroker(t, testenv.AMQPURL(t))
	tests := []struct {
		name      string
		level     slog.Level
		failFirst bool     // the handler's dependency is unavailable once
		want      []string // the lines written, in order
	}{
		{"info, applied", slog.LevelInfo, false, nil},
		{"debug, applied", slog.LevelDebug, false, []string{"event applied"}},
		{"info, a dependency unavailable once", slog.LevelInfo, true, []string{"dependency unavailable; waiting"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(tt.level)
			var mu sync.Mutex
			calls := 0
			h := func(context.Context, *store.Tx, outbox.Envelope) error {
				mu.Lock()
				defer mu.Unlock()
				calls++
				if tt.failFirst && calls == 1 {
					return domain.ErrUnavailable
				}
				return nil
			}
			handlers := map[string]consumer.Handler{}
			for _, k := range group.Keys {
				handlers[k] = h
			}
			g, err := consumer.New(consumer.Config{
				Group:  consumer.Group{Name: group.Group, Keys: group.Keys, Handlers: handlers},
				Broker: broker, UnitOfWork: store.NewUnitOfWork(pool, nil), Logger: slog.New(rec),
				Backoff: retry.Backoff{Min: time.Millisecond, Max: 5 * time.Millisecond}, UnavailableFor: time.Minute,
			})
			testenv.Must(t, err, "new consumer group")
			env := envelope(t)
			applied, err := g.Apply(context.Background(), env)
			if err != nil || !applied {
				t.Fatalf("Apply = %v, %v; want applied", applied, err)
			}
			withs, lines := rec.snapshot()
			if len(lines) != len(tt.want) {
				t.Fatalf("%d lines written (%+v), want %q", len(lines), lines, tt.want)
			}
			for i, l := range lines {
				if l.msg != tt.want[i] || l.attrs["event_id"] != env.ID.String() || l.attrs["group"] != group.Group {
					t.Errorf("line %d: %q with %v; want %q naming event %s of group %s", i, l.msg, l.attrs, tt.want[i], env.ID, group.Group)
				}
			}
			if len(lines) == 0 && withs != 0 {
				t.Errorf("no line was written, yet With was called %d times", withs)
			}
		})
	}
}
