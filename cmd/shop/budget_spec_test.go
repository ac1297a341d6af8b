package main_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// fakeTest is a test as the budget sees it: a name, a context that ends
// with it, and cleanups that end runs.
type fakeTest struct {
	name     string
	ctx      context.Context
	cancel   context.CancelFunc
	cleanups []func()
}

func newFakeTest(name string) *fakeTest {
	ctx, cancel := context.WithCancel(context.Background())
	return &fakeTest{name: name, ctx: ctx, cancel: cancel}
}

func (f *fakeTest) Helper()                      {}
func (f *fakeTest) Name() string                 { return f.name }
func (f *fakeTest) Context() context.Context     { return f.ctx }
func (f *fakeTest) Cleanup(fn func())            { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTest) Logf(format string, a ...any) { _ = fmt.Sprintf(format, a...) }
func (f *fakeTest) end() {
	f.cancel()
	for _, fn := range slices.Backward(f.cleanups) {
		fn()
	}
}

// inBackground runs fn and returns a channel closed when it returns.
func inBackground(fn func()) <-chan struct{} {
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	return done
}

func returned(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// TestConnBudgetSharesPostgresAmongTests: the budget that lets this
// package's systems take turns lets a test in only when its share is free,
// never leaves two tests waiting on each other, and never stops a test
// that runs alone.
func TestConnBudgetSharesPostgresAmongTests(t *testing.T) {
	t.Run("a test that holds none waits until its share is given back", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := &connBudget{size: 10}
			a, c := newFakeTest("A"), newFakeTest("C")
			b.reserve(a, 8)
			done := inBackground(func() { b.reserve(c, 5) })
			synctest.Wait()
			if returned(done) {
				t.Fatal("C took 5 of the 2 left")
			}
			time.Sleep(time.Hour)
			synctest.Wait()
			if returned(done) {
				t.Fatal("C stopped waiting before A gave its share back")
			}
			a.end()
			synctest.Wait()
			if !returned(done) {
				t.Fatal("C still waits once A gave its share back")
			}
			c.end()
		})
	})
	t.Run("a test that holds some waits a while, then goes over", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := &connBudget{size: 12}
			a, c := newFakeTest("A"), newFakeTest("C")
			b.reserve(a, 6)
			b.reserve(c, 4)
			done := inBackground(func() { b.take(c, 9) }) // 5 beyond its reservation, 2 free
			time.Sleep(holderWait - time.Second)
			synctest.Wait()
			if returned(done) {
				t.Fatal("C went over before holderWait")
			}
			newcomer := newFakeTest("D")
			behind := inBackground(func() { b.reserve(newcomer, 1) })
			synctest.Wait()
			if returned(behind) {
				t.Fatal("D, which holds none, went ahead of C, which holds some and waits")
			}
			time.Sleep(2 * time.Second)
			synctest.Wait()
			if !returned(done) {
				t.Fatal("C still waits after holderWait: two holders could wait on each other forever")
			}
			if b.free != -3 {
				t.Fatalf("free = %d after C went over by 3, want -3", b.free)
			}
			if returned(behind) {
				t.Fatal("D went in with the budget overdrawn")
			}
			a.end()
			c.end()
			synctest.Wait()
			if !returned(behind) {
				t.Fatal("D still waits with the whole budget free")
			}
			newcomer.end()
			if b.free != 12 {
				t.Fatalf("free = %d once every test ended, want the whole budget (12)", b.free)
			}
		})
	})
	t.Run("a test alone goes ahead beyond the budget", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := &connBudget{size: 10}
			a := newFakeTest("A")
			done := inBackground(func() { b.reserve(a, 30) })
			synctest.Wait()
			if !returned(done) {
				t.Fatal("a test alone waits for 30 of a budget of 10: it would wait forever")
			}
			a.end()
		})
	})
	t.Run("a subtest of a test that holds some is a holder", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := &connBudget{size: 10}
			parent, other := newFakeTest("P"), newFakeTest("O")
			b.reserve(parent, 5)
			b.reserve(other, 5)
			sub := newFakeTest("P/layout")
			done := inBackground(func() { b.take(sub, 3) })
			time.Sleep(holderWait + time.Second)
			synctest.Wait()
			if !returned(done) {
				t.Fatal("a subtest waits for a budget its parent holds part of, past holderWait")
			}
			for _, f := range []*fakeTest{sub, other, parent} {
				f.end()
			}
		})
	})
}
