package projections

import (
	"encoding/json"
	"sync"
	"time"
)

// memo is a Reader's copy, in its own memory, of the models it read from
// Redis lately, each with its JSON encoded once: a hot product is read
// from Redis and encoded once per change, not once per request.
//
// It is kept right by the projector's announcements, which the Reader
// already follows for min_version: an announced version newer than a
// copy's drops the copy, and a read of Redis that an announcement overtook
// keeps nothing (a copy is only filled by the read that reserved it, if no
// announcement of its key came in between). So a read never answers a
// version older than one the Reader has been told of. Announcements travel
// over Redis pub/sub, which loses what is sent while the subscription is
// down: copies are kept only once the subscription is made, and every
// copy is dropped each time it is made again (subscribed). A copy is also
// dropped ttl after it was made, the bound for an announcement lost some
// other way.
type memo struct {
	max int
	ttl time.Duration
	now func() time.Time

	mu      sync.RWMutex
	live    bool // the subscription was made: copies may be kept
	entries map[string]*memoEntry
	filling map[string]uint64 // key → the ticket of the read that may fill it
	ticket  uint64
}

type memoEntry struct {
	version int64
	value   any
	json    []byte
	expires time.Time
}

func newMemo(max int, ttl time.Duration, now func() time.Time) *memo {
	return &memo{max: max, ttl: ttl, now: now, entries: map[string]*memoEntry{}, filling: map[string]uint64{}}
}

// get returns the copy of key, if there is one that is fresh and at least
// at version min.
func (m *memo) get(key string, min int64) (*memoEntry, bool) {
	m.mu.RLock()
	e, ok := m.entries[key]
	m.mu.RUnlock()
	if !ok || e.version < min || !m.now().Before(e.expires) {
		return nil, false
	}
	return e, true
}

// reserve is called before key is read from Redis: the ticket it returns
// lets fill keep what the read found, unless an announcement of key comes
// first.
func (m *memo) reserve(key string) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ticket++
	m.filling[key] = m.ticket
	return m.ticket
}

// fill keeps value, read from Redis at version, as key's copy, if the
// ticket still holds and no newer copy is there; it returns the copy's
// JSON, or nil when it kept nothing (the caller encodes its own answer).
func (m *memo) fill(key string, ticket uint64, version int64, value any) []byte {
	raw, err := json.Marshal(value)
	if err != nil {
		return nil
	}
	raw = append(raw, '\n') // as echo's c.JSON ends its bodies
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.live || m.filling[key] != ticket {
		return raw // not subscribed, or overtaken by an announcement or a later read: answer, keep nothing
	}
	delete(m.filling, key)
	if e, ok := m.entries[key]; ok && e.version > version {
		return raw
	}
	if _, ok := m.entries[key]; !ok && len(m.entries) >= m.max {
		for k := range m.entries { // an arbitrary one: map order is random
			delete(m.entries, k)
			break
		}
	}
	m.entries[key] = &memoEntry{version: version, value: value, json: raw, expires: m.now().Add(m.ttl)}
	return raw
}

// release ends a read of key that filled nothing (a miss, an error).
func (m *memo) release(key string, ticket uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.filling[key] == ticket {
		delete(m.filling, key)
	}
}

// announced drops key's copy if it is older than version, and voids the
// reads of key under way.
func (m *memo) announced(key string, version int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.filling, key)
	if e, ok := m.entries[key]; ok && e.version < version {
		delete(m.entries, key)
	}
}

// subscribed is called each time the subscription to the announcements
// is made, the first time and after each lost connection: whatever was
// announced while it was down is lost, so every copy goes and the reads
// under way keep nothing.
func (m *memo) subscribed() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.live = true
	clear(m.entries)
	clear(m.filling)
}

// size returns how many copies are kept.
func (m *memo) size() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.entries)
}
