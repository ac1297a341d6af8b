// Package store owns the Postgres side of the write model: the connection
// pool, the schema migrations, the unit of work whose transaction-bound
// stores load and add aggregates (and write back, at commit, the ones that
// changed) and append their events to the outbox, and the reads the read
// models fall back on.
//
// Writes inside a unit of work are queued and sent to Postgres in one
// pipelined round trip just before the next read or the commit; a read always
// sees the writes queued before it. Constraint violations are reported when
// the writes are sent, as the domain error the constraint stands for.
package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	pgxuuid "github.com/vgarvardt/pgx-google-uuid/v5"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/domain/product"
	"github.com/shopdev/shop/domain/stock"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/outbox"
)

// ErrUnavailable means Postgres could not be reached, or no server reached
// may write (no primary, as during a failover): domain.ErrUnavailable,
// which the API answers 503 and a consumer waits out.
var ErrUnavailable = fmt.Errorf("database %w", domain.ErrUnavailable)

// ErrConcurrentUpdate means an aggregate changed between its load and its
// save; the caller may retry the command.
var ErrConcurrentUpdate = fmt.Errorf("%w: changed concurrently, retry", domain.ErrConflict)

// ErrUnknownUser means a command names a user that does not exist: a
// validly signed token whose user is gone (e.g. the database was reset).
var ErrUnknownUser = fmt.Errorf("%w: the token's user does not exist", domain.ErrUnauthorized)

// Config configures the connection pool.
type Config struct {
	// DatabaseURL is a postgres:// URL. Required.
	DatabaseURL string
	// MaxConns caps the pool. Default 16.
	MaxConns int32
	// ConnectTimeout bounds each new connection. Default 5s.
	ConnectTimeout time.Duration
	// Tracer hears every query and batch the pool's connections send.
	// Optional.
	Tracer pgx.QueryTracer
}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	if c.DatabaseURL == "" {
		return errors.New("database url is required")
	}
	if _, err := pgxpool.ParseConfig(c.DatabaseURL); err != nil {
		return fmt.Errorf("database url: %w", err)
	}
	if c.MaxConns == 0 {
		c.MaxConns = 16
	}
	if c.MaxConns < 1 {
		return errors.New("max conns must be positive")
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	return nil
}

// Open returns a pool. It does not wait for Postgres: connections are made
// when first needed, so a process can start while the database is down.
func Open(ctx context.Context, cfg Config) (*pgxpool.Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	pc.MaxConns = cfg.MaxConns
	pc.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	pc.ConnConfig.Tracer = cfg.Tracer
	pc.AfterConnect = func(_ context.Context, conn *pgx.Conn) error {
		// Encode and scan google/uuid values in binary; by default pgx
		// goes through their string form.
		pgxuuid.Register(conn.TypeMap())
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("create pool: %w", err)
	}
	return pool, nil
}

// UnitOfWork runs commands in transactions.
type UnitOfWork struct {
	pool     *pgxpool.Pool
	notifier CommitNotifier
	tracer   TxTracer // nil: none
}

// TxTracer hears every transaction of a unit of work: StartTx returns the
// context its statements run in and the function that ends it, with the
// transaction's outcome (telemetry's pgx tracer: one span per
// transaction).
type TxTracer interface {
	StartTx(ctx context.Context) (context.Context, func(error))
}

// Traced returns a unit of work like u whose transactions t hears.
func (u *UnitOfWork) Traced(t TxTracer) *UnitOfWork {
	c := *u
	c.tracer = t
	return &c
}

// CommitNotifier hears which outbox partitions a committed transaction
// wrote to (outbox.Notifier wakes the relays with it).
type CommitNotifier interface {
	Notify(partitions []int16)
}

// NewUnitOfWork returns a unit of work over pool. notifier may be nil: the
// relays then find new rows by polling.
func NewUnitOfWork(pool *pgxpool.Pool, notifier CommitNotifier) *UnitOfWork {
	return &UnitOfWork{pool: pool, notifier: notifier}
}

// Ping checks that Postgres answers.
func (u *UnitOfWork) Ping(ctx context.Context) error {
	if err := u.pool.Ping(ctx); err != nil {
		return classify(err)
	}
	return nil
}

