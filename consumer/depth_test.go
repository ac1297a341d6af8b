package consumer_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/consumer"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
)

// The depth tests sample a group of their own, each on a vhost of its own.
var (
	depthRoute    = outbox.Route{Group: "depth", Keys: []string{"stock.reserved"}}
	depthTopology = outbox.Topology{depthRoute}
)

const (
	managementAPI = "http://guest:guest@127.0.0.1:15672"
	depthInterval = 200 * time.Millisecond
	// managementLag bounds how long the management API's figures take to
	// follow the queues (statistics are collected every 5 s by default).
	managementLag = 30 * time.Second
)

// depthVHost is a vhost of the test's own with the depth topology declared:
// its broker, and a raw channel in confirm mode to publish and take
// messages with.
type depthVHost struct {
	broker *outbox.Broker
	ch     *amqp.Channel
}

func newDepthVHost(t *testing.T) *depthVHost {
	t.Helper()
	url := testenv.AMQPURL(t)
	b, err := outbox.NewBroker(outbox.BrokerConfig{URL: url, Topology: depthTopology, Logger: slog.New(slog.DiscardHandler)})
	testenv.Must(t, err, "broker")
	t.Cleanup(func() { _ = b.Close() })
	conn, err := amqp.Dial(url)
	testenv.Must(t, err, "dial rabbitmq")
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	testenv.Must(t, err, "open channel")
	testenv.Must(t, depthTopology.Declare(ch), "declare topology")
	testenv.Must(t, ch.Confirm(false), "confirm mode")
	return &depthVHost{broker: b, ch: ch}
}

// offlineBroker is a broker of the depth topology that the test never
// dials: NewBroker does not connect.
func offlineBroker(t *testing.T, url string) *outbox.Broker {
	t.Helper()
	b, err := outbox.NewBroker(outbox.BrokerConfig{URL: url, Topology: depthTopology, Logger: slog.New(slog.DiscardHandler)})
	testenv.Must(t, err, "broker")
	return b
}

// publish puts n messages in queue and waits for RabbitMQ to confirm them.
func (v *depthVHost) publish(t *testing.T, queue string, n int) {
	t.Helper()
	for i := range n {
		dc, err := v.ch.PublishWithDeferredConfirmWithContext(context.Background(), "", queue, true, false, amqp.Publishing{
			ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: fmt.Sprint("m", i), Body: []byte(`{}`),
		})
		testenv.Must(t, err, "publish")
		if ok, err := dc.WaitContext(context.Background()); err != nil || !ok {
			t.Fatalf("publish to %s: not confirmed (%v)", queue, err)
		}
	}
}

// take gets k messages of queue with manual acknowledgement and does not
// acknowledge them: they stay unacked until the channel closes.
func (v *depthVHost) take(t *testing.T, queue string, k int) {
	t.Helper()
	for range k {
		_, ok, err := v.ch.Get(queue, false)
		testenv.Must(t, err, "get")
		if !ok {
			t.Fatalf("%s is empty", queue)
		}
	}
}

// runDepth runs a Depth of cfg, with the test's defaults filled, until the
// test ends, and returns the registry its gauges are on.
func runDepth(t *testing.T, cfg consumer.DepthConfig) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	if cfg.Interval == 0 {
		cfg.Interval = depthInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d, err := consumer.NewDepth(cfg)
	testenv.Must(t, err, "new depth")
	testenv.Run(t, d.Run)
	return reg
}

// series is one series of a gauge.
type series struct {
	name   string
	labels map[string]string
}

func queueSeries(group, state string) series {
	return series{"shop_consumer_queue_messages", map[string]string{"group": group, "state": state}}
}

func deadSeries(group string) series {
	return series{"shop_consumer_dead_messages", map[string]string{"group": group}}
}

func (s series) String() string { return fmt.Sprintf("%s%v", s.name, s.labels) }

