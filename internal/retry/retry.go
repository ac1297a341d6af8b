// Package retry owns waiting between attempts: the exponential backoff
// that every reconnecting loop of shop uses (the relay's, the consumers',
// the notifications'), and a sleep that ends early with its context.
package retry

import (
	"context"
	"time"
)

// Backoff is an exponential delay: Min for the first retry, doubling up to
// Max.
type Backoff struct {
	Min, Max time.Duration
}

// Delay returns the wait before retry number attempt (0 for the first).
func (b Backoff) Delay(attempt int) time.Duration {
	d := b.Min
	for i := 0; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// Sleep waits for d or until ctx ends, and reports whether it waited the
// whole time.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