// Tx is one transaction and the stores bound to it.
//
// Statements travel in pipelined batches: BEGIN goes with the first read,
// queued writes go with the next read or with COMMIT. A command that reads
// twice and then writes costs three round trips, however many rows it writes.
//
// The stores remember every aggregate the transaction locked or added, and
// the version it had then: at commit, each one that changed is written back
// once, guarded by that version. Use cases change aggregates and append
// their events; they never save them.
type Tx struct {
	conn    *pgxpool.Conn
	pending *pgx.Batch // statements not sent yet; starts with BEGIN
	reads   int        // queries in pending whose rows a caller waits for
	md      outbox.Metadata
	written []int16 // outbox partitions appended to
	sends   int     // batches sent
	begun   bool    // BEGIN was sent
	// In a Group: the commands whose writes wait in pending, in order, to
	// go with the next statements (settle).
	unsettled []unsettled
	catalogue *catalogue // products read ahead for a Group's commands

	users        tracked[*user.User]
	products     tracked[*product.Product]
	orders       tracked[*order.Order]
	reservations tracked[*stock.Reservation]
	readUsers    tracked[*user.User] // read, not locked (Users.ReadMany): never written back

	Users        Users
	Products     Products
	Orders       Orders
	Idempotency  IdempotencyKeys
	Reservations Reservations
	Inbox        Inbox
	Emails       Emails
	Audit        Audit
}