// read gathers reg and returns the series' value; ok is false when the
// series is not exported.
func (s series) read(t *testing.T, reg prometheus.Gatherer) (v float64, ok bool) {
	t.Helper()
	families, err := reg.Gather()
	testenv.Must(t, err, "gather")
	for _, f := range families {
		if f.GetName() != s.name {
			continue
		}
		for _, m := range f.GetMetric() {
			if matches(m, s.labels) {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

func matches(m *dto.Metric, labels map[string]string) bool {
	if len(m.GetLabel()) != len(labels) {
		return false
	}
	for _, l := range m.GetLabel() {
		if labels[l.GetName()] != l.GetValue() {
			return false
		}
	}
	return true
}

// want is what a series should show: a value, or absent.
type want struct {
	series
	value  float64
	absent bool
}

// waitFor waits until every series shows what it should.
func waitFor(t *testing.T, reg prometheus.Gatherer, timeout time.Duration, wants ...want) {
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		for _, w := range wants {
			v, ok := w.read(t, reg)
			switch {
			case w.absent && ok:
				return fmt.Errorf("%s = %v, want no such series", w.series, v)
			case !w.absent && !ok:
				return fmt.Errorf("%s is not exported, want %v", w.series, w.value)
			case !w.absent && v != w.value:
				return fmt.Errorf("%s = %v, want %v", w.series, v, w.value)
			}
		}
		return nil
	})
}

// depthModes are the two ways of sampling: through the management API
// (ready and unacked), and by passive declarations (ready only).
var depthModes = []struct {
	name       string
	management string
}{
	{"management api", managementAPI},
	{"passive declare", ""},
}

func TestDepthCountsReadyAndUnackedMessages(t *testing.T) {
	t.Parallel()
	const n, k = 5, 2
	for _, mode := range depthModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			v := newDepthVHost(t)
			v.publish(t, depthRoute.Queue(), n)
			reg := runDepth(t, consumer.DepthConfig{Broker: v.broker, ManagementURL: mode.management})

			// unacked: 0 with the management API; not exported at all
			// without it, rather than a made-up 0.
			unacked := func(count float64) want {
				return want{series: queueSeries(depthRoute.Group, "unacked"), value: count, absent: mode.management == ""}
			}
			waitFor(t, reg, managementLag,
				want{series: queueSeries(depthRoute.Group, "ready"), value: n}, unacked(0),
				want{series: deadSeries(depthRoute.Group), value: 0})

			v.take(t, depthRoute.Queue(), k)
			waitFor(t, reg, managementLag,
				want{series: queueSeries(depthRoute.Group, "ready"), value: n - k}, unacked(k),
				want{series: deadSeries(depthRoute.Group), value: 0})
		})
	}
}

func TestDepthCountsDeadMessages(t *testing.T) {
	t.Parallel()
	for _, mode := range depthModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			v := newDepthVHost(t)
			v.publish(t, depthRoute.DeadQueue(), 3)
			reg := runDepth(t, consumer.DepthConfig{Broker: v.broker, ManagementURL: mode.management})
			waitFor(t, reg, managementLag,
				want{series: deadSeries(depthRoute.Group), value: 3},
				want{series: queueSeries(depthRoute.Group, "ready"), value: 0})
		})
	}
}

func TestDepthSkipsAMissingQueue(t *testing.T) {
	t.Parallel()
	v := newDepthVHost(t)
	v.publish(t, depthRoute.Queue(), 2)
	// ghost's queues were never declared: its passive declaration closes
	// the channel, and the next queue's opens another, round after round.
	ghost := outbox.Route{Group: "ghost", Keys: []string{"stock.rejected"}}
	reg := runDepth(t, consumer.DepthConfig{Broker: v.broker, Routes: []outbox.Route{ghost, depthRoute}})
	waitFor(t, reg, 10*time.Second,
		want{series: queueSeries(depthRoute.Group, "ready"), value: 2},
		want{series: queueSeries(ghost.Group, "ready"), absent: true},
		want{series: deadSeries(ghost.Group), absent: true})
	v.publish(t, depthRoute.Queue(), 1)
	waitFor(t, reg, 10*time.Second,
		want{series: queueSeries(depthRoute.Group, "ready"), value: 3},
		want{series: queueSeries(ghost.Group, "ready"), absent: true})
}

// syncBuffer collects the log lines of a Depth running in the background.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// failedWarnings counts the warnings about failed samples in logs.
func failedWarnings(logs string) int {
	n := 0
	for line := range strings.Lines(logs) {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "sample failed") {
			n++
		}
	}
	return n
}

func TestDepthUnreachable(t *testing.T) {
	t.Parallel()
	// Closed ports; the password must show in no log line.
	tests := []struct {
		name       string
		amqpURL    string
		management string
	}{
		{"management api", "amqp://guest:s3cret@127.0.0.1:5672/", "http://guest:s3cret@127.0.0.1:1"},
		{"rabbitmq, passive declare", "amqp://guest:s3cret@127.0.0.1:1/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs syncBuffer
			reg := runDepth(t, consumer.DepthConfig{
				Broker: offlineBroker(t, tt.amqpURL), ManagementURL: tt.management,
				Interval: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			})
			testenv.Eventually(t, 10*time.Second, func() error {
				if n := failedWarnings(logs.String()); n != 2 {
					return fmt.Errorf("%d warnings, want one for the queue and one for its dead queue", n)
				}
				return nil
			})
			time.Sleep(time.Second) // more failed rounds
			waitFor(t, reg, time.Second,
				want{series: queueSeries(depthRoute.Group, "ready"), absent: true},
				want{series: queueSeries(depthRoute.Group, "unacked"), absent: true},
				want{series: deadSeries(depthRoute.Group), absent: true})
			out := logs.String()
			if n := failedWarnings(out); n != 2 {
				t.Errorf("%d warnings after several failed rounds, want 2 (once per failure streak):\n%s", n, out)
			}
			if strings.Contains(out, "s3cret") {
				t.Errorf("the password is in the logs:\n%s", out)
			}
		})
	}
}

