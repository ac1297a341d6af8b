package relaybench_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// wmTopic is the watermill-sql topic the forwarder reads: table
// watermill_outbox, offsets in watermill_offsets_outbox.
const wmTopic = "outbox"

// wm is Watermill's forwarder: writers publish enveloped messages into the
// SQL topic inside their pgx transaction (watermill-sql's TxFromPgx); the
// forwarder subscribes to it (BeginnerFromPgx) and republishes each message
// to shop.events with watermill-amqp, publisher confirms on, the event type
// as routing key. Untuned: the defaults of the forwarder, the SQL
// subscriber (batch 100, poll 1s) and the AMQP publisher (no channel pool:
// a channel per publish). Tuned: ChannelPoolSize 1, SubscribeBatchSize
// 1000, PollInterval 10ms.
type wm struct {
	cfg     config
	dbURL   string
	amqpURL string
	tuned   bool
	pool    *pgxpool.Pool // the writers'
	schema  *wsql.DefaultPostgreSQLSchema
	offsets wsql.DefaultPostgreSQLOffsetsAdapter
	log     watermill.LoggerAdapter
}

func openWatermill(b *testing.B, cfg config, amqpURL string, tuned bool) system {
	b.Helper()
	w, closeWriters, err := wmWriters(context.Background(), cfg, testenv.DatabaseURL(b), amqpURL, tuned)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(closeWriters)
	// Create the SQL topic's tables, as a deployment's migration would.
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromPgx(w.pool), wsql.SubscriberConfig{SchemaAdapter: w.schema, OffsetsAdapter: w.offsets}, w.log)
	if err == nil {
		err = sub.SubscribeInitialize(wmTopic)
		_ = sub.Close()
	}
	if err != nil {
		b.Fatalf("create watermill tables: %v", err)
	}
	return w
}

// wmWriters is wm without the forwarder: what its writers need, which is
// all the writers apart attach to.
func wmWriters(ctx context.Context, cfg config, dbURL, amqpURL string, tuned bool) (*wm, func(), error) {
	pool, err := store.Open(ctx, store.Config{DatabaseURL: dbURL, MaxConns: int32(cfg.writers + 2)})
	if err != nil {
		return nil, nil, fmt.Errorf("open pool: %w", err)
	}
	w := &wm{
		cfg: cfg, dbURL: dbURL, amqpURL: amqpURL, tuned: tuned, pool: pool,
		schema: &wsql.DefaultPostgreSQLSchema{},
		log:    watermill.NewSlogLogger(logger),
	}
	if tuned {
		w.schema.SubscribeBatchSize = 1000
	}
	return w, pool.Close, nil
}

func (w *wm) endpoints() (dbURL, amqpURL string) { return w.dbURL, w.amqpURL }

