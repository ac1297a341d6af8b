package consumer_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// echo appends one event per event it applies, so that the test can see
// what a batch's transaction committed and with which metadata.
func echo(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
	return tx.Append(echoOf(e))
}

func echoOf(e outbox.Envelope) domain.Event {
	return domain.NewEvent("test.echoed", "echo", e.AggregateID, 1, time.Now(), map[string]string{"of": e.ID.String()})
}

// envelopes returns n valid events of the group, each with a correlation
// id of its own (not its event id), so that a check can tell correlation
// from causation.
func envelopes(t *testing.T, n int) []outbox.Envelope {
	t.Helper()
	envs := make([]outbox.Envelope, n)
	for i := range envs {
		envs[i] = envelope(t)
		envs[i].CorrelationID = uuid.NewString()
	}
	return envs
}

// batches returns how many batch transactions of the group ended with
// outcome, and how many events they held.
func batches(t *testing.T, m *consumer.Metrics, outcome string) (count uint64, events float64) {
	t.Helper()
	var out dto.Metric
	testenv.Must(t, m.Batch.WithLabelValues(group.Group, outcome).(prometheus.Histogram).Write(&out), "read batch histogram")
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

// holding runs a group whose first handler call waits until the test has
// published (it calls the returned release) and each of its concurrency
// subscriptions holds a delivery (with a prefetch of 1, RabbitMQ then has
// at most published-concurrency messages ready): the other deliveries are
// all waiting for that first batch, and form the next one together. h runs
// every call, the first one included.
func holding(t *testing.T, published, concurrency int, metrics *consumer.Metrics, h consumer.Handler, tune func(*consumer.Config)) (x *harness, release func()) {
	t.Helper()
	urls := make(chan string, 1)
	var first sync.Once
	x = start(t, func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
		first.Do(func() { waitInHand(<-urls, published-concurrency) })
		return h(ctx, tx, e)
	}, func(c *consumer.Config) {
		c.Batch, c.Committers, c.Concurrency, c.Prefetch, c.Metrics = 16, 1, concurrency, 1, metrics
		if tune != nil {
			tune(c)
		}
	})
	// Until every message is published, a queue with few messages ready
	// says nothing about the deliveries in hand.
	return x, func() { urls <- x.url }
}

// waitInHand waits, for 10 s at most, until the group's queue has at most
// ready messages ready for delivery. Past that the batches come out smaller
// than the test expects, and it says so.
func waitInHand(url string, ready int) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return
	}
	defer conn.Close()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		q, err := ch.QueueDeclarePassive(group.Queue(), true, false, false, false,
			amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum})
		_ = ch.Close()
		if err == nil && q.Messages <= ready {
			return
		}
	}
}

func TestBatchAppliesEachEventOnceWithItsOwnMetadata(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		many bool // the group has a prefetch
	}{
		{"with the handler of one event", false},
		{"with a prefetch", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const concurrency = 8
			metrics := consumer.NewMetrics(prometheus.NewRegistry())
			envs := envelopes(t, 40)
			// envs[1] comes again among the first eight, so in the second
			// batch, with its original; the other duplicates come in later
			// batches.
			queue := append(append(append([]outbox.Envelope{}, envs[:4]...), envs[1]), envs[4:]...)
			queue = append(queue, envs[10:19]...)
			var mu sync.Mutex
			var largest int // the most events the prefetch got at once
			x, release := holding(t, len(queue), concurrency, metrics, echo, func(c *consumer.Config) {
				if !tc.many {
					return
				}
				c.Group.Prefetch = map[string]consumer.Prefetch{envs[0].Type: func(_ context.Context, _ *store.Tx, events []outbox.Envelope) error {
					mu.Lock()
					largest = max(largest, len(events))
					mu.Unlock()
					return nil
				}}
			})
			for _, env := range queue {
				x.publishEnvelope(t, env)
			}
			release()
			testenv.Eventually(t, 20*time.Second, func() error { return echoes(t, x, envs) })
			for _, env := range envs {
				if n := x.inboxRows(t, env.ID); n != 1 {
					t.Errorf("event %s: %d inbox rows, want 1", env.ID, n)
				}
				if n := x.attempts(env.ID); n != 1 {
					t.Errorf("event %s: handler ran %d times, want once", env.ID, n)
				}
			}
			// The first batch held one delivery, the second the seven that
			// waited for it, the duplicate of envs[1] among them.
			if count, events := batches(t, metrics, "committed"); events < concurrency-1 {
				t.Errorf("%d batches of more than one committed %.0f deliveries, want the %d that waited for the first among them",
					count, events, concurrency-1)
			}
			if failed, _ := batches(t, metrics, "failed"); failed != 0 {
				t.Errorf("%d batches failed, want none", failed)
			}
			mu.Lock()
			defer mu.Unlock()
			if tc.many && largest < 2 {
				t.Errorf("the prefetch got %d events at most, want the batches' events at once", largest)
			}
		})
	}
}