// Do runs fn in a transaction and commits when fn returns nil; any error
// rolls everything back: rows, outbox rows and idempotency keys alike.
func (u *UnitOfWork) Do(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) (err error) {
	if u.tracer != nil {
		var end func(error)
		ctx, end = u.tracer.StartTx(ctx)
		defer func() { end(err) }()
	}
	conn, err := u.pool.Acquire(ctx)
	if err != nil {
		return classify(fmt.Errorf("acquire connection: %w", err))
	}
	defer conn.Release() // a connection left inside a transaction is destroyed, not reused
	defer func() {
		if readOnly(err) {
			// The session is on a server that may not write: a standby,
			// or a primary since demoted, reached through an address that
			// does not check (target_session_attrs=read-write checks, but
			// only as a session starts). Closed, it is not reused: the next
			// one is made to wherever the primary is now.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	tx := newTx(conn, outbox.MetadataFrom(ctx))
	defer tx.rollbackIfOpen(ctx)

	if err := fn(ctx, tx); err != nil {
		return classify(err)
	}
	tx.saveChanged()
	if tx.pending.Len() == 1 && tx.pending.QueuedQueries[0].SQL == "BEGIN" {
		return nil // nothing was read or written
	}
	// Every check of the queued writes happens in Postgres (constraints,
	// shop_expect_one), so COMMIT goes with them: a failed check aborts the
	// transaction and the COMMIT behind it commits nothing.
	tx.pending.Queue("COMMIT")
	if err := tx.send(ctx); err != nil {
		return classify(fmt.Errorf("commit: %w", err))
	}
	if u.notifier != nil {
		u.notifier.Notify(tx.written)
	}
	return nil
}

// newTx returns a transaction on conn whose first statement, BEGIN, is
// queued.
func newTx(conn *pgxpool.Conn, md outbox.Metadata) *Tx {
	tx := &Tx{conn: conn, pending: &pgx.Batch{}, md: md}
	tx.pending.Queue("BEGIN")
	tx.Users = Users{tx}
	tx.Products = Products{tx}
	tx.Orders = Orders{tx}
	tx.Idempotency = IdempotencyKeys{tx}
	tx.Reservations = Reservations{tx}
	tx.Inbox = Inbox{tx}
	tx.Emails = Emails{tx}
	tx.Audit = Audit{tx}
	return tx
}

// saveChanged queues the write of every aggregate that changed since the
// transaction locked or added it, each guarded by the version it had then.
func (t *Tx) saveChanged() {
	t.users.changed(t.Users.update)
	t.products.changed(t.Products.update)
	t.orders.changed(t.Orders.update)
	t.reservations.changed(t.Reservations.update)
}

// rollbackIfOpen ends a transaction that fn's error or a failed write left
// open or aborted.
func (t *Tx) rollbackIfOpen(ctx context.Context) {
	if t.conn.Conn().PgConn().TxStatus() != 'I' {
		_, _ = t.conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
	}
}

// Append queues the events into the outbox, in order, in this transaction.
func (t *Tx) Append(events ...domain.Event) error {
	for _, e := range events {
		if p := outbox.Partition(e.AggregateID); !slices.Contains(t.written, p) {
			t.written = append(t.written, p)
		}
	}
	return outbox.Append(t.pending, t.md, events...)
}

// Tag sets the metadata (correlation id, causation id, trace context) that
// the events appended from now on carry. A transaction starts with its
// context's; one that applies several events, a consumer's batch, tags each
// event's part with that event's own.
func (t *Tx) Tag(md outbox.Metadata) { t.md = md }

// LimitLockWait makes every later statement of the transaction fail, and
// with it the transaction, when it waits longer than d for a row lock,
// instead of waiting until the lock is free or Postgres finds a deadlock
// (after deadlock_timeout, 1 s by default). For transactions that can be
// retried in smaller parts: a consumer's batch, which locks rows in the
// order its events came in.
func (t *Tx) LimitLockWait(d time.Duration) {
	t.queue(`SELECT set_config('lock_timeout', $1, true)`, fmt.Sprintf("%dms", max(d.Milliseconds(), 1)))
}

// queue adds a write to the pending batch.
func (t *Tx) queue(sql string, args ...any) *pgx.QueuedQuery {
	return t.pending.Queue(sql, args...)
}

// queueUpdate queues an UPDATE that must change exactly one row: the
// aggregate row at the version it was loaded at (tracked remembers it). Otherwise Postgres raises
// SH409 inside the statement (shop_expect_one, migration 5), which aborts
// the transaction, and the write fails with ErrConcurrentUpdate. The check
// runs in the transaction, not in Go, so the UPDATE can travel with COMMIT.
func (t *Tx) queueUpdate(what string, id uuid.UUID, update string, args ...any) {
	args = append(args, what+" "+id.String())
	t.queue(fmt.Sprintf(`WITH changed AS (%s RETURNING 1) SELECT shop_expect_one(count(*), $%d) FROM changed`,
		update, len(args)), args...)
}

// read sends the pending statements followed by a query whose rows scan
// consumes.
func (t *Tx) read(ctx context.Context, scan func(pgx.Rows) error, sql string, args ...any) error {
	t.queueRead(scan, sql, args...)
	return t.sendReads(ctx)
}

// queueRead queues a query whose rows scan consumes when the pending
// statements are sent: several reads travel in one round trip.
func (t *Tx) queueRead(scan func(pgx.Rows) error, sql string, args ...any) {
	t.pending.Queue(sql, args...).Query(scan)
	t.reads++
}

// Flush sends the queued statements now if a read is among them, whose
// answer someone waits for (an inbox Claim's, say); otherwise the writes
// keep waiting for the next read or the commit.
func (t *Tx) Flush(ctx context.Context) error { return t.sendReads(ctx) }

// sendReads sends the pending statements if a read is among them.
func (t *Tx) sendReads(ctx context.Context) error {
	if t.reads == 0 {
		return nil
	}
	return t.send(ctx)
}

// send sends the pending statements in one round trip.
func (t *Tx) send(ctx context.Context) error {
	b := t.pending
	t.pending, t.reads = &pgx.Batch{}, 0
	t.sends++
	t.begun = true // BEGIN goes with the first batch
	err := t.conn.SendBatch(ctx, b).Close()
	if len(t.unsettled) > 0 {
		return t.settle(ctx, b, err)
	}
	return err
}

// classify turns driver errors into the errors callers decide on.
func classify(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if pgErr.Code == "23505" { // unique_violation
			if mapped := uniqueViolation(pgErr.ConstraintName); mapped != nil {
				return mapped
			}
		}
		if pgErr.Code == "23503" && pgErr.ConstraintName == "orders_user_id_fkey" {
			return ErrUnknownUser
		}
		if pgErr.Code == "22021" || pgErr.Code == "22P05" { // text Postgres cannot store
			return fmt.Errorf("%w: text holds a character that cannot be stored", domain.ErrInvalid)
		}
		if pgErr.Code == "40001" || pgErr.Code == "40P01" { // serialization failure, deadlock
			return fmt.Errorf("%w: %w", ErrConcurrentUpdate, err)
		}
		if pgErr.Code == "SH409" { // shop_expect_one: a versioned update found another version
			return fmt.Errorf("%s: %w", pgErr.Message, ErrConcurrentUpdate)
		}
		// Connection exceptions, insufficient resources (too_many_connections:
		// Postgres's max_connections are taken), and an operator's
		// intervention (shutdown, admin_shutdown) pass; the command may be
		// tried again.
		if len(pgErr.Code) == 5 && (pgErr.Code[:2] == "08" || pgErr.Code[:2] == "53" || pgErr.Code[:2] == "57") {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if readOnly(err) { // no primary where the session is; a failover may be under way
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return err
	}
	// A *pgconn.ConnectError is also what pgx returns when no host of a
	// multi-host URL satisfies target_session_attrs=read-write: during a
	// failover, no primary answers yet.
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	if errors.As(err, &connectErr) || errors.As(err, &netErr) || pgconn.SafeToRetry(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// readOnly reports whether err is Postgres refusing a write because the
// session may not write (read_only_sql_transaction): the server is a
// standby. The store opens no read-only transaction of its own.
func readOnly(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "25006"
}

// uniqueViolation maps the schema's unique constraints to the domain errors
// they enforce. A violation of any other constraint is a bug and stays a 500.
func uniqueViolation(constraint string) error {
	switch constraint {
	case "users_email_key":
		return user.ErrEmailTaken
	case "products_sku_key":
		return product.ErrSKUTaken
	case "idempotency_keys_pkey":
		return ErrKeyTaken
	case "reservations_pkey": // two events of one order decided it at once
		return ErrConcurrentUpdate
	}
	return nil
}
