package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/outbox"
)

// DepthConfig configures a Depth.
type DepthConfig struct {
	// Broker reaches RabbitMQ: its URL names the virtual host, and without
	// a ManagementURL the queues are inspected on a channel of its own
	// connection. Required.
	Broker *outbox.Broker
	// Routes are the groups whose queues are sampled: each group's queue
	// and dead queue, named as the topology names them. Default: every
	// route of the Broker's topology.
	Routes []outbox.Route
	// Registerer receives the gauges: the process's registry. Required.
	Registerer prometheus.Registerer
	// ManagementURL is RabbitMQ's management HTTP API, with its
	// credentials as userinfo (http://guest:guest@127.0.0.1:15672).
	// Optional: with it, both ready and unacknowledged messages are
	// sampled; without it, a passive queue declaration on the Broker's
	// connection gives the ready messages only, and state="unacked" is not
	// exported.
	ManagementURL string
	// Interval is the time between two rounds of samples. A round that has
	// not ended after Interval (at least a second) is cut short, and what
	// it did not sample counts as failed. Default 5s.
	Interval time.Duration
	// Logger receives a warning when a queue's sample starts failing (once
	// per failure streak) and a note when it works again. Default
	// slog.Default().
	Logger *slog.Logger
	// HTTPClient makes the management API's requests. Default a client
	// with a 10s timeout.
	HTTPClient *http.Client
}

// Validate fills defaults and checks the configuration.
func (c *DepthConfig) Validate() error {
	switch {
	case c.Broker == nil:
		return errors.New("queue depth: broker is required")
	case c.Registerer == nil:
		return errors.New("queue depth: registerer is required")
	case c.Interval < 0:
		return fmt.Errorf("queue depth: interval %s is not positive", c.Interval)
	}
	if c.ManagementURL != "" {
		if _, err := managementURL(c.ManagementURL); err != nil {
			return err
		}
	}
	if c.Routes == nil {
		c.Routes = c.Broker.Topology()
	}
	if len(c.Routes) == 0 {
		return errors.New("queue depth: no routes to sample")
	}
	for _, r := range c.Routes {
		if r.Group == "" {
			return errors.New("queue depth: a route without a group")
		}
	}
	if c.Interval == 0 {
		c.Interval = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return nil
}

// managementURL parses the management API's URL; an error never shows its
// password.
func managementURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the whole URL, password included.
		return nil, errors.New("queue depth: management url is not a URL")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("queue depth: management url %s: want http(s)://[user:password@]host[:port]", u.Redacted())
	}
	return u, nil
}

// Depth samples how many messages wait in the consumer groups' queues and
// exports them as Prometheus gauges:
//
//	shop_consumer_queue_messages{group, state="ready"|"unacked"}
//	shop_consumer_dead_messages{group}
//
// A sample that fails removes its series instead of leaving a stale value.
// One Depth serves every group of a process.
type Depth struct {
	cfg    DepthConfig
	mgmt   *url.URL // the management API without its credentials; nil: passive declarations
	user   *url.Userinfo
	vhost  string // the Broker's virtual host, for the management API
	queue  *prometheus.GaugeVec
	dead   *prometheus.GaugeVec
	failed map[string]bool // queue → its last sample failed

	ch      *amqp.Channel // the passive declarations' channel; reopened once closed
	chError error         // why the channel could not be opened this round
}

// NewDepth returns a Depth for cfg, its gauges registered with
// cfg.Registerer (once per registry).
func NewDepth(cfg DepthConfig) (*Depth, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Depth{
		cfg: cfg,
		queue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shop_consumer_queue_messages",
			Help: "Messages in the group's queue shop.<group>, by group and state: ready (waiting for a consumer) or unacked (delivered, not yet acknowledged; sampled only through RabbitMQ's management API).",
		}, []string{"group", "state"}),
		dead: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shop_consumer_dead_messages",
			Help: "Messages in the group's dead queue shop.<group>.dead, by group.",
		}, []string{"group"}),
		failed: map[string]bool{},
	}
	if cfg.ManagementURL != "" {
		u, _ := managementURL(cfg.ManagementURL) // valid: Validate parsed it
		d.user, u.User = u.User, nil
		u.Path, u.RawPath, u.RawQuery, u.Fragment = strings.TrimRight(u.Path, "/"), "", "", ""
		d.mgmt = u
		d.vhost = cfg.Broker.VHost()
	}
	if err := cfg.Registerer.Register(d.queue); err != nil {
		return nil, fmt.Errorf("queue depth: register %s: %w", "shop_consumer_queue_messages", err)
	}
	if err := cfg.Registerer.Register(d.dead); err != nil {
		cfg.Registerer.Unregister(d.queue)
		return nil, fmt.Errorf("queue depth: register %s: %w", "shop_consumer_dead_messages", err)
	}
	return d, nil
}

