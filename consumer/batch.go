package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// batchLockWait bounds how long a batch's transaction waits for a row lock.
// A batch locks rows in the order its events came in, so two batches (of
// two replicas) can deadlock; past this wait the batch gives up and its
// events are applied one at a time, each in the order its handler locks.
const batchLockWait = 100 * time.Millisecond

// errAlone tells a delivery that its batch did not commit (or that it came
// alone): it must be applied in a transaction of its own.
var errAlone = errors.New("apply alone")

// job is one delivery waiting to be applied in a batch.
type job struct {
	ctx     context.Context // the delivery's: its log attributes and outbox metadata
	log     eventLog        // with the event's ids
	env     outbox.Envelope
	h       Handler
	done    chan struct{} // closed when applied and err are set
	applied bool
	err     error
}

// batcher gathers deliveries into transactions (group commit): each of its
// committers waits for a delivery, takes with it every other delivery
// waiting at that moment, up to max, and applies them in one transaction.
// Those that come while all committers are busy wait and share the next
// transaction. With a gather time, a committer that finds no other
// delivery waiting waits that long for one more, again after each that
// comes: a relay round's deliveries reach a group one by one, and without
// it the first would go alone and the rest in a second transaction.
type batcher struct {
	max    int
	gather time.Duration // 0: a delivery that finds a committer free starts at once
	apply  func([]*job)  // sets applied and err of every job
	jobs   chan *job     // unbuffered: a waiting delivery is a blocked sender
	stop   chan struct{} // closed when the committers have stopped
}

// newBatcher starts committers that run until ctx ends. Deliveries still
// handed over after that are applied alone.
func newBatcher(ctx context.Context, committers, max int, gather time.Duration, apply func([]*job)) *batcher {
	b := &batcher{max: max, gather: gather, apply: apply, jobs: make(chan *job), stop: make(chan struct{})}
	var wg sync.WaitGroup
	for range committers {
		wg.Go(func() { b.commit(ctx) })
	}
	go func() { wg.Wait(); close(b.stop) }()
	return b
}

func (b *batcher) commit(ctx context.Context) {
	batch := make([]*job, 0, b.max)
	var quiet *time.Timer // the gather time, stopped between waits
	if b.gather > 0 {
		quiet = time.NewTimer(b.gather)
		quiet.Stop()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-b.jobs:
			batch = append(batch[:0], j)
		}
		for len(batch) < b.max {
			j := b.next(quiet)
			if j == nil {
				break
			}
			batch = append(batch, j)
		}
		b.apply(batch)
		for _, j := range batch {
			close(j.done)
		}
	}
}

// next returns a delivery waiting to join the batch, or the first that
// comes within the gather time (quiet, nil without one); nil if none.
func (b *batcher) next(quiet *time.Timer) *job {
	select {
	case j := <-b.jobs:
		return j
	default:
	}
	if quiet == nil {
		return nil
	}
	quiet.Reset(b.gather)
	defer quiet.Stop()
	select {
	case j := <-b.jobs:
		return j
	case <-quiet.C:
		return nil
	}
}

// do applies j, alone or with others, and returns when it is done.
func (b *batcher) do(j *job) {
	j.done = make(chan struct{})
	select {
	case b.jobs <- j:
		<-j.done
	case <-b.stop:
		j.err = errAlone
	}
}

// applyBatch applies every job of batch in one transaction: one statement
// claims their inbox rows, the group's prefetches lock what the new events
// need, then each new event is applied in order by its type's handler,
// what it causes tagged with its own metadata (or all of them by the
// group's HandleEach, which takes out only the events it failed). If
// anything else fails (a handler's error, a lock waited on too long,
// Postgres), nothing is committed and every job is told to go alone
// (errAlone), where the usual retries and dead-queue rules apply to each
// on its own. A batch
// of one is applied as a delivery without batches is, once, in the
// committer: the deliveries that arrive meanwhile wait for it, and form the
// next batch. A Project group's batch goes to projectBatch.
func (g *Runner) applyBatch(batch []*job) {
	if len(batch) == 1 {
		j := batch[0]
		defer func() {
			if r := recover(); r != nil { // the job panics again alone, under the router's Recoverer
				j.applied, j.err = false, errAlone
			}
		}()
		j.applied, j.err = g.apply(j.ctx, j.log, j.h, j.env)
		return
	}
	if g.cfg.Group.Project != nil {
		g.projectBatch(batch)
		return
	}
	ids := make([]uuid.UUID, len(batch))
	for i, j := range batch {
		ids[i] = j.env.ID
	}
	var applied, out []bool // out: taken out of the batch by HandleEach
	// Deliveries cut short by shutdown still finish their batch.
	bctx, end := g.traceBatch(context.WithoutCancel(batch[0].ctx), batch)
	err := g.cfg.UnitOfWork.Do(bctx, func(ctx context.Context, tx *store.Tx) (err error) {
		defer func() {
			if r := recover(); r != nil { // the job panics again alone, under the router's Recoverer
				err = fmt.Errorf("handler panicked: %v", r)
			}
		}()
		tx.LimitLockWait(batchLockWait)
		first, err := g.claim(ctx, tx, batch, ids)
		if err != nil {
			return err
		}
		if g.cfg.Group.HandleEach != nil {
			taken, err := g.handleEach(tx, batch, first)
			if err != nil {
				return err
			}
			out = taken
			applied = first
			return nil
		}
		for i, j := range batch {
			if !first[i] {
				continue // a duplicate
			}
			tx.Tag(outbox.MetadataFrom(j.ctx))
			if err := j.h(context.WithoutCancel(j.ctx), tx, j.env); err != nil {
				return fmt.Errorf("apply %s %s: %w", j.env.Type, j.env.ID, err)
			}
		}
		applied = first
		return nil
	})
	end(err)
	g.cfg.Metrics.Batch.WithLabelValues(g.cfg.Group.Name, batchOutcome(err)).Observe(float64(len(batch)))
	if err != nil {
		// Handled here: each job is applied again alone, where its own
		// error, if any, is reported once.
		g.cfg.Logger.Debug("batch not committed; applying its events one at a time",
			"group", g.cfg.Group.Name, "events", len(batch), "error", err.Error())
		for _, j := range batch {
			j.applied, j.err = false, errAlone
		}
		return
	}
	for i, j := range batch {
		if out != nil && out[i] {
			j.applied, j.err = false, errAlone
			continue
		}
		j.applied, j.err = applied[i], nil
	}
}

