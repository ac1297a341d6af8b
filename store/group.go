package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/product"
	"github.com/shopdev/shop/domain/stock"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/outbox"
)

// GroupConfig configures a Group.
type GroupConfig struct {
	// Max is how many commands share one transaction at most. Default 64;
	// 1 runs each in a transaction of its own, as UnitOfWork.Do does.
	Max int
	// Lanes is how many groups run at once, each on its own connection:
	// a group forms only while every lane is busy. Default 1.
	Lanes int
	// Timeout bounds a whole group's transaction, so that one slow
	// command cannot hold the others' answers for long. Default 10s.
	Timeout time.Duration
}

// Validate fills defaults and checks the configuration.
func (c *GroupConfig) Validate() error {
	if c.Max == 0 {
		c.Max = 64
	}
	if c.Max < 1 {
		return errors.New("group: max must be positive")
	}
	if c.Lanes == 0 {
		c.Lanes = 1
	}
	if c.Lanes < 1 {
		return errors.New("group: lanes must be positive")
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Timeout < 0 {
		return errors.New("group: timeout must be positive")
	}
	return nil
}

// Group commits concurrent commands together: the commands that arrive
// while one transaction is running wait, then run one after another in the
// next transaction, each under a SAVEPOINT of its own, and one COMMIT makes
// them all durable. A command that fails (invalid, a conflict, a taken
// Idempotency-Key) is rolled back to its savepoint and gets its own error;
// the others go on. Every caller returns after the COMMIT, so nothing is
// answered before it is durable. A group closes when the previous one has
// committed or at Max: nobody waits for a timer, and a lone command runs at
// once, as with Do.
//
// What it saves: one transaction's fixed cost (a connection taken from the
// pool, BEGIN, COMMIT and its WAL flush) for up to Max commands; Postgres
// would otherwise flush the WAL once per command. With what its commands
// name ahead (ReadAhead), also their reads' round trips: a group of orders
// is two round trips, however many it holds.
type Group struct {
	u   *UnitOfWork
	cfg GroupConfig

	mu      sync.Mutex
	pending []*groupJob
	running int // goroutines draining pending, at most Lanes
}

type groupJob struct {
	ctx      context.Context
	ahead    ReadAhead
	fn       func(ctx context.Context, tx *Tx) error
	err      error
	written  []int16
	released bool // its savepoint was released: its writes hold
	done     chan struct{}
}

// Group returns a Group running commands on u.
func (u *UnitOfWork) Group(cfg GroupConfig) (*Group, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Group{u: u, cfg: cfg}, nil
}

// Do runs fn in the next group's transaction and returns once that
// transaction has committed or rolled back: nil when fn returned nil and
// its writes committed; else fn's error, or what kept it from committing.
// fn runs in a context that ctx's cancellation does not reach (a caller
// that goes away must not break its neighbours' transaction); a command
// whose ctx is done before its turn is not run. A panic in fn is its
// error, wrapping ErrPanicked, and fails the group it ran in.
func (g *Group) Do(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) error {
	return g.DoReading(ctx, ReadAhead{}, fn)
}

// ReadAhead names what a command is going to read, as far as it is known
// before the command runs. A group reads what all its commands name in one
// query, sent with BEGIN, instead of each command reading in a round trip
// of its own. A command still asks for what it needs, as without a Group;
// what was read ahead is answered without a round trip.
type ReadAhead struct {
	// Products the command asks Products.Catalogue for.
	Products []uuid.UUID
}

// DoReading is Do for a command that names what it is going to read.
func (g *Group) DoReading(ctx context.Context, ahead ReadAhead, fn func(ctx context.Context, tx *Tx) error) error {
	if g.cfg.Max == 1 {
		return g.u.Do(ctx, func(ctx context.Context, tx *Tx) error { return call(ctx, tx, fn) })
	}
	j := &groupJob{ctx: ctx, ahead: ahead, fn: fn, done: make(chan struct{})}
	g.mu.Lock()
	g.pending = append(g.pending, j)
	lead := g.running < g.cfg.Lanes
	if lead {
		g.running++
	}
	g.mu.Unlock()
	if lead {
		g.lead(j)
	}
	<-j.done
	return j.err
}

// lead makes the caller of j a lane: it runs groups on the caller's
// goroutine until j's group has run (on this lane or another), then leaves
// the lane, to a goroutine of its own if commands are still waiting. A
// command that finds a lane free, as every command does when they come one
// at a time, runs on its caller's goroutine: no goroutine is started for
// it, and no other one woken to run it and then to wake its caller.
func (g *Group) lead(j *groupJob) {
	left := false
	defer func() {
		if !left { // a command panicked (run gave every caller its error)
			g.leave()
		}
	}()
	for {
		select {
		case <-j.done:
			left = true
			g.leave()
			return
		default:
		}
		batch := g.take()
		if batch == nil { // j is in a group another lane is running
			left = true
			return
		}
		g.run(batch)
	}
}

// leave gives the lane up: to a goroutine that runs the waiting commands,
// if there are any.
func (g *Group) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.pending) == 0 {
		g.running--
		return
	}
	go g.drain()
}