func TestAFailingEventLeavesTheRestOfItsBatchApplied(t *testing.T) {
	t.Parallel()
	metrics := consumer.NewMetrics(prometheus.NewRegistry())
	envs := envelopes(t, 30)
	// envs[1:8] wait together for the first batch: the failing event is
	// in the second batch with six others.
	failing, panicking := envs[5], envs[19]
	x, release := holding(t, len(envs), 8, metrics, func(ctx context.Context, tx *store.Tx, e outbox.Envelope) error {
		switch e.ID {
		case failing.ID:
			return fmt.Errorf("reserve: %w", domain.ErrInvalid) // permanent: dead at once
		case panicking.ID:
			panic("handler bug")
		}
		return echo(ctx, tx, e)
	}, func(c *consumer.Config) { c.MaxRetries = 1 })
	for _, env := range envs {
		x.publishEnvelope(t, env)
	}
	release()
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
	// The failing event's batch is meant to hold 7 (the deliveries held
	// with it); on a starved machine some of them reach the batcher only
	// after it gathered, and the batch is smaller. What the test needs is
	// a failed batch that held another event besides, whose effect stayed.
	if failed, events := batches(t, metrics, "failed"); events < float64(failed)+1 {
		t.Errorf("%d failed batches held %.0f deliveries: no failing event shared its batch, so nothing shows the rest of a batch applied", failed, events)
	}
}