// backlog publishes n events through the forwarder's SQL publisher, 10,000
// per transaction, 1,000 per INSERT.
func (w *wm) backlog(ctx context.Context, n int) error {
	const perTx, perInsert = 10_000, 1_000
	for done := 0; done < n; {
		k := min(perTx, n-done)
		tx, err := w.pool.Begin(ctx)
		if err != nil {
			return err
		}
		pub, err := wsql.NewPublisher(wsql.TxFromPgx(tx), wsql.PublisherConfig{SchemaAdapter: w.schema}, w.log)
		if err != nil {
			_ = tx.Rollback(ctx)
			return err
		}
		fpub := forwarder.NewPublisher(pub, forwarder.PublisherConfig{ForwarderTopic: wmTopic})
		for i := 0; i < k; i += perInsert {
			msgs := make([]*message.Message, min(perInsert, k-i))
			for j := range msgs {
				e := newEvent()
				msgs[j] = message.NewMessage(e.ID.String(), envelope(e))
				msgs[j].SetContext(ctx)
			}
			if err := fpub.Publish(routingKey, msgs...); err != nil {
				_ = tx.Rollback(ctx)
				return fmt.Errorf("insert backlog: %w", err)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("insert backlog: %w", err)
		}
		done += k
	}
	return settle(ctx, w.pool)
}

func (w *wm) start(ctx context.Context) (func(), error) {
	subPool, err := store.Open(ctx, store.Config{DatabaseURL: w.dbURL})
	if err != nil {
		return nil, err
	}
	subCfg := wsql.SubscriberConfig{SchemaAdapter: w.schema, OffsetsAdapter: w.offsets}
	pubCfg := wamqp.Config{
		Connection: wamqp.ConnectionConfig{AmqpURI: w.amqpURL},
		Marshaler:  wamqp.DefaultMarshaler{},
		Exchange: wamqp.ExchangeConfig{
			GenerateName: wamqp.GenerateExchangeNameConstant(outbox.Exchange),
			Type:         "topic",
			Durable:      true,
		},
		Publish: wamqp.PublishConfig{
			GenerateRoutingKey: func(topic string) string { return topic },
			ConfirmDelivery:    true,
		},
		TopologyBuilder: &wamqp.DefaultTopologyBuilder{},
	}
	if w.tuned {
		subCfg.PollInterval = 10 * time.Millisecond
		pubCfg.Publish.ChannelPoolSize = 1
	}
	stopping := &atomic.Bool{}
	log := quietOnStop{w.log, stopping}
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromPgx(subPool), subCfg, log)
	if err != nil {
		subPool.Close()
		return nil, err
	}
	pub, err := wamqp.NewPublisher(pubCfg, log)
	if err != nil {
		subPool.Close()
		return nil, err
	}
	fwd, err := forwarder.NewForwarder(sub, pub, log, forwarder.Config{ForwarderTopic: wmTopic})
	if err != nil {
		_ = pub.Close()
		subPool.Close()
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- fwd.Run(ctx) }()
	stop := func() {
		stopping.Store(true) // the subscriber logs its cancelled queries as errors
		if err := fwd.Close(); err != nil {
			logger.Warn("close forwarder", "error", err)
		}
		if err := <-done; err != nil {
			logger.Warn("forwarder", "error", err)
		}
		_ = sub.Close()
		_ = pub.Close()
		subPool.Close()
	}
	select {
	case <-fwd.Running():
	case err := <-done:
		done <- err
		stop()
		return nil, fmt.Errorf("forwarder stopped: %w", err)
	case <-time.After(30 * time.Second):
		stop()
		return nil, fmt.Errorf("forwarder not running after 30s")
	}
	return stop, nil
}

func (w *wm) newWriter(_ context.Context, rec *recorder) (writer, error) {
	return &wmWriter{w: w, rec: rec}, nil
}

// wmWriter commits one event per transaction: BEGIN, the INSERT of the
// enveloped message into the SQL topic, COMMIT (three round trips: the
// publisher runs on a pgx.Tx).
type wmWriter struct {
	w   *wm
	rec *recorder
}

func (ww *wmWriter) commit(ctx context.Context) error {
	e := newEvent()
	tx, err := ww.w.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	pub, err := wsql.NewPublisher(wsql.TxFromPgx(tx), wsql.PublisherConfig{SchemaAdapter: ww.w.schema}, ww.w.log)
	if err != nil {
		return err
	}
	msg := message.NewMessage(e.ID.String(), envelope(e))
	msg.SetContext(ctx)
	if err := forwarder.NewPublisher(pub, forwarder.PublisherConfig{ForwarderTopic: wmTopic}).Publish(routingKey, msg); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	ww.rec.add(e.ID, time.Now())
	return nil
}

func (ww *wmWriter) close(context.Context) error { return nil }

// quietOnStop drops what Watermill logs once the benchmark stops it.
type quietOnStop struct {
	watermill.LoggerAdapter
	stopping *atomic.Bool
}

func (l quietOnStop) Error(msg string, err error, fields watermill.LogFields) {
	if !l.stopping.Load() {
		l.LoggerAdapter.Error(msg, err, fields)
	}
}

func (l quietOnStop) Info(msg string, fields watermill.LogFields) {
	if !l.stopping.Load() {
		l.LoggerAdapter.Info(msg, fields)
	}
}

func (l quietOnStop) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return quietOnStop{l.LoggerAdapter.With(fields), l.stopping}
}