// take takes the next group's commands from those waiting; with none, it
// leaves the lane and returns nil.
func (g *Group) take() []*groupJob {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := min(len(g.pending), g.cfg.Max)
	if n == 0 {
		g.running--
		return nil
	}
	batch := slices.Clone(g.pending[:n])
	g.pending = slices.Delete(g.pending, 0, n)
	return batch
}

// drain runs groups as a lane until no command is waiting.
func (g *Group) drain() {
	for {
		batch := g.take()
		if batch == nil {
			return
		}
		g.run(batch)
	}
}

// savepoint is the name every command's savepoint has: each is released
// or rolled back to before the next is set.
const savepoint = "shop_command"

// ErrPanicked is the error of a command that panicked, with the panic's
// value and stack, and of every other command of its group: the group's
// transaction is rolled back, and the caller of each is answered, whatever
// goroutine ran the group.
var ErrPanicked = errors.New("command panicked")

// errGroupPanicked is the error of the other commands of a group in which
// one panicked.
var errGroupPanicked = fmt.Errorf("%w in its group: nothing of the group was committed", ErrPanicked)

// run runs one group's commands in one transaction and tells each caller.
func (g *Group) run(batch []*groupJob) {
	ran := false
	defer func() {
		for _, j := range batch {
			if !ran {
				j.err = errGroupPanicked
			}
			close(j.done)
		}
	}()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), g.cfg.Timeout)
	defer cancel()
	var err error
	if g.u.tracer != nil {
		var end func(error)
		ctx, end = g.u.tracer.StartTx(ctx)
		defer func() { end(err) }()
	}
	err = g.runIn(ctx, batch)
	ran = true
	if err != nil {
		for _, j := range batch {
			if j.err == nil {
				j.err = err
			}
		}
		return
	}
	if g.u.notifier != nil {
		var written []int16
		for _, j := range batch {
			for _, p := range j.written {
				if !slices.Contains(written, p) {
					written = append(written, p)
				}
			}
		}
		if len(written) > 0 {
			g.u.notifier.Notify(written)
		}
	}
}

// runIn runs the commands on one connection; an error it returns is every
// command's that has none of its own: nothing of the group committed.
//
// A command's writes and the release of its savepoint are not sent on
// their own: they go with the next statements sent, a later command's
// first read or COMMIT, one round trip per command that reads and none for
// one that only writes. If they fail, Tx.settle undoes that command alone
// and sends the statements queued after it again.
func (g *Group) runIn(ctx context.Context, batch []*groupJob) (err error) {
	conn, err := g.u.pool.Acquire(ctx)
	if err != nil {
		return classify(fmt.Errorf("acquire connection: %w", err))
	}
	defer conn.Release()
	defer func() {
		if readOnly(err) || errors.Is(err, ErrPanicked) {
			_ = conn.Conn().Close(context.WithoutCancel(ctx)) // see Do
		}
	}()
	tx := newTx(conn, outbox.Metadata{})
	defer tx.rollbackIfOpen(ctx)
	if err := readAhead(ctx, tx, batch); err != nil {
		return err
	}
	for _, j := range batch {
		if j.ctx.Err() != nil {
			j.err = classify(j.ctx.Err())
			continue
		}
		if err := g.runOne(ctx, tx, j); err != nil {
			return err // the connection or the transaction is lost
		}
	}
	if !tx.begun && len(tx.unsettled) == 0 {
		return nil // no command reached Postgres
	}
	tx.pending.Queue("COMMIT")
	if err := tx.send(ctx); err != nil {
		return classify(fmt.Errorf("commit: %w", err))
	}
	return nil
}

// readAhead reads, with BEGIN, what the batch's commands named. Postgres
// answers as of the group's start rather than of each command's turn: the
// group runs the commands that arrived before it started, so either is a
// moment after each arrived. What the group itself changes is read again
// (Products.Catalogue).
func readAhead(ctx context.Context, tx *Tx, batch []*groupJob) error {
	var products []uuid.UUID
	for _, j := range batch {
		if j.ctx.Err() == nil {
			products = append(products, j.ahead.Products...)
		}
	}
	if len(products) == 0 {
		return nil
	}
	slices.SortFunc(products, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	tx.Products.queueCatalogue(slices.Compact(products))
	if err := tx.sendReads(ctx); err != nil {
		return classify(fmt.Errorf("read ahead: %w", err))
	}
	return nil
}

// call runs fn, its panic as an error wrapping ErrPanicked.
func call(ctx context.Context, tx *Tx, fn func(ctx context.Context, tx *Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v\n%s", ErrPanicked, r, debug.Stack())
		}
	}()
	return fn(ctx, tx)
}

