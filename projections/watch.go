package projections

import (
	"context"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Watcher lets readers wait until a model reaches a version, without
// polling: it holds one Pub/Sub subscription to the changes channel and
// wakes the waiters of a key when a change of it is announced.
type Watcher struct {
	s       *Store
	mu      sync.Mutex
	waiters map[string][]waiter
	heard   func(key string, version int64) // nil: nobody else listens
}

type waiter struct {
	min  int64
	done chan struct{}
}

// Watch starts a Watcher; it runs until ctx ends. A lost subscription is
// re-made by the client (which pings it when it is quiet, to find out); a
// change missed meanwhile only makes a waiter wait until its deadline.
func (s *Store) Watch(ctx context.Context) *Watcher {
	return s.watch(ctx, nil, nil)
}

// watch is Watch, with heard told of every announcement too, and
// subscribed called each time the subscription is made: the first time,
// and again after a lost connection, when announcements may have been
// missed.
func (s *Store) watch(ctx context.Context, heard func(key string, version int64), subscribed func()) *Watcher {
	w := &Watcher{s: s, waiters: map[string][]waiter{}, heard: heard}
	ps := s.rdb.Subscribe(ctx, s.ChangesChannel())
	go func() {
		defer ps.Close()
		ch := ps.ChannelWithSubscriptions()
		for {
			select {
			case <-ctx.Done():
				return
			case msg, ok := <-ch:
				if !ok {
					return
				}
				switch msg := msg.(type) {
				case *redis.Subscription:
					if subscribed != nil && msg.Kind == "subscribe" {
						subscribed()
					}
				case *redis.Message:
					key, v, found := strings.Cut(msg.Payload, " ")
					if version, err := strconv.ParseInt(v, 10, 64); found && err == nil {
						w.announce(key, version)
					}
				}
			}
		}
	}()
	return w
}

func (w *Watcher) announce(key string, version int64) {
	if w.heard != nil {
		w.heard(key, version)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	list := w.waiters[key][:0]
	for _, x := range w.waiters[key] {
		if version >= x.min {
			close(x.done)
		} else {
			list = append(list, x)
		}
	}
	if len(list) == 0 {
		delete(w.waiters, key)
	} else {
		w.waiters[key] = list
	}
}

// wait waits until the model at key has at least version min, or ctx
// ends; it reports whether the version was reached.
func (w *Watcher) wait(ctx context.Context, key string, min int64) (bool, error) {
	x := waiter{min: min, done: make(chan struct{})}
	w.mu.Lock()
	w.waiters[key] = append(w.waiters[key], x)
	w.mu.Unlock()
	defer w.forget(key, x.done)
	// Registered first, read second: a change between the two is not lost.
	v, err := w.s.rdb.HGet(ctx, key, "version").Int64()
	if err == nil && v >= min {
		return true, nil
	}
	select {
	case <-x.done:
		return true, nil
	case <-ctx.Done():
		return false, nil
	}
}

// waiting returns how many reads wait now.
func (w *Watcher) waiting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, list := range w.waiters {
		n += len(list)
	}
	return n
}

func (w *Watcher) forget(key string, done chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	list := w.waiters[key]
	for i, x := range list {
		if x.done == done {
			w.waiters[key] = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(w.waiters[key]) == 0 {
		delete(w.waiters, key)
	}
}
