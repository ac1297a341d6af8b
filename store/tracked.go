package store

import (
	"slices"

	"github.com/google/uuid"
)

// versioned is an aggregate with a version that every change raises.
type versioned interface{ Version() int64 }

// tracked remembers the aggregates of one kind that a transaction locked or
// added, each with the version it had then, so that at commit the
// transaction writes back every one that changed, once, at that version:
// use cases change aggregates and never say which version they loaded.
// It also remembers which ids it looked for and did not find, so that a
// batch that locked what its events need reads nothing twice.
type tracked[A versioned] struct {
	entries map[uuid.UUID]*entry[A]
}

type entry[A versioned] struct {
	agg     A
	found   bool  // false: locked for, and not there
	version int64 // when loaded or added
}

// get returns what the transaction holds of id: known says whether it
// looked for it already, found whether it exists.
func (t *tracked[A]) get(id uuid.UUID) (agg A, found, known bool) {
	e, ok := t.entries[id]
	if !ok {
		return agg, false, false
	}
	return e.agg, e.found, true
}

// hold remembers agg, loaded or added at its current version.
func (t *tracked[A]) hold(id uuid.UUID, agg A) {
	if t.entries == nil {
		t.entries = map[uuid.UUID]*entry[A]{}
	}
	t.entries[id] = &entry[A]{agg: agg, found: true, version: agg.Version()}
}

// absent remembers that id was locked for and not found.
func (t *tracked[A]) absent(id uuid.UUID) {
	if t.entries == nil {
		t.entries = map[uuid.UUID]*entry[A]{}
	}
	t.entries[id] = &entry[A]{}
}

// missing returns the ids of ids the transaction has not looked for yet,
// each once.
func (t *tracked[A]) missing(ids []uuid.UUID) []uuid.UUID {
	var out []uuid.UUID
	for _, id := range ids {
		if _, ok := t.entries[id]; !ok && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// changed calls save for every aggregate whose version moved since it was
// loaded or added, in id order, with the version it had then.
func (t *tracked[A]) changed(save func(agg A, loadedVersion int64)) {
	ids := make([]uuid.UUID, 0, len(t.entries))
	for id, e := range t.entries {
		if e.found && e.agg.Version() != e.version {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	for _, id := range ids {
		e := t.entries[id]
		save(e.agg, e.version)
		e.version = e.agg.Version()
	}
}
