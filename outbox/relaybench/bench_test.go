package relaybench_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopdev/shop/internal/testenv"
)

// system is one contender, on a database and a vhost of its own.
type system interface {
	// backlog puts n events in the outbox, untimed, before start; with
	// n = 0 it only settles the database (ANALYZE, CHECKPOINT).
	backlog(ctx context.Context, n int) error
	// start starts relaying; stop stops it and waits until it stopped.
	start(ctx context.Context) (stop func(), err error)
	// newWriter returns a writer of one event per transaction.
	newWriter(ctx context.Context, rec *recorder) (writer, error)
	// endpoints are the database and the broker the writers apart attach
	// to ("" for none).
	endpoints() (dbURL, amqpURL string)
}

// drainer is a system whose drain is over only when it says so as well:
// bare AMQP, once every publish of the backlog is confirmed.
type drainer interface {
	drained() <-chan error
}

// rounder is a system that can say how its relay's rounds went: ours,
// from the relay's own metrics.
type rounder interface {
	rounds() rounds
}

type contender struct {
	name string
	open func(b *testing.B, cfg config, amqpURL string) system
	// writers attaches to the endpoints of a system that open made, for
	// the writers apart: only its newWriter is used.
	writers func(ctx context.Context, cfg config, dbURL, amqpURL string) (system, func(), error)
}

func contenders() []contender {
	ours := func(ctx context.Context, cfg config, dbURL, amqpURL string) (system, func(), error) {
		return oursWriters(ctx, cfg, dbURL, amqpURL)
	}
	wm := func(tuned bool) func(ctx context.Context, cfg config, dbURL, amqpURL string) (system, func(), error) {
		return func(ctx context.Context, cfg config, dbURL, amqpURL string) (system, func(), error) {
			return wmWriters(ctx, cfg, dbURL, amqpURL, tuned)
		}
	}
	bare := func(ctx context.Context, cfg config, dbURL, amqpURL string) (system, func(), error) {
		return bareWriters(ctx, cfg, dbURL, amqpURL)
	}
	return []contender{
		{"ours, 1 replica", func(b *testing.B, cfg config, amqpURL string) system { return openOurs(b, cfg, amqpURL, 1) }, ours},
		{"ours, 2 replicas", func(b *testing.B, cfg config, amqpURL string) system { return openOurs(b, cfg, amqpURL, 2) }, ours},
		{"watermill forwarder, defaults", func(b *testing.B, cfg config, amqpURL string) system {
			return openWatermill(b, cfg, amqpURL, false)
		}, wm(false)},
		{"watermill forwarder, tuned", func(b *testing.B, cfg config, amqpURL string) system {
			return openWatermill(b, cfg, amqpURL, true)
		}, wm(true)},
		{"bare amqp091-go (ceiling)", openBare, bare},
	}
}

// BenchmarkRelay measures every contender in turn: drain, load, paced, each
// on a fresh database and vhost. Run it with -benchtime 1x: one iteration
// is one whole measurement, and its figures are the custom metrics (ns/op
// is suppressed).
func BenchmarkRelay(b *testing.B) {
	cfg := loadConfig(b)
	where := "in this process"
	if cfg.apart {
		where = "in a process of their own"
	}
	b.Logf("config: backlog %d, drain timeout %s, load %s with %d writers %s, paced %s at %.0f events/s, grace %s",
		cfg.backlog, cfg.drainTimeout, cfg.load, cfg.writers, where, cfg.paced, cfg.rate, cfg.grace)
	for _, c := range contenders() {
		b.Run(benchName(c.name), func(b *testing.B) {
			res := resultFor(c.name)
			b.Run("drain", func(b *testing.B) { benchDrain(b, c, cfg, res) })
			b.Run("load", func(b *testing.B) { benchLoad(b, c, cfg, res, false) })
			b.Run("paced", func(b *testing.B) { benchLoad(b, c, cfg, res, true) })
			b.Logf("\n%s", res.row())
		})
	}
}

// benchName is a contender's name as a sub-benchmark name.
func benchName(name string) string {
	r := strings.NewReplacer(", ", "-", " ", "-", "(", "", ")", "")
	return r.Replace(name)
}

