package main_test

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopdev/shop/internal/testenv"
)

// pgConns shares Postgres's connections among this package's tests, which
// start whole systems of shop processes, each with pools of its own: four
// such tests at once (-parallel 4), beside another package's tests (go test
// -p), would take more than the 100 connections a default Postgres allows,
// and a refused connection fails a test that has nothing to do with it.
var pgConns = &connBudget{}

// otherPackagesConns is what is left to the tests of the other packages,
// which run beside these: the most they held at once, measured (37), with
// room.
const otherPackagesConns = 40

// connBudget hands out Postgres connections to tests. A test reserves what
// it expects to hold (reserve: a harness pool and the system it starts),
// and takes, for each process it starts, what that process's pools may
// open (take): beyond its reservation, that reserves more. All of it comes
// back when the test ends. A test that holds none waits until its share is
// free (or no test holds any) and no test that holds some is waiting; one that already holds some
// waits for at most holderWait, then takes it anyway: two tests each
// holding part of the budget and waiting for more must not wait for each
// other forever.
type connBudget struct {
	size     int // 0: Postgres's max_connections less otherPackagesConns
	once     sync.Once
	mu       sync.Mutex
	cond     *sync.Cond
	free     int            // may go below zero: what holders took beyond the budget
	reserved map[string]int // by test name
	used     map[string]int // by test name: what its processes and pools took
	// holdersWaiting counts the waiting tests that hold connections already.
	holdersWaiting int
}

const holderWait = 10 * time.Second

// budgetUser is what the budget needs of a test: *testing.T.
type budgetUser interface {
	Helper()
	Name() string
	Context() context.Context
	Cleanup(func())
	Logf(format string, args ...any)
}

// init sizes the budget: size, or from the server's max_connections.
func (b *connBudget) init() {
	b.once.Do(func() {
		b.cond = sync.NewCond(&b.mu)
		b.reserved, b.used = map[string]int{}, map[string]int{}
		if b.size > 0 {
			b.free = b.size
			return
		}
		b.free = 100 - otherPackagesConns
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, testenv.ServerURL())
		if err != nil {
			return // the first test to use Postgres says why
		}
		defer conn.Close(ctx)
		var max int
		if conn.QueryRow(ctx, `SELECT current_setting('max_connections')::int`).Scan(&max) == nil {
			b.free = max - otherPackagesConns
		}
	})
}

// reserve sets aside n more connections for t, beyond its reservation,
// until t ends.
func (b *connBudget) reserve(t budgetUser, n int) {
	t.Helper()
	b.init()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.grow(t, max(b.reserved[t.Name()], b.used[t.Name()])+n)
}

// take counts n connections as used by t: from its reservation, or beyond
// it.
func (b *connBudget) take(t budgetUser, n int) {
	t.Helper()
	b.init()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used[t.Name()] += n
	b.grow(t, b.used[t.Name()])
}

// grow raises t's reservation to total, waiting as the type says.
func (b *connBudget) grow(t budgetUser, total int) {
	t.Helper()
	name := t.Name()
	n := total - b.reserved[name]
	if n <= 0 {
		return
	}
	holder := b.holds(name)
	start := time.Now()
	if holder {
		b.holdersWaiting++
		stop := context.AfterFunc(t.Context(), b.wake)
		timer := time.AfterFunc(holderWait, b.wake)
		for b.free < n && time.Since(start) < holderWait && t.Context().Err() == nil {
			b.cond.Wait()
		}
		timer.Stop()
		stop()
		b.holdersWaiting--
		b.cond.Broadcast()
	} else {
		stop := context.AfterFunc(t.Context(), b.wake)
		// Alone, a test goes ahead even beyond the budget: a smaller
		// max_connections than the tests' makes them run one at a time.
		for ((b.free < n && len(b.reserved) > 0) || b.holdersWaiting > 0) && t.Context().Err() == nil {
			b.cond.Wait()
		}
		stop()
	}
	if waited := time.Since(start); waited > time.Second {
		t.Logf("waited %v for %d Postgres connections (%d free)", waited.Round(time.Millisecond), n, b.free)
	}
	if _, ok := b.reserved[name]; !ok {
		t.Cleanup(func() { b.giveBack(name) })
	}
	b.free -= n
	b.reserved[name] += n
}

// holds reports whether the test called name, or one of its parents,
// holds connections.
func (b *connBudget) holds(name string) bool {
	for {
		if b.reserved[name] > 0 {
			return true
		}
		i := strings.LastIndex(name, "/")
		if i < 0 {
			return false
		}
		name = name[:i]
	}
}

// wake makes every waiting test check again.
func (b *connBudget) wake() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cond.Broadcast()
}

func (b *connBudget) giveBack(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free += b.reserved[name]
	delete(b.reserved, name)
	delete(b.used, name)
	b.cond.Broadcast()
}
