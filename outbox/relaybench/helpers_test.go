package relaybench_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/domain"
	"github.com/shopdev/shop/outbox"
)

// config is the benchmark's sizes and durations (see doc.go).
type config struct {
	backlog      int
	drainTimeout time.Duration
	load         time.Duration
	paced        time.Duration
	rate         float64
	writers      int
	grace        time.Duration
	batchSize    int
	workers      int
	vacuumAfter  int
	linger       time.Duration
	apart        bool // the writers in a process of their own
	writersNice  int  // with apart, the writers' nice value (0: as this process)
	maxPending   int  // ours: the writers wait at an outbox.Backlog of this bound, as the API does (0: never)
}

func loadConfig(b *testing.B) config {
	b.Helper()
	c := config{
		backlog:      envInt(b, "RELAYBENCH_BACKLOG", 100_000),
		drainTimeout: envDuration(b, "RELAYBENCH_DRAIN_TIMEOUT", 8*time.Minute),
		load:         envDuration(b, "RELAYBENCH_LOAD", 20*time.Second),
		paced:        envDuration(b, "RELAYBENCH_PACED", 10*time.Second),
		rate:         float64(envInt(b, "RELAYBENCH_RATE", 1000)),
		writers:      envInt(b, "RELAYBENCH_WRITERS", 8),
		grace:        envDuration(b, "RELAYBENCH_GRACE", 30*time.Second),
		batchSize:    envInt(b, "RELAYBENCH_BATCH", 0),
		workers:      envInt(b, "RELAYBENCH_WORKERS", 0),
		vacuumAfter:  envInt(b, "RELAYBENCH_VACUUM_AFTER", 0),
		linger:       envDuration(b, "RELAYBENCH_LINGER", 2*time.Millisecond), // RELAY_LINGER's default
		apart:        envInt(b, "RELAYBENCH_APART", 0) == 1,
		writersNice:  envInt(b, "RELAYBENCH_WRITERS_NICE", 0),
		maxPending:   envInt(b, "RELAYBENCH_MAX_PENDING", 0),
	}
	if c.maxPending < 0 {
		b.Fatalf("relaybench: RELAYBENCH_MAX_PENDING=%d: 0 (off) or more", c.maxPending)
	}
	if c.writersNice < 0 || c.writersNice > 19 || (c.writersNice > 0 && !c.apart) {
		b.Fatalf("relaybench: RELAYBENCH_WRITERS_NICE=%d: from 0 to 19, and only with RELAYBENCH_APART=1", c.writersNice)
	}
	if c.backlog < 1 || c.writers < 1 || c.rate <= 0 || c.load <= 0 || c.paced <= 0 {
		b.Fatalf("relaybench: backlog, writers, rate and durations must be positive: %+v", c)
	}
	return c
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		b.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		b.Fatalf("%s=%q: %v", name, v, err)
	}
	return d
}

// logger is for the systems under test: warnings and errors only, so that a
// misbehaving contender shows up in the output.
var logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// routingKey is the type of every benchmark event: it reaches the inventory
// and projections quorum queues, and the sink.
const routingKey = "order.placed"

// topology routes the benchmark's events as shop's routes order.placed: to
// the inventory and projections groups' queues.
var topology = outbox.Topology{
	{Group: "inventory", Keys: []string{routingKey}},
	{Group: "projections", Keys: []string{routingKey}},
}

// payloadSize is the target size of every published message body.
const payloadSize = 300

type padding struct {
	Note string `json:"note"`
}

var (
	padOnce sync.Once
	pad     padding
)

// newEvent returns a fresh order.placed event whose envelope is about
// payloadSize bytes of JSON.
func newEvent() domain.Event {
	padOnce.Do(func() {
		e := domain.NewEvent(routingKey, "order", uuid.New(), 1, time.Now(), padding{})
		n := len(envelope(e))
		pad = padding{Note: strings.Repeat("x", max(0, payloadSize-n))}
	})
	return domain.NewEvent(routingKey, "order", uuid.New(), 1, time.Now(), pad)
}

// envelope is e as the relay publishes it.
func envelope(e domain.Event) []byte {
	env, err := outbox.NewEnvelope(e, outbox.Metadata{})
	if err != nil {
		panic(err)
	}
	body, err := json.Marshal(env)
	if err != nil {
		panic(err)
	}
	return body
}

// recorder keeps when each event was committed (or, for bare AMQP,
// published and then confirmed).
type recorder struct {
	mu sync.Mutex
	at map[uuid.UUID]time.Time
	n  atomic.Int64
	// stream, when set, takes each commit instead of the map: the writers
	// apart send theirs to the parent (apart_test.go).
	stream func(id uuid.UUID, at time.Time)
}

func newRecorder(size int) *recorder {
	return &recorder{at: make(map[uuid.UUID]time.Time, size)}
}

func (r *recorder) add(id uuid.UUID, at time.Time) {
	if r.stream != nil {
		r.stream(id, at)
		r.n.Add(1)
		return
	}
	r.mu.Lock()
	r.at[id] = at
	r.mu.Unlock()
	r.n.Add(1)
}

func (r *recorder) count() int64 { return r.n.Load() }

// sinkQueue is the extra queue, bound to every key, that the benchmark
// consumes to see what arrived.
const sinkQueue = "relaybench.sink"

// sink consumes sinkQueue and keeps each event's first arrival.
type sink struct {
	conn *amqp.Connection

	mu      sync.Mutex
	arrived map[uuid.UUID]time.Time
	target  int
	reached chan struct{}
	n       atomic.Int64
	dups    atomic.Int64
	bad     atomic.Int64
	done    chan struct{}
}