func benchDrain(b *testing.B, c contender, cfg config, res *result) {
	ctx := context.Background()
	amqpURL := testenv.AMQPURL(b)
	sys := c.open(b, cfg, amqpURL)
	s := newSink(b, amqpURL, cfg.backlog)
	defer s.close()
	if err := sys.backlog(ctx, cfg.backlog); err != nil {
		b.Fatalf("backlog: %v", err)
	}
	arrived := s.await(cfg.backlog)
	timeout := time.NewTimer(cfg.drainTimeout)
	defer timeout.Stop()

	cpu0 := testenv.SnapCPU()
	b.ResetTimer()
	t0 := time.Now()
	stop, err := sys.start(ctx)
	if err != nil {
		b.Fatalf("start: %v", err)
	}
	defer stop()
	partial := false
	select {
	case <-arrived:
	case <-timeout.C:
		partial = true
	}
	if d, ok := sys.(drainer); ok && !partial {
		select {
		case err := <-d.drained():
			if err != nil {
				b.Fatalf("publish backlog: %v", err)
			}
		case <-timeout.C:
			partial = true
		}
	}
	elapsed := time.Since(t0)
	b.StopTimer()
	cpu := testenv.SnapCPU().Since(cpu0)

	n := s.count()
	rate := float64(n) / elapsed.Seconds()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(elapsed.Seconds(), "s")
	b.ReportMetric(cpu.Busy, "cpu-busy-%")
	status := "drained"
	if partial {
		status = fmt.Sprintf("NOT drained: %d of %d arrived before the %s timeout", n, cfg.backlog, cfg.drainTimeout)
	}
	b.Logf("%s: drain %d events: %s in %.2fs = %.0f events/s (duplicates %d) [%s]",
		c.name, cfg.backlog, status, elapsed.Seconds(), rate, s.dups.Load(), cpu)
	res.set(func(r *result) {
		r.drain = &drainResult{rate: rate, partial: partial, arrived: n, cpu: cpu}
	})
}

func benchLoad(b *testing.B, c contender, cfg config, res *result, paced bool) {
	ctx := context.Background()
	d, rate, what := cfg.load, 0.0, "load"
	if paced {
		d, rate, what = cfg.paced, cfg.rate, "paced"
	}
	amqpURL := testenv.AMQPURL(b)
	sys := c.open(b, cfg, amqpURL)
	expect := int(cfg.rate * d.Seconds())
	if !paced {
		expect = 8000 * int(d.Seconds())
	}
	s := newSink(b, amqpURL, expect)
	defer s.close()
	if err := sys.backlog(ctx, 0); err != nil {
		b.Fatalf("settle: %v", err)
	}
	stop, err := sys.start(ctx)
	if err != nil {
		b.Fatalf("start: %v", err)
	}
	defer stop()

	// One event through the whole path first, so that connections are up.
	warm := newRecorder(1)
	w, err := sys.newWriter(ctx, warm)
	if err == nil {
		err = w.commit(ctx)
	}
	if err == nil {
		err = w.close(ctx)
	}
	if err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	if !s.waitFor(1, time.Minute) {
		b.Fatal("warm-up event did not arrive within a minute")
	}

	rec := newRecorder(expect)
	// The backlog every 5 s shows whether the relay keeps up (it stays
	// level) or falls behind (it grows).
	var samples []int64
	sampling, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-sampling.Done():
				return
			case <-tick.C:
				samples = append(samples, max(0, rec.count()-(s.count()-1)))
			}
		}
	}()
	var apart *writersApart
	if cfg.apart {
		dbURL, amqpURL := sys.endpoints()
		spec := childSpec{contender: c.name, dbURL: dbURL, amqpURL: amqpURL, writers: cfg.writers, d: d, rate: rate, nice: cfg.writersNice, maxPending: cfg.maxPending}
		if apart, err = startWritersApart(ctx, spec, rec); err != nil {
			b.Fatal(err)
		}
	}
	var rounds0 rounds
	r, isRounder := sys.(rounder)
	if isRounder {
		rounds0 = r.rounds()
	}
	cpu0 := testenv.SnapCPU()
	b.ResetTimer()
	t0 := time.Now()
	if apart != nil {
		err = apart.run()
	} else {
		err = runWriters(ctx, sys, rec, cfg.writers, d, rate)
	}
	end := time.Now()
	stopSampling()
	<-sampled
	b.StopTimer()
	cpu := testenv.SnapCPU().Since(cpu0)
	if isRounder {
		defer b.Logf("%s: the relay's rounds over the %s phase: %s", c.name, what, r.rounds().since(rounds0))
	}
	if apart != nil && err == nil {
		err = apart.stop(nil)
	}
	if err != nil {
		b.Errorf("writers: %v", err)
	}
	elapsed := end.Sub(t0).Seconds()
	committed, received := rec.count(), s.count()-1
	backlog := max(0, committed-received)

	// Wait for the stragglers, so that late events count with their real
	// latency rather than as lower bounds.
	caughtUp := s.waitFor(int(committed)+1, cfg.grace)
	lat, lower := s.latency(rec, time.Now(), 50, 99)
	missing := committed + 1 - s.count()

	lr := loadResult{
		committed: float64(committed) / elapsed,
		received:  float64(received) / elapsed,
		backlog:   backlog,
		p50:       lat[0], p99: lat[1],
		p50Lower: lower[0], p99Lower: lower[1],
		missing: missing,
		cpu:     cpu,
	}
	b.ReportMetric(0, "ns/op")
	if !paced {
		b.ReportMetric(lr.committed, "committed-ev/s")
		b.ReportMetric(lr.received, "received-ev/s")
		b.ReportMetric(float64(backlog), "backlog-ev")
	} else {
		b.ReportMetric(lr.committed, "offered-ev/s")
	}
	b.ReportMetric(ms(lr.p50), "p50-ms")
	b.ReportMetric(ms(lr.p99), "p99-ms")
	b.ReportMetric(cpu.Busy, "cpu-busy-%")
	note := ""
	if !caughtUp {
		note = fmt.Sprintf("; %d events still missing %s after the writers stopped", missing, cfg.grace)
	}
	where := ""
	if cfg.apart {
		where = " in a process of their own"
	}
	b.Logf("%s: %s %.1fs, %d writers%s: committed %d (%.0f/s), received %d (%.0f/s), backlog %d (every 5 s: %v); commit→arrival p50 %s%s, p99 %s%s (duplicates %d)%s [%s]",
		c.name, what, elapsed, cfg.writers, where, committed, lr.committed, received, lr.received, backlog, samples,
		atLeast(lr.p50Lower), fmtMS(lr.p50), atLeast(lr.p99Lower), fmtMS(lr.p99), s.dups.Load(), note, cpu)
	res.set(func(r *result) {
		if paced {
			r.paced = &lr
		} else {
			r.load = &lr
		}
	})
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtMS(d time.Duration) string {
	switch m := ms(d); {
	case m >= 100:
		return fmt.Sprintf("%.0f ms", m)
	case m >= 10:
		return fmt.Sprintf("%.1f ms", m)
	default:
		return fmt.Sprintf("%.2f ms", m)
	}
}