// Run samples every route's queues at once, then every Interval, until ctx
// ends; then it removes its series and returns nil. A sample that fails
// (RabbitMQ or its management API unreachable, a queue missing) is logged
// and its series removed, never an error of Run's.
func (d *Depth) Run(ctx context.Context) error {
	defer d.stop()
	tick := time.NewTicker(d.cfg.Interval)
	defer tick.Stop()
	for {
		d.sample(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// stop closes the channel and removes every series: once Run returns,
// nothing samples them any more.
func (d *Depth) stop() {
	if d.ch != nil {
		_ = d.ch.Close()
		d.ch = nil
	}
	for _, r := range d.cfg.Routes {
		d.queue.DeleteLabelValues(r.Group, "ready")
		d.queue.DeleteLabelValues(r.Group, "unacked")
		d.dead.DeleteLabelValues(r.Group)
	}
}

// counts are a queue's messages; unacked is known only through the
// management API.
type counts struct {
	ready, unacked int
	hasUnacked     bool
}

// sample samples every route's queue and dead queue once.
func (d *Depth) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(d.cfg.Interval, time.Second))
	defer cancel()
	d.chError = nil
	for _, r := range d.cfg.Routes {
		c, err := d.count(ctx, r.Queue(), r.QueueArgs())
		if d.ok(ctx, r.Queue(), err) {
			d.queue.WithLabelValues(r.Group, "ready").Set(float64(c.ready))
			if c.hasUnacked {
				d.queue.WithLabelValues(r.Group, "unacked").Set(float64(c.unacked))
			}
		} else {
			d.queue.DeleteLabelValues(r.Group, "ready")
			d.queue.DeleteLabelValues(r.Group, "unacked")
		}
		c, err = d.count(ctx, r.DeadQueue(), r.DeadQueueArgs())
		if d.ok(ctx, r.DeadQueue(), err) {
			// Nothing consumes a dead queue: a message unacknowledged is
			// one that shop dead list is reading, and puts back.
			d.dead.WithLabelValues(r.Group).Set(float64(c.ready + c.unacked))
		} else {
			d.dead.DeleteLabelValues(r.Group)
		}
	}
}

// ok reports whether a queue's sample worked, and logs a failure once per
// streak, and its end.
func (d *Depth) ok(ctx context.Context, queue string, err error) bool {
	switch {
	case err == nil:
		if d.failed[queue] {
			d.cfg.Logger.Info("queue depth: sampling works again", "queue", queue)
			delete(d.failed, queue)
		}
		return true
	case errors.Is(ctx.Err(), context.Canceled):
		return false // Run is ending: nothing to report
	case d.failed[queue]:
		d.cfg.Logger.Debug("queue depth: sample failed", "queue", queue, "error", err.Error())
	default:
		d.failed[queue] = true
		d.cfg.Logger.Warn("queue depth: sample failed; its series is removed until one works", "queue", queue, "source", d.source(), "error", err.Error())
	}
	return false
}

// source says where the samples come from, without the password.
func (d *Depth) source() string {
	if d.mgmt == nil {
		return "amqp passive declare"
	}
	u := *d.mgmt
	u.User = d.user
	return "management api " + u.Redacted()
}

// count returns the messages in queue.
func (d *Depth) count(ctx context.Context, queue string, args amqp.Table) (counts, error) {
	var c counts
	var err error
	if d.mgmt != nil {
		c, err = d.fetch(ctx, queue)
	} else {
		c, err = d.declare(ctx, queue, args)
	}
	if err != nil {
		return counts{}, fmt.Errorf("sample %s: %w", queue, err)
	}
	return c, nil
}

// queueStats is what the management API says of a queue; the figures are
// absent until its first statistics are collected.
type queueStats struct {
	Ready   *int `json:"messages_ready"`
	Unacked *int `json:"messages_unacknowledged"`
}

// fetch asks the management API about queue.
func (d *Depth) fetch(ctx context.Context, queue string) (counts, error) {
	u := d.mgmt.String() + "/api/queues/" + url.PathEscape(d.vhost) + "/" + url.PathEscape(queue)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return counts{}, err
	}
	if d.user != nil {
		password, _ := d.user.Password()
		req.SetBasicAuth(d.user.Username(), password)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := d.cfg.HTTPClient.Do(req)
	if err != nil {
		return counts{}, err // the URL in it has no credentials
	}
	defer func() { _ = resp.Body.Close() }()
	body := io.LimitReader(resp.Body, 1<<20)
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, body)
		return counts{}, fmt.Errorf("management api: %s", resp.Status)
	}
	var stats queueStats
	if err := json.NewDecoder(body).Decode(&stats); err != nil {
		return counts{}, fmt.Errorf("management api: decode: %w", err)
	}
	if stats.Ready == nil || stats.Unacked == nil {
		return counts{}, errors.New("management api: no message statistics yet")
	}
	return counts{ready: *stats.Ready, unacked: *stats.Unacked, hasUnacked: true}, nil
}

// declare declares queue passively on the Broker's connection, which gives
// its ready messages. A missing queue makes RabbitMQ close the channel: the
// next declaration opens another.
func (d *Depth) declare(ctx context.Context, queue string, args amqp.Table) (counts, error) {
	if d.ch == nil || d.ch.IsClosed() {
		if d.chError != nil { // one attempt a round: RabbitMQ is away
			return counts{}, d.chError
		}
		ch, err := d.cfg.Broker.Channel(ctx)
		if err != nil {
			d.chError = fmt.Errorf("open channel: %w", err)
			return counts{}, d.chError
		}
		d.ch = ch
	}
	q, err := d.ch.QueueDeclarePassive(queue, true, false, false, false, args)
	if err != nil {
		return counts{}, err
	}
	return counts{ready: q.Messages}, nil
}
