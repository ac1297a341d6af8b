package projections

import (
	"fmt"
	"testing"
	"time"
)

// The in-memory copies' rules, step by step on a fake clock: what a read
// keeps, what an announcement or a new subscription drops, what a read that
// an announcement overtook may not keep, and the bounds.
func TestMemoKeepsNothingOlderThanAnnounced(t *testing.T) {
	clock := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	type step struct {
		do   func(m *memo)
		key  string
		min  int64
		want int64 // the version get finds; 0: none
	}
	fill := func(key string, v int64) func(*memo) {
		return func(m *memo) { m.fill(key, m.reserve(key), v, v) }
	}
	tests := []struct {
		name         string
		max          int
		unsubscribed bool // the subscription to announcements is not made yet
		steps        []step
	}{
		{name: "nothing is kept before the subscription is made", max: 10, unsubscribed: true, steps: []step{
			{do: fill("p1", 3), key: "p1", want: 0},
		}},
		{name: "a new subscription drops every copy and voids the reads under way", max: 10, steps: []step{
			{do: func(m *memo) {
				fill("p1", 3)(m)
				ticket := m.reserve("p2") // a read of p2 at Redis while the connection is lost
				m.subscribed()
				m.fill("p2", ticket, 1, 1)
			}, key: "p1", want: 0},
			{key: "p2", want: 0},
			{do: fill("p1", 4), key: "p1", want: 4},
		}},
		{name: "a read is kept and serves", max: 10, steps: []step{
			{do: fill("p1", 3), key: "p1", want: 3},
			{key: "p1", min: 3, want: 3},
			{key: "p1", min: 4, want: 0},
		}},
		{name: "a newer announcement drops the copy", max: 10, steps: []step{
			{do: fill("p1", 3), key: "p1", want: 3},
			{do: func(m *memo) { m.announced("p1", 4) }, key: "p1", want: 0},
		}},
		{name: "an announcement of the same or an older version keeps it", max: 10, steps: []step{
			{do: fill("p1", 3), key: "p1", want: 3},
			{do: func(m *memo) { m.announced("p1", 3); m.announced("p1", 2) }, key: "p1", want: 3},
		}},
		{name: "a read overtaken by an announcement keeps nothing", max: 10, steps: []step{
			{do: func(m *memo) {
				ticket := m.reserve("p1")
				m.announced("p1", 5) // announced while the read was at Redis
				m.fill("p1", ticket, 4, 4)
			}, key: "p1", want: 0},
		}},
		{name: "of two reads under way, only the later fills", max: 10, steps: []step{
			{do: func(m *memo) {
				first, second := m.reserve("p1"), m.reserve("p1")
				m.fill("p1", second, 6, 6)
				m.fill("p1", first, 5, 5)
			}, key: "p1", want: 6},
		}},
		{name: "an older read does not replace a newer copy", max: 10, steps: []step{
			{do: fill("p1", 6), key: "p1", want: 6},
			{do: fill("p1", 5), key: "p1", want: 6},
		}},
		{name: "a copy expires", max: 10, steps: []step{
			{do: fill("p1", 1), key: "p1", want: 1},
			{do: func(*memo) { clock = clock.Add(time.Second) }, key: "p1", want: 0},
		}},
		{name: "at most max copies", max: 2, steps: []step{
			{do: func(m *memo) { fill("a", 1)(m); fill("b", 1)(m); fill("c", 1)(m) }, key: "c", want: 1},
			{do: func(m *memo) {
				if m.size() != 2 {
					t.Errorf("%d copies, want 2", m.size())
				}
			}, key: "c", want: 1},
		}},
		{name: "a read that found nothing leaves no reservation", max: 10, steps: []step{
			{do: func(m *memo) {
				m.release("p1", m.reserve("p1"))
				if len(m.filling) != 0 {
					t.Errorf("%d reservations left", len(m.filling))
				}
			}, key: "p1", want: 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMemo(tt.max, time.Second, now)
			if !tt.unsubscribed {
				m.subscribed()
			}
			for i, s := range tt.steps {
				if s.do != nil {
					s.do(m)
				}
				var got int64
				if e, ok := m.get(s.key, s.min); ok {
					got = e.version
					if string(e.json) != jsonOf(e.value) {
						t.Errorf("step %d: JSON %q, want %q", i, e.json, jsonOf(e.value))
					}
				}
				if got != s.want {
					t.Errorf("step %d: get(%s, min %d) found version %d, want %d", i, s.key, s.min, got, s.want)
				}
			}
		})
	}
}

func jsonOf(v any) string { return fmt.Sprintf("%d\n", v) }