// handleEach applies the new events of batch (first) with the group's
// HandleEach, and releases the inbox claims of those it failed: it
// reports which it took out of the batch, to be applied again alone.
func (g *Runner) handleEach(tx *store.Tx, batch []*job, first []bool) ([]bool, error) {
	var events []Event
	var of []int // the job of each event
	for i, j := range batch {
		if first[i] {
			events = append(events, Event{Ctx: context.WithoutCancel(j.ctx), Env: j.env})
			of = append(of, i)
		}
	}
	if len(events) == 0 {
		return nil, nil
	}
	errs := g.cfg.Group.HandleEach(tx, events)
	if len(errs) != len(events) {
		return nil, fmt.Errorf("apply %d events: %d results", len(events), len(errs))
	}
	out := make([]bool, len(batch))
	var released []uuid.UUID
	for k, err := range errs {
		if err != nil {
			out[of[k]] = true
			released = append(released, events[k].Env.ID)
		}
	}
	if len(released) > 0 {
		tx.Inbox.Release(g.cfg.Group.Name, released...)
	}
	return out, nil
}

// claim claims the inbox rows of jobs (ids, their events' ids) and runs
// the prefetches of all of them in one round trip, and reports which this
// transaction is the first to apply. A duplicate's rows are locked too:
// duplicates are rare, and waiting for the claim's answer before the
// prefetches would cost every transaction a round trip.
func (g *Runner) claim(ctx context.Context, tx *store.Tx, jobs []*job, ids []uuid.UUID) ([]bool, error) {
	claim := tx.Inbox.Queue(g.cfg.Group.Name, ids...)
	if err := g.prefetch(ctx, tx, jobs); err != nil {
		return nil, err
	}
	if err := tx.Flush(ctx); err != nil { // no prefetch sent the claim
		return nil, fmt.Errorf("claim %d events: %w", len(ids), err)
	}
	return claim.First()
}

// prefetch runs, for each event type of jobs that has a Prefetch, the
// prefetch of all its events, in the order the types first appear: each
// event's handler then finds what it locks in tx.
func (g *Runner) prefetch(ctx context.Context, tx *store.Tx, jobs []*job) error {
	var types []string
	byType := map[string][]outbox.Envelope{}
	for _, j := range jobs {
		if g.cfg.Group.Prefetch[j.env.Type] == nil {
			continue
		}
		if _, ok := byType[j.env.Type]; !ok {
			types = append(types, j.env.Type)
		}
		byType[j.env.Type] = append(byType[j.env.Type], j.env)
	}
	for _, typ := range types {
		if err := g.cfg.Group.Prefetch[typ](ctx, tx, byType[typ]); err != nil {
			return fmt.Errorf("prefetch %d %s events: %w", len(byType[typ]), typ, err)
		}
	}
	return nil
}

// projectBatch applies a batch of a Project group with ProjectEach, in one
// round trip: the jobs whose event failed (and all of them if ProjectEach
// panics) are applied again alone, where their errors are handled as usual.
func (g *Runner) projectBatch(batch []*job) {
	envs := make([]outbox.Envelope, len(batch))
	for i, j := range batch {
		envs[i] = j.env
	}
	var changed []bool
	var errs []error
	ctx, end := g.traceBatch(context.WithoutCancel(batch[0].ctx), batch)
	func() {
		defer func() {
			if r := recover(); r != nil { // each panics again alone, under the router's Recoverer
				changed, errs = nil, nil
			}
		}()
		changed, errs = g.cfg.Group.ProjectEach(ctx, envs)
	}()
	end(errors.Join(errs...))
	outcome := "committed"
	for i, j := range batch {
		if len(changed) != len(batch) || len(errs) != len(batch) || errs[i] != nil {
			j.applied, j.err = false, errAlone
			outcome = "failed"
			continue
		}
		j.applied, j.err = changed[i], nil
	}
	g.cfg.Metrics.Batch.WithLabelValues(g.cfg.Group.Name, outcome).Observe(float64(len(batch)))
}

func batchOutcome(err error) string {
	if err != nil {
		return "failed"
	}
	return "committed"
}