func TestBatchSettingsMustBeValid(t *testing.T) {
	t.Parallel()
	none := func(context.Context, *store.Tx, []outbox.Envelope) error { return nil }
	for _, tc := range []struct {
		name string
		tune func(*consumer.Config)
		want string
	}{
		{"negative batch", func(c *consumer.Config) { c.Batch = -1 }, "must be positive"},
		{"very negative batch", func(c *consumer.Config) { c.Batch = -16 }, "must be positive"},
		{"negative retries", func(c *consumer.Config) { c.MaxRetries = -1 }, "retries, unavailable-for and gather not negative"},
		{"negative gather", func(c *consumer.Config) { c.Gather = -time.Millisecond }, "retries, unavailable-for and gather not negative"},
		{"prefetch of a key without a handler", func(c *consumer.Config) {
			c.Group.Prefetch = map[string]consumer.Prefetch{"order.placed": none}
		}, "a prefetch for order.placed, which has no handler"},
		{"handler of a key the queue is not bound to", func(c *consumer.Config) {
			c.Group.Handlers["order.placed"] = echo
		}, "a handler for order.placed, which its queue is not bound to"},
		{"a key without a handler", func(c *consumer.Config) {
			delete(c.Group.Handlers, group.Keys[0])
		}, "no handler for " + group.Keys[0]},
		{"ProjectEach without Project", func(c *consumer.Config) {
			c.Group.ProjectEach = func(context.Context, []outbox.Envelope) ([]bool, []error) { return nil, nil }
		}, "ProjectEach needs Project"},
		{"HandleEach for a group that does not batch", func(c *consumer.Config) {
			c.Group.Batches = false
			c.Group.HandleEach = func(*store.Tx, []consumer.Event) []error { return nil }
		}, "HandleEach needs Handlers"},
		{"HandleEach without handlers", func(c *consumer.Config) {
			c.Group.Handlers = nil
			c.Group.Project = func(context.Context, outbox.Envelope) (bool, error) { return false, nil }
			c.Group.HandleEach = func(*store.Tx, []consumer.Event) []error { return nil }
		}, "HandleEach needs Handlers"},
		{"a group the topology does not know", func(c *consumer.Config) { c.Group.Name = "nobody" }, "the topology has no queue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := consumer.Config{Group: consumer.Group{Name: group.Group, Keys: group.Keys, Handlers: map[string]consumer.Handler{}, Batches: true},
				Broker: newBroker(t, "amqp://127.0.0.1"), UnitOfWork: &store.UnitOfWork{}, Logger: quiet}
			for _, k := range group.Keys {
				cfg.Group.Handlers[k] = echo
			}
			tc.tune(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

func TestAGroupNeedsAConnectionPerDeliveryAtOnceAndPerCommitter(t *testing.T) {
	t.Parallel()
	handlers := map[string]consumer.Handler{"order.placed": echo}
	project := func(context.Context, outbox.Envelope) (bool, error) { return false, nil }
	for _, tc := range []struct {
		name                    string
		group                   consumer.Group
		concurrency, committers int
		want                    int
	}{
		{"one delivery at a time", consumer.Group{Handlers: handlers}, 1, 1, 1},
		{"eight at once", consumer.Group{Handlers: handlers}, 8, 1, 8},
		{"eight at once and a committer", consumer.Group{Handlers: handlers, Batches: true}, 8, 1, 9},
		{"eight at once and two committers", consumer.Group{Handlers: handlers, Batches: true}, 8, 2, 10},
		{"a group that writes Redis only", consumer.Group{Project: project, Batches: true}, 8, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := consumer.Conns(tc.group, tc.concurrency, tc.committers); got != tc.want {
				t.Errorf("Conns = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestBatcherGathersWhatArrivesWhileATransactionRuns(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		var mu sync.Mutex
		var sizes []int
		release := make(chan struct{})
		do := consumer.NewTestBatcher(ctx, 1, 3, 0, func(size int) {
			mu.Lock()
			sizes = append(sizes, size)
			first := len(sizes) == 1
			mu.Unlock()
			if first {
				<-release // the first transaction runs until released
			}
		})
		go do() // alone: nothing waits when it comes
		synctest.Wait()
		for range 5 {
			go do() // they wait for the first transaction
		}
		synctest.Wait()
		close(release)
		synctest.Wait()
		mu.Lock()
		if want := []int{1, 3, 2}; !slices.Equal(sizes, want) {
			t.Errorf("batch sizes %v, want %v (one alone, then the five that waited, three at most at a time)", sizes, want)
		}
		mu.Unlock()

		cancel()
		synctest.Wait()
		if alone := do(); !alone {
			t.Error("a delivery handed over after the committers stopped was not sent to go alone")
		}
	})
}

func TestBatcherWaitsTheGatherTimeForTheRestOfARound(t *testing.T) {
	t.Parallel()
	// Deliveries come at these offsets (a relay round's reach a group one
	// by one); each batch is applied at once, so without a gather time
	// every delivery that finds the committer free goes alone.
	arrivals := []time.Duration{0, 300 * time.Microsecond, 900 * time.Microsecond, 1400 * time.Microsecond, 5 * time.Millisecond, 20 * time.Millisecond, 20050 * time.Microsecond}
	for _, tc := range []struct {
		name   string
		gather time.Duration
		max    int
		want   []int
	}{
		{"no gather time: each goes alone", 0, 16, []int{1, 1, 1, 1, 1, 1, 1}},
		{"a gather time shorter than the gaps", 100 * time.Microsecond, 16, []int{1, 1, 1, 1, 1, 2}},
		{"the round's four share one batch, later ones another", time.Millisecond, 16, []int{4, 1, 2}},
		{"the wait restarts with each delivery, up to the batch", time.Millisecond, 3, []int{3, 1, 1, 2}},
		{"a gather time longer than the pauses", 4 * time.Millisecond, 16, []int{5, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				var mu sync.Mutex
				var sizes []int
				do := consumer.NewTestBatcher(ctx, 1, tc.max, tc.gather, func(size int) {
					mu.Lock()
					sizes = append(sizes, size)
					mu.Unlock()
				})
				var wg sync.WaitGroup
				for _, at := range arrivals {
					wg.Go(func() {
						time.Sleep(at)
						if alone := do(); alone {
							t.Errorf("the delivery at %v went alone", at)
						}
					})
				}
				wg.Wait()
				mu.Lock()
				defer mu.Unlock()
				if !slices.Equal(sizes, tc.want) {
					t.Errorf("batch sizes %v, want %v", sizes, tc.want)
				}
			})
		})
	}
}

func TestAGroupThatBatchesHoldsTwoBatchesSoABacklogDrainsInFullOnes(t *testing.T) {
	t.Parallel()
	handlers := map[string]consumer.Handler{"order.placed": echo}
	for _, tc := range []struct {
		name               string
		group              consumer.Group
		concurrency, batch int
		want               int
	}{
		{"a group that does not batch: its concurrency", consumer.Group{Handlers: handlers}, 8, 16, 8},
		{"batches of 16: two of them", consumer.Group{Handlers: handlers, Batches: true}, 8, 16, 32},
		{"a concurrency above two batches: the concurrency", consumer.Group{Handlers: handlers, Batches: true}, 40, 16, 40},
		{"batches of one, which are none: the concurrency", consumer.Group{Handlers: handlers, Batches: true}, 1, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := consumer.InHand(tc.group, tc.concurrency, tc.batch); got != tc.want {
				t.Errorf("InHand = %d, want %d", got, tc.want)
			}
		})
	}

	// A backlog: every handler takes its next delivery as soon as its last
	// one is done. With as many in hand as InHand says, every batch after
	// the first two is full; with one batch's worth, two batches in a row
	// would hold one batch between them.
	t.Run("a backlog", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			const batch, rounds = 4, 20
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var mu sync.Mutex
			var sizes []int
			do := consumer.NewTestBatcher(ctx, 1, batch, 0, func(size int) {
				mu.Lock()
				sizes = append(sizes, size)
				mu.Unlock()
				time.Sleep(time.Millisecond) // the transaction
			})
			var wg sync.WaitGroup
			for range consumer.InHand(consumer.Group{Handlers: handlers, Batches: true}, 1, batch) {
				wg.Go(func() {
					for ctx.Err() == nil {
						do()
					}
				})
			}
			for {
				time.Sleep(time.Millisecond)
				mu.Lock()
				n := len(sizes)
				mu.Unlock()
				if n >= rounds {
					break
				}
			}
			cancel()
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			for i, size := range sizes[2:rounds] {
				if size != batch {
					t.Fatalf("batch %d held %d deliveries, want %d (sizes %v)", i+2, size, batch, sizes[:rounds])
				}
			}
		})
	})
}