// newSink declares the topology and the sink queue, and
// starts consuming it, before anything is published.
func newSink(b *testing.B, amqpURL string, size int) *sink {
	b.Helper()
	conn, err := amqp.DialConfig(amqpURL, amqp.Config{Properties: amqp.Table{"connection_name": "relaybench sink"}})
	if err != nil {
		b.Fatalf("sink: %v", err)
	}
	s := &sink{conn: conn, arrived: make(map[uuid.UUID]time.Time, size), done: make(chan struct{})}
	ch, err := conn.Channel()
	if err == nil {
		err = topology.Declare(ch)
	}
	if err == nil {
		_, err = ch.QueueDeclare(sinkQueue, true, false, false, false, nil)
	}
	if err == nil {
		err = ch.QueueBind(sinkQueue, "#", outbox.Exchange, false, nil)
	}
	if err == nil {
		err = ch.Qos(1000, 0, false)
	}
	var deliveries <-chan amqp.Delivery
	if err == nil {
		deliveries, err = ch.Consume(sinkQueue, "relaybench", false, true, false, false, nil)
	}
	if err != nil {
		_ = conn.Close()
		b.Fatalf("sink: %v", err)
	}
	go s.consume(deliveries)
	return s
}

func (s *sink) consume(deliveries <-chan amqp.Delivery) {
	defer close(s.done)
	var unacked int
	for d := range deliveries {
		now := time.Now()
		id, ok := eventID(d.Body)
		if !ok {
			s.bad.Add(1)
		} else {
			s.mu.Lock()
			if _, seen := s.arrived[id]; seen {
				s.dups.Add(1)
			} else {
				s.arrived[id] = now
				if n := s.n.Add(1); s.reached != nil && int(n) >= s.target {
					close(s.reached)
					s.reached = nil
				}
			}
			s.mu.Unlock()
		}
		if unacked++; unacked == 200 {
			_ = d.Ack(true)
			unacked = 0
		}
	}
}

// eventID reads the "id" of an envelope, which json.Marshal writes first.
func eventID(body []byte) (uuid.UUID, bool) {
	const prefix = `{"id":"`
	if len(body) >= len(prefix)+36 && bytes.HasPrefix(body, []byte(prefix)) {
		if id, err := uuid.ParseBytes(body[len(prefix) : len(prefix)+36]); err == nil {
			return id, true
		}
	}
	var env struct {
		ID uuid.UUID `json:"id"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.ID == uuid.Nil {
		return uuid.Nil, false
	}
	return env.ID, true
}

// count is how many distinct events arrived.
func (s *sink) count() int64 { return s.n.Load() }

// await returns a channel closed once n distinct events arrived.
func (s *sink) await(n int) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(chan struct{})
	if int(s.n.Load()) >= n {
		close(c)
		return c
	}
	s.target, s.reached = n, c
	return c
}

// waitFor waits until n distinct events arrived or timeout passed, and
// reports whether they did.
func (s *sink) waitFor(n int, timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-s.await(n):
		return true
	case <-t.C:
		return false
	}
}

func (s *sink) close() {
	_ = s.conn.Close()
	<-s.done
}

// latency is the commit→arrival time of the events of rec, at the given
// percentiles. An event that has not arrived counts as later than every
// one that has, with (now - commit) as a lower bound; lower says that the
// percentile fell on such an event.
func (s *sink) latency(rec *recorder, now time.Time, pcts ...float64) (vals []time.Duration, lower []bool) {
	type sample struct {
		d       time.Duration
		missing bool
	}
	rec.mu.Lock()
	s.mu.Lock()
	samples := make([]sample, 0, len(rec.at))
	for id, committed := range rec.at {
		if arrived, ok := s.arrived[id]; ok {
			samples = append(samples, sample{d: arrived.Sub(committed)})
		} else {
			samples = append(samples, sample{d: now.Sub(committed), missing: true})
		}
	}
	s.mu.Unlock()
	rec.mu.Unlock()
	slices.SortFunc(samples, func(a, b sample) int {
		if a.missing != b.missing {
			if a.missing {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.d, b.d)
	})
	for _, p := range pcts {
		if len(samples) == 0 {
			vals, lower = append(vals, 0), append(lower, true)
			continue
		}
		i := min(len(samples)-1, int(p/100*float64(len(samples))))
		vals, lower = append(vals, samples[i].d), append(lower, samples[i].missing)
	}
	return vals, lower
}

// writer commits one event per call to commit, each in a transaction of its
// own, and adds it to the recorder once it is durable.
type writer interface {
	commit(ctx context.Context) error
	close(ctx context.Context) error
}

// runWriters runs n writers until the deadline; with rate > 0 they pace
// themselves to rate events/s in total. It returns the first error.
func runWriters(ctx context.Context, sys system, rec *recorder, n int, d time.Duration, rate float64) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	deadline := start.Add(d)
	ctx, cancel := context.WithDeadline(ctx, deadline.Add(30*time.Second))
	defer cancel()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := sys.newWriter(ctx, rec)
			if err != nil {
				errs <- err
				return
			}
			var interval time.Duration
			next := start
			if rate > 0 {
				interval = time.Duration(float64(n) / rate * float64(time.Second))
				next = start.Add(interval * time.Duration(i) / time.Duration(n))
			}
			for {
				if rate > 0 {
					time.Sleep(time.Until(next))
					next = next.Add(interval)
				}
				if !time.Now().Before(deadline) {
					break
				}
				if err := w.commit(ctx); err != nil {
					errs <- err
					break
				}
			}
			if err := w.close(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}