func atLeast(lower bool) string {
	if lower {
		return "≥ "
	}
	return ""
}

type drainResult struct {
	rate    float64
	partial bool
	arrived int64
	cpu     testenv.CPUUse
}

type loadResult struct {
	committed, received float64
	backlog             int64
	p50, p99            time.Duration
	p50Lower, p99Lower  bool
	missing             int64
	cpu                 testenv.CPUUse
}

// result is one contender's figures, for the markdown table.
type result struct {
	name  string
	drain *drainResult
	load  *loadResult
	paced *loadResult
}

var results struct {
	sync.Mutex
	list []*result
}

func resultFor(name string) *result {
	results.Lock()
	defer results.Unlock()
	for _, r := range results.list {
		if r.name == name {
			return r
		}
	}
	r := &result{name: name}
	results.list = append(results.list, r)
	return r
}

func (r *result) set(f func(*result)) {
	results.Lock()
	defer results.Unlock()
	f(r)
}

const tableHeader = `| contender | drain (events/s) | load: committed/s | load: received/s | load: backlog at end | load: p50 / p99 commit→arrival | paced: p50 / p99 commit→arrival | CPU busy (drain / load / paced); others' CPU |
|---|---:|---:|---:|---:|---:|---:|---|`

// row is the contender's line of the markdown table.
func (r *result) row() string {
	results.Lock()
	defer results.Unlock()
	cell := func(ok bool, f func() string) string {
		if !ok {
			return "—"
		}
		return f()
	}
	drain := cell(r.drain != nil, func() string {
		if r.drain.partial {
			return fmt.Sprintf("%s (not drained: %d in the timeout)", thousands(r.drain.rate), r.drain.arrived)
		}
		return thousands(r.drain.rate)
	})
	lat := func(l *loadResult) string {
		return fmt.Sprintf("%s%s / %s%s", atLeast(l.p50Lower), fmtMS(l.p50), atLeast(l.p99Lower), fmtMS(l.p99))
	}
	var cpu, others []string
	for _, u := range []*testenv.CPUUse{r.drainCPU(), r.loadCPU(r.load), r.loadCPU(r.paced)} {
		if u == nil {
			cpu, others = append(cpu, "—"), append(others, "—")
			continue
		}
		cpu = append(cpu, fmt.Sprintf("%.0f%%", u.Busy))
		others = append(others, fmt.Sprintf("%.0f%%", u.Others()))
	}
	return fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s | %s; %s |",
		r.name, drain,
		cell(r.load != nil, func() string { return thousands(r.load.committed) }),
		cell(r.load != nil, func() string { return thousands(r.load.received) }),
		cell(r.load != nil, func() string { return thousands(float64(r.load.backlog)) }),
		cell(r.load != nil, func() string { return lat(r.load) }),
		cell(r.paced != nil, func() string { return lat(r.paced) }),
		strings.Join(cpu, " / "), strings.Join(others, " / "))
}

func (r *result) drainCPU() *testenv.CPUUse {
	if r.drain == nil {
		return nil
	}
	return &r.drain.cpu
}

func (r *result) loadCPU(l *loadResult) *testenv.CPUUse {
	if l == nil {
		return nil
	}
	return &l.cpu
}

// thousands formats a rate as 12,345.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func printTable(w io.Writer) {
	results.Lock()
	list := results.list
	results.Unlock()
	if len(list) == 0 {
		return
	}
	fmt.Fprintln(w, "\nrelaybench results (paste into BENCHMARKS.md):")
	fmt.Fprintln(w, tableHeader)
	for _, r := range list {
		fmt.Fprintln(w, r.row())
	}
	fmt.Fprintln(w, "\nCPU busy: % of both cores over the phase; others' CPU: % of one core used by processes other than this benchmark, Postgres and RabbitMQ. ≥: the percentile fell on an event that had not arrived when the grace period ended.")
}

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "writers" {
		os.Exit(writersChild())
	}
	code := m.Run()
	printTable(os.Stdout)
	os.Exit(code)
}