func TestProjectionsApplyABatchInOneCallAndAFailedEventAlone(t *testing.T) {
	t.Parallel()
	const concurrency = 8
	metrics := consumer.NewMetrics(prometheus.NewRegistry())
	envs := envelopes(t, 30)
	// The failing event is chosen in the first call that gets several
	// events at once, whichever it is (RabbitMQ hands out the first
	// concurrency events, and which of them come first, alone or a few at
	// once, depends on the subscriptions' goroutines; the first call waits
	// until the rest are in hand, so calls of several follow): that
	// call's batch fails, and each of its events is applied alone.
	var failing outbox.Envelope
	var mu sync.Mutex
	projected := map[uuid.UUID]int{}
	largest := 0 // the most events ProjectEach got at once
	urls := make(chan string, 1)
	var first sync.Once
	hold := func() { first.Do(func() { waitInHand(<-urls, len(envs)-concurrency) }) }
	x := start(t, echo, func(c *consumer.Config) {
		c.Group.Handlers = nil
		c.Batch, c.Concurrency, c.Prefetch, c.Metrics, c.MaxRetries = 16, concurrency, 1, metrics, 1
		c.Group.Project = func(_ context.Context, e outbox.Envelope) (bool, error) {
			hold()
			mu.Lock()
			defer mu.Unlock()
			if e.ID == failing.ID {
				return false, fmt.Errorf("project: %w", domain.ErrInvalid)
			}
			projected[e.ID]++
			return true, nil
		}
		c.Group.ProjectEach = func(_ context.Context, events []outbox.Envelope) ([]bool, []error) {
			hold()
			mu.Lock()
			defer mu.Unlock()
			largest = max(largest, len(events))
			if failing.ID == uuid.Nil && len(events) >= 2 {
				failing = events[len(events)-1]
			}
			changed, errs := make([]bool, len(events)), make([]error, len(events))
			for i, e := range events {
				if e.ID == failing.ID {
					errs[i] = fmt.Errorf("project: %w", domain.ErrInvalid)
					continue
				}
				projected[e.ID]++
				changed[i] = true
			}
			return changed, errs
		}
	})
	for _, env := range envs {
		x.publishEnvelope(t, env)
	}
	urls <- x.url // the first Project waits for it: see holding
	dead := x.waitDead(t, 1)
	mu.Lock()
	failed := failing
	mu.Unlock()
	if dead[0].ID != failed.ID.String() {
		t.Errorf("%s went to the dead queue (%s), want only %s", dead[0].ID, dead[0].Reason, failed.ID)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, env := range envs {
			if n := projected[env.ID]; env.ID != failing.ID && n != 1 {
				return fmt.Errorf("event %s projected %d times, want once", env.ID, n)
			}
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if largest < 2 {
		t.Errorf("ProjectEach got %d events at most, want the deliveries that waited, at once", largest)
	}
	if failed, events := batches(t, metrics, "failed"); failed == 0 || events < 2 {
		t.Errorf("%d failed batches held %.0f deliveries, want the failing event's batch among them", failed, events)
	}
}

// TestEventAgeIsCountedOncePerAppliedEvent: every event a group applies is
// observed once, with its age from occurred_at to its commit; a duplicate
// is not.
func TestEventAgeIsCountedOncePerAppliedEvent(t *testing.T) {
	t.Parallel()
	metrics := consumer.NewMetrics(prometheus.NewRegistry())
	x := start(t, echo, func(c *consumer.Config) { c.Metrics = metrics })
	envs := envelopes(t, 5)
	for i := range envs {
		envs[i].OccurredAt = time.Now().Add(-2 * time.Second).UTC() // waited two seconds in the outbox
		x.publishEnvelope(t, envs[i])
	}
	x.publishEnvelope(t, envs[0]) // a duplicate
	testenv.Eventually(t, 20*time.Second, func() error { return echoes(t, x, envs) })
	var out dto.Metric
	testenv.Eventually(t, 10*time.Second, func() error {
		testenv.Must(t, metrics.EventAge.WithLabelValues(group.Group).(prometheus.Histogram).Write(&out), "read event age")
		if n := out.GetHistogram().GetSampleCount(); n != uint64(len(envs)) {
			return fmt.Errorf("%d event ages observed, want %d", n, len(envs))
		}
		return nil
	})
	if sum := out.GetHistogram().GetSampleSum(); sum < 2*float64(len(envs)) {
		t.Errorf("ages sum to %.2f s, want at least 2 s each", sum)
	}
}