func TestDepthRemovesStaleValues(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var paths []string
	var user, password string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.EscapedPath())
		user, password, _ = r.BasicAuth()
		mu.Unlock()
		_, _ = fmt.Fprint(w, `{"name":"x","messages_ready":7,"messages_unacknowledged":4}`)
	}))
	defer api.Close()
	// The broker is never dialled: the management API answers everything.
	b := offlineBroker(t, "amqp://guest:guest@127.0.0.1:5672")
	mgmt := strings.Replace(api.URL, "http://", "http://monitor:pa%2Fss@", 1)
	reg := runDepth(t, consumer.DepthConfig{Broker: b, ManagementURL: mgmt, Interval: 50 * time.Millisecond})

	waitFor(t, reg, 5*time.Second,
		want{series: queueSeries(depthRoute.Group, "ready"), value: 7},
		want{series: queueSeries(depthRoute.Group, "unacked"), value: 4},
		want{series: deadSeries(depthRoute.Group), value: 11})
	mu.Lock()
	gotUser, gotPassword, gotPaths := user, password, paths[:2]
	mu.Unlock()
	if gotUser != "monitor" || gotPassword != "pa/ss" {
		t.Errorf("basic auth %q:%q, want monitor:pa/ss", gotUser, gotPassword)
	}
	// The default vhost "/" is escaped.
	wantPaths := []string{"/api/queues/%2F/shop.depth", "/api/queues/%2F/shop.depth.dead"}
	if gotPaths[0] != wantPaths[0] || gotPaths[1] != wantPaths[1] {
		t.Errorf("requests to %q, want %q", gotPaths, wantPaths)
	}

	api.CloseClientConnections()
	api.Close() // the API goes away: the figures go with it
	waitFor(t, reg, 5*time.Second,
		want{series: queueSeries(depthRoute.Group, "ready"), absent: true},
		want{series: queueSeries(depthRoute.Group, "unacked"), absent: true},
		want{series: deadSeries(depthRoute.Group), absent: true})
}

func TestDepthConfigValidate(t *testing.T) {
	t.Parallel()
	broker := offlineBroker(t, "amqp://guest:guest@127.0.0.1:5672/")
	valid := func() consumer.DepthConfig {
		return consumer.DepthConfig{Broker: broker, Registerer: prometheus.NewRegistry()}
	}
	tests := []struct {
		name    string
		tune    func(*consumer.DepthConfig)
		wantErr string // "" for valid
	}{
		{"defaults", func(*consumer.DepthConfig) {}, ""},
		{"with a management api", func(c *consumer.DepthConfig) { c.ManagementURL = managementAPI }, ""},
		{"no broker", func(c *consumer.DepthConfig) { c.Broker = nil }, "broker is required"},
		{"no registerer", func(c *consumer.DepthConfig) { c.Registerer = nil }, "registerer is required"},
		{"negative interval", func(c *consumer.DepthConfig) { c.Interval = -time.Second }, "not positive"},
		{"no routes", func(c *consumer.DepthConfig) { c.Routes = []outbox.Route{} }, "no routes"},
		{"route without a group", func(c *consumer.DepthConfig) { c.Routes = []outbox.Route{{}} }, "without a group"},
		{"management url not http", func(c *consumer.DepthConfig) { c.ManagementURL = "amqp://guest:s3cret@127.0.0.1:15672" }, "management url"},
		{"management url not a url", func(c *consumer.DepthConfig) { c.ManagementURL = "http://guest:s3cret@127.0.0.1:port" }, "management url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := valid()
			tt.tune(&cfg)
			err := cfg.Validate()
			if tt.wantErr == "" {
				testenv.Must(t, err, "validate")
				if cfg.Interval != 5*time.Second || cfg.Logger == nil || cfg.HTTPClient == nil || len(cfg.Routes) != 1 || cfg.Routes[0].Group != depthRoute.Group {
					t.Errorf("defaults not filled: %+v", cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an error with %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

func TestDepthRegistersOncePerRegistry(t *testing.T) {
	t.Parallel()
	broker := offlineBroker(t, "amqp://guest:guest@127.0.0.1:5672/")
	reg := prometheus.NewRegistry()
	_, err := consumer.NewDepth(consumer.DepthConfig{Broker: broker, Registerer: reg})
	testenv.Must(t, err, "first depth")
	if _, err := consumer.NewDepth(consumer.DepthConfig{Broker: broker, Registerer: reg}); err == nil {
		t.Fatal("a second Depth registered the same gauges on the same registry")
	}
}
