package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/internal/retry"
)

// BrokerConfig configures a Broker.
type BrokerConfig struct {
	// URL is RabbitMQ's URL (AMQP_URL), or the URLs of the nodes of a
	// cluster separated by commas, each tried in turn. Required.
	URL string
	// Name is the connection name RabbitMQ shows for this process's
	// connections ("shop relay"). Default "shop".
	Name string
	// Topology is declared on every new connection before it is used.
	// Required.
	Topology Topology
	// Logger receives reconnection warnings. Required.
	Logger *slog.Logger
	// Backoff paces reconnection attempts. Default 100ms doubling to 5s.
	Backoff retry.Backoff
	// DialTimeout bounds one attempt to connect to one node, the AMQP
	// handshake included, so that a node that does not answer costs that
	// long before the next is tried. Default 5s.
	DialTimeout time.Duration
}

// Validate fills defaults and checks the configuration.
func (c *BrokerConfig) Validate() error {
	switch {
	case c.URL == "":
		return errors.New("broker: amqp url is required")
	case c.Topology == nil:
		return errors.New("broker: topology is required")
	case c.Logger == nil:
		return errors.New("broker: logger is required")
	}
	if _, err := nodes(c.URL); err != nil {
		return err
	}
	if c.Name == "" {
		c.Name = "shop"
	}
	if c.Backoff == (retry.Backoff{}) {
		c.Backoff = retry.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	return nil
}

// node is one RabbitMQ node a broker may dial.
type node struct {
	url   string
	addr  string // host:port, for logs: never the credentials
	vhost string
}

// nodes parses a comma-separated list of AMQP URLs. Its errors never
// repeat a URL, which may hold a password.
func nodes(list string) ([]node, error) {
	var out []node
	for i, u := range strings.Split(list, ",") {
		u = strings.TrimSpace(u)
		uri, err := amqp.ParseURI(u)
		if err != nil {
			if ue := (*url.Error)(nil); errors.As(err, &ue) {
				err = ue.Err // url.Error quotes the URL
			}
			return nil, fmt.Errorf("broker: amqp url %d of %d: %w", i+1, strings.Count(list, ",")+1, err)
		}
		out = append(out, node{url: u, addr: net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port)), vhost: uri.Vhost})
		if out[i].vhost != out[0].vhost {
			return nil, fmt.Errorf("broker: amqp url %d names vhost %q, url 1 %q: the nodes of a cluster share their vhosts", i+1, out[i].vhost, out[0].vhost)
		}
	}
	return out, nil
}

// Broker is shop's one way to reach RabbitMQ. Every connection is dialled
// with the same settings (Config) and has the topology declared before
// anything uses it. The relay keeps one connection through Channel, which
// reconnects with backoff; the consumers and the operator commands dial
// their own with Dial.
//
// A broker of a cluster dials its nodes in turn: the first dial tries the
// first node, then the next until one answers; every later dial (after a
// connection was lost, or for another connection) starts at the node after
// the one that last answered, so a process whose node went away moves to
// the next without trying the lost one first.
type Broker struct {
	cfg   BrokerConfig
	nodes []node
	next  atomic.Int32 // the node the next dial tries first

	mu   sync.Mutex               // serializes connecting: one dial at a time
	conn *amqp.Connection         // guarded by mu
	held atomic.Pointer[heldConn] // the network connection under conn

	// live is conn once its topology is declared, for Connected, which must
	// never wait behind a dial that holds mu (up to its timeout).
	live atomic.Pointer[amqp.Connection]
}

// NewBroker returns a broker for cfg; it connects when first asked to.
func NewBroker(cfg BrokerConfig) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ns, _ := nodes(cfg.URL) // Validate parsed them
	return &Broker{cfg: cfg, nodes: ns}, nil
}

// Config is the client configuration of every connection shop makes.
func (b *Broker) Config() amqp.Config {
	return amqp.Config{Heartbeat: 10 * time.Second, Properties: amqp.Table{"connection_name": b.cfg.Name},
		Dial: amqp.DefaultDial(b.cfg.DialTimeout)}
}

