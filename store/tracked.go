package store

import (
	"context"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
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

// held returns those of ids that the transaction holds and that exist.
func (t *tracked[A]) held(ids []uuid.UUID) map[uuid.UUID]A {
	out := make(map[uuid.UUID]A, len(ids))
	for _, id := range ids {
		if a, found, _ := t.get(id); found {
			out[id] = a
		}
	}
	return out
}

// queueLock queues, in tx, the locking read (sql, of the ids in $1; or a
// plain read, for a tracked that is never written back) of those
// of ids that t has not looked for yet; once it is sent, t holds what it
// found, restored from its scanned state, and knows the rest are absent.
func queueLock[S any, A versioned](tx *Tx, t *tracked[A], ids []uuid.UUID, sql string,
	scan pgx.RowToFunc[S], idOf func(S) uuid.UUID, restore func(S) A) {
	missing := t.missing(ids)
	if len(missing) == 0 {
		return
	}
	tx.queueRead(func(rows pgx.Rows) error {
		list, err := pgx.CollectRows(rows, scan)
		if err != nil {
			return err
		}
		for _, st := range list {
			t.hold(idOf(st), restore(st))
		}
		for _, id := range t.missing(missing) {
			t.absent(id)
		}
		return nil
	}, sql, missing)
}

// getForUpdate is the GetForUpdate of a store whose LockMany is lock: the
// aggregate id, locked, or notFound.
func getForUpdate[A any](ctx context.Context, id uuid.UUID,
	lock func(context.Context, []uuid.UUID) (map[uuid.UUID]A, error), notFound error) (A, error) {
	found, err := lock(ctx, []uuid.UUID{id})
	a, ok := found[id]
	switch {
	case err != nil:
		return a, err
	case !ok:
		return a, notFound
	}
	return a, nil
}
