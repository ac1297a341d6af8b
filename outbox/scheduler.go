package outbox

import (
	"context"
	"sync"
	"time"

	"github.com/shopdev/shop/internal/retry"
)

// scheduler hands partitions that may have rows to the relay's workers,
// each partition to one worker at a time, in the order they were marked.
type scheduler struct {
	ready chan int // partitions queued for a worker; never blocks (cap Partitions)

	mu     sync.Mutex
	queued [Partitions]bool // in ready
	busy   [Partitions]bool // a worker has it
	again  [Partitions]bool // marked while busy
	held   [Partitions]bool // waiting out a retry delay
	strike [Partitions]int  // consecutive rounds that could not publish a row
}

func newScheduler() *scheduler {
	return &scheduler{ready: make(chan int, Partitions)}
}

// mark says partition p may have rows.
func (s *scheduler) mark(p int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.markLocked(p)
}

func (s *scheduler) markLocked(p int) {
	switch {
	case s.busy[p]:
		s.again[p] = true
	case s.queued[p], s.held[p]:
	default:
		s.queued[p] = true
		s.ready <- p
	}
}

// markAll marks every partition.
func (s *scheduler) markAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range Partitions {
		s.markLocked(p)
	}
}

// next waits for a marked partition, then for linger, and gives it to the
// caller together with every other partition marked by then, in the order
// they were marked;
// the caller must call done or retryLater for each when its round ends.
// Taking them all at once is what makes rounds big: while the rounds in
// flight wait for their confirms, the partitions that commits mark pile up
// for the next round instead of each starting a round of its own.
func (s *scheduler) next(ctx context.Context, linger time.Duration) ([]int, bool) {
	var parts []int
	select {
	case <-ctx.Done():
		return nil, false
	case p := <-s.ready:
		parts = append(parts, p)
	}
	if linger > 0 {
		retry.Sleep(ctx, linger)
	}
	for more := true; more; {
		select {
		case p := <-s.ready:
			parts = append(parts, p)
		default:
			more = false
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range parts {
		s.queued[p], s.busy[p], s.again[p] = false, true, false
	}
	return parts, true
}

// done ends a round; more says p may still have rows.
func (s *scheduler) done(p int, more bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy[p], s.strike[p] = false, 0
	if more || s.again[p] {
		s.markLocked(p)
	}
}

// retryLater ends a round that failed and marks p again after wait.
func (s *scheduler) retryLater(p int, wait time.Duration) {
	s.markLater(p, wait, true)
}

// markLater ends a round and marks p again after wait; strike says the
// round failed (retryLater).
func (s *scheduler) markLater(p int, wait time.Duration, strike bool) {
	s.mu.Lock()
	s.busy[p], s.held[p] = false, true
	if strike {
		s.strike[p]++
	}
	s.mu.Unlock()
	time.AfterFunc(wait, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.held[p] = false
		s.markLocked(p)
	})
}

// strikes returns how many rounds in a row p could not publish a row.
func (s *scheduler) strikes(p int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.strike[p]
}