// runOne runs one command under its savepoint. Its own failure is j.err,
// undone by rolling back to the savepoint; the error returned means the
// transaction cannot go on. A command whose fn succeeded is settled by the
// next send, which carries its writes (Tx.send).
func (g *Group) runOne(ctx context.Context, tx *Tx, j *groupJob) error {
	tx.startCommand(outbox.MetadataFrom(j.ctx))
	mark, sends := tx.pending.Len(), tx.sends
	tx.pending.Queue("SAVEPOINT " + savepoint)
	err := call(context.WithoutCancel(j.ctx), tx, j.fn)
	if errors.Is(err, ErrPanicked) {
		// What the command left half done is unknown, in the transaction
		// and on its connection: the group is rolled back, the connection
		// closed.
		j.err = err
		return errGroupPanicked
	}
	if err == nil {
		tx.saveChanged()
		tx.pending.Queue("RELEASE SAVEPOINT " + savepoint).Exec(func(pgconn.CommandTag) error {
			j.released = true
			return nil
		})
		j.written = tx.written
		tx.unsettled = append(tx.unsettled, unsettled{job: j, end: tx.pending.Len()})
		return nil
	}
	j.err = classify(err)
	if tx.sends == sends {
		// Nothing of this command was sent: drop its statements, keep what
		// was queued before it (BEGIN, the last command's writes).
		tx.pending.QueuedQueries = tx.pending.QueuedQueries[:mark]
		tx.reads = 0
		return nil
	}
	tx.discardPending()
	if errors.Is(j.err, domain.ErrUnavailable) || tx.conn.Conn().IsClosed() || ctx.Err() != nil {
		return j.err
	}
	if _, err := tx.conn.Exec(ctx, "ROLLBACK TO SAVEPOINT "+savepoint); err != nil {
		return classify(fmt.Errorf("roll back to the command's savepoint: %w", err))
	}
	return nil
}

// unsettled is a command whose fn succeeded and whose writes wait in a
// Tx's pending statements, up to end (after its RELEASE), to go with the
// next statements.
type unsettled struct {
	job *groupJob
	end int
}

// settle is send's end when commands' writes went with the batch b: err is
// b's outcome. Each command whose RELEASE ran is settled. The first whose
// RELEASE did not run is the one whose writes failed: it alone is undone
// (its error is its own), and the statements queued after it are sent
// again, settling the commands among them the same way. What it returns is
// the outcome of the statements after the last command.
func (t *Tx) settle(ctx context.Context, b *pgx.Batch, err error) error {
	waiting, queries := t.unsettled, b.QueuedQueries
	t.unsettled = nil
	for err != nil {
		i := slices.IndexFunc(waiting, func(u unsettled) bool { return !u.job.released })
		if i < 0 {
			return err // every command is settled; the error is the statements' after them
		}
		failed := waiting[i]
		failed.job.err, failed.job.written = classify(err), nil
		if errors.Is(failed.job.err, domain.ErrUnavailable) || t.conn.Conn().IsClosed() || ctx.Err() != nil {
			return err
		}
		if _, rbErr := t.conn.Exec(ctx, "ROLLBACK TO SAVEPOINT "+savepoint); rbErr != nil {
			return fmt.Errorf("roll back to the command's savepoint: %w", rbErr)
		}
		rest := &pgx.Batch{}
		for _, q := range queries[failed.end:] {
			// Queued anew: pgx keeps on a sent query the statement it
			// prepared, which the failed round trip never made.
			rest.Queue(q.SQL, q.Arguments...).Fn = q.Fn
		}
		if rest.Len() == 0 {
			return nil
		}
		waiting, queries = slices.Clone(waiting[i+1:]), rest.QueuedQueries
		for k := range waiting {
			waiting[k].end -= failed.end
		}
		t.sends++
		err = t.conn.SendBatch(ctx, rest).Close()
	}
	return nil
}

// startCommand readies the transaction for the next command of a group:
// the aggregates the last one held are forgotten (the next loads them
// again, seeing what the last wrote), and its events carry md.
func (t *Tx) startCommand(md outbox.Metadata) {
	t.md = md
	t.written = nil
	t.users = tracked[*user.User]{}
	t.products = tracked[*product.Product]{}
	t.orders = tracked[*order.Order]{}
	t.reservations = tracked[*stock.Reservation]{}
	t.readUsers = tracked[*user.User]{}
}

// discardPending drops the statements not sent yet, keeping BEGIN if it
// was not sent either.
func (t *Tx) discardPending() {
	t.pending, t.reads = &pgx.Batch{}, 0
	if !t.begun {
		t.pending.Queue("BEGIN")
	}
}
