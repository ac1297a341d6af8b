package consumer_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/handlers/consumer"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// echo appends one event per event it applies, so that the test can see
// what a batch's transaction committed and with which metadata.
func echo(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
	time.Sleep(10 * time.Millisecond) // deliveries pile up meanwhile and form batches
	return tx.Append(domain.NewEvent("test.echoed", "echo", e.AggregateID, 1, time.Now(), map[string]string{"of": e.ID.String()}))
}

// batches returns how many batch transactions of the group ended with
// outcome, and how many events they held.
func batches(t *testing.T, m *consumer.Metrics, outcome string) (count uint64, events float64) {
	t.Helper()
	var out dto.Metric
	testenv.Must(t, m.Batch.WithLabelValues(group.Name, outcome).(prometheus.Histogram).Write(&out), "read batch histogram")
	return out.GetHistogram().GetSampleCount(), out.GetHistogram().GetSampleSum()
}

// echoes checks that every event of envs was applied once and its echo
// carries the event's own correlation id, with the event as its cause.
func echoes(t *testing.T, x *harness, envs []outbox.Envelope) error {
	t.Helper()
	for _, env := range envs {
		var n int
		var correlation, causation string
		err := x.pool.QueryRow(context.Background(), `SELECT count(*), min(payload->>'correlation_id'), min(payload->>'causation_id')
			FROM outbox WHERE aggregate_id = $1`, env.AggregateID).Scan(&n, &correlation, &causation)
		if err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("event %s echoed %d times, want once", env.ID, n)
		}
		if correlation != env.CorrelationID || causation != env.ID.String() {
			return fmt.Errorf("echo of %s: correlation %s, causation %s; want %s, %s",
				env.ID, correlation, causation, env.CorrelationID, env.ID)
		}
	}
	return nil
}

func TestBatchAppliesEachEventOnceWithItsOwnMetadata(t *testing.T) {
	t.Parallel()
	metrics := consumer.NewMetrics(prometheus.NewRegistry())
	x := start(t, echo, func(c *consumer.Config) {
		c.Batch, c.Committers, c.Concurrency, c.Metrics = 16, 1, 8, metrics
	})
	envs := make([]outbox.Envelope, 40)
	for i := range envs {
		envs[i] = envelope(t)
		envs[i].CorrelationID = uuid.NewString()
		x.publishEnvelope(t, envs[i])
	}
	for _, env := range envs[:10] { // duplicates, some in the same batch as the original
		x.publishEnvelope(t, env)
	}
	testenv.Eventually(t, 20*time.Second, func() error { return echoes(t, x, envs) })
	for _, env := range envs {
		if n := x.attempts(env.ID); n != 1 {
			t.Errorf("event %s: handler ran %d times, want once", env.ID, n)
		}
		if n := x.inboxRows(t, env.ID); n != 1 {
			t.Errorf("event %s: %d inbox rows, want 1", env.ID, n)
		}
	}
	count, events := batches(t, metrics, "committed")
	if count == 0 || events <= float64(count) {
		t.Errorf("%d batches committed %.0f events: no batch held more than one", count, events)
	}
	if failed, _ := batches(t, metrics, "failed"); failed != 0 {
		t.Errorf("%d batches failed, want none", failed)
	}
}

func TestAFailingEventLeavesTheRestOfItsBatchApplied(t *testing.T) {
	t.Parallel()
	metrics := consumer.NewMetrics(prometheus.NewRegistry())
	envs := make([]outbox.Envelope, 30)
	for i := range envs {
		envs[i] = envelope(t)
		envs[i].CorrelationID = uuid.NewString()
	}
	failing, panicking := envs[7], envs[19]
	x := start(t, func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
		switch e.ID {
		case failing.ID:
			return fmt.Errorf("reserve: %w", domain.ErrInvalid) // permanent: dead at once
		case panicking.ID:
			panic("handler bug")
		}
		return echo(ctx, tx, e)
	}, func(c *consumer.Config) {
		c.Batch, c.Committers, c.Concurrency, c.Metrics, c.MaxRetries = 16, 1, 8, metrics, 1
	})
	for _, env := range envs {
		x.publishEnvelope(t, env)
	}
	dead := x.waitDead(t, 2)
	var good []outbox.Envelope
	for _, env := range envs {
		if env.ID != failing.ID && env.ID != panicking.ID {
			good = append(good, env)
		}
	}
	testenv.Eventually(t, 20*time.Second, func() error { return echoes(t, x, good) })
	for _, d := range dead {
		if d.ID != failing.ID.String() && d.ID != panicking.ID.String() {
			t.Errorf("%s went to the dead queue: %s", d.ID, d.Reason)
		}
	}
	for _, env := range []outbox.Envelope{failing, panicking} {
		if n := x.inboxRows(t, env.ID); n != 0 {
			t.Errorf("dead event %s has %d inbox rows, want none", env.ID, n)
		}
		if n := testenv.Count(t, x.pool, `SELECT count(*) FROM outbox WHERE aggregate_id = $1`, env.AggregateID); n != 0 {
			t.Errorf("dead event %s left %d outbox rows, want none", env.ID, n)
		}
	}
	if failed, events := batches(t, metrics, "failed"); events <= float64(failed) {
		t.Errorf("%d failed batches held %.0f events: the bad events were never in a batch with others", failed, events)
	}
}

func TestBatchMustBePositive(t *testing.T) {
	t.Parallel()
	for _, batch := range []int{-1, -16} {
		cfg := consumer.Config{Group: group, AMQPURL: "amqp://127.0.0.1", UnitOfWork: &store.UnitOfWork{},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Handlers: map[string]consumer.Handler{}, Batch: batch}
		for _, k := range group.Keys {
			cfg.Handlers[k] = echo
		}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "batch must be positive") {
			t.Errorf("Validate with Batch %d = %v, want an error about the batch", batch, err)
		}
	}
}