// Hold makes the writes of the broker's own connection (the one Channel's
// channels are on) wait until the function it returns is called, which
// sends them in one write: a round of publishes then costs one system
// call instead of one each. The caller must not wait for RabbitMQ while it
// holds.
func (b *Broker) Hold() (release func()) {
	c := b.held.Load()
	if c == nil {
		return func() {}
	}
	c.hold()
	return c.release
}

// VHost is the virtual host the broker's connections open ("/" when the
// URL names none).
func (b *Broker) VHost() string { return b.nodes[0].vhost }

// Topology is what the broker declares on every connection.
func (b *Broker) Topology() Topology { return b.cfg.Topology }

// Dial opens a new connection of the caller's own, with the topology
// declared: one attempt on each node at most, in turn.
func (b *Broker) Dial() (*amqp.Connection, error) {
	conn, _, err := b.dialNodes()
	return conn, err
}

// dialNodes is Dial, also returning the connection's network connection.
func (b *Broker) dialNodes() (*amqp.Connection, *heldConn, error) {
	start := int(b.next.Load())
	var errs []error
	for i := range b.nodes {
		k := (start + i) % len(b.nodes)
		conn, held, err := b.dial(b.nodes[k])
		if err != nil {
			if len(b.nodes) > 1 {
				err = fmt.Errorf("%s: %w", b.nodes[k].addr, err)
			}
			errs = append(errs, err)
			continue
		}
		b.next.Store(int32((k + 1) % len(b.nodes)))
		return conn, held, nil
	}
	return nil, nil, errors.Join(errs...)
}

// dial connects to n and declares the topology; it also returns the
// connection's network connection, whose writes can be held.
func (b *Broker) dial(n node) (*amqp.Connection, *heldConn, error) {
	cfg := b.Config()
	var held *heldConn
	dial := cfg.Dial
	cfg.Dial = func(network, addr string) (net.Conn, error) {
		c, err := dial(network, addr)
		if err != nil {
			return nil, err
		}
		held = &heldConn{Conn: c}
		return held, nil
	}
	conn, err := amqp.DialConfig(n.url, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to rabbitmq: %w", err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = b.cfg.Topology.Declare(ch)
		_ = ch.Close()
	}
	if err != nil {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("declare topology: %w", err)
	}
	return conn, held, nil
}

// Channel returns a new channel in confirm mode on the broker's own
// connection, connecting first if needed. It blocks, retrying with backoff,
// until it succeeds or ctx ends: the relay starts (and keeps running) while
// RabbitMQ is down.
func (b *Broker) Channel(ctx context.Context) (*amqp.Channel, error) {
	for attempt := 0; ; attempt++ {
		ch, err := b.tryChannel()
		if err == nil {
			return ch, nil
		}
		wait := b.cfg.Backoff.Delay(attempt)
		b.cfg.Logger.Warn("rabbitmq unavailable; retrying", "error", err.Error(), "retry_in", wait)
		if !retry.Sleep(ctx, wait) {
			return nil, ctx.Err()
		}
	}
}

func (b *Broker) tryChannel() (*amqp.Channel, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn == nil || b.conn.IsClosed() {
		conn, held, err := b.dialNodes()
		if err != nil {
			return nil, err
		}
		b.conn = conn
		b.held.Store(held)
		b.live.Store(conn)
		b.cfg.Logger.Info("connected to rabbitmq; topology declared", "node", conn.RemoteAddr().String())
	}
	ch, err := b.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("enable publisher confirms: %w", err)
	}
	return ch, nil
}

// Connected reports whether the broker's own connection is open. It does
// not block, even while another goroutine is dialling.
func (b *Broker) Connected() bool {
	conn := b.live.Load()
	return conn != nil && !conn.IsClosed()
}

// Close closes the broker's own connection.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn == nil || b.conn.IsClosed() {
		return nil
	}
	err := b.conn.Close()
	if errors.Is(err, amqp.ErrClosed) {
		return nil
	}
	return err
}
