package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/internal/retry"
)

// BrokerConfig configures a Broker.
type BrokerConfig struct {
	// URL is the RabbitMQ URL (AMQP_URL). Required.
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
	if _, err := amqp.ParseURI(c.URL); err != nil {
		return fmt.Errorf("broker: amqp url: %w", err)
	}
	if c.Name == "" {
		c.Name = "shop"
	}
	if c.Backoff == (retry.Backoff{}) {
		c.Backoff = retry.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	}
	return nil
}

// Broker is shop's one way to reach RabbitMQ. Every connection is dialled
// with the same settings (Config) and has the topology declared before
// anything uses it. The relay keeps one connection through Channel, which
// reconnects with backoff; the operator commands dial their own; the
// consumers hand Config to watermill-amqp, which dials itself.
type Broker struct {
	cfg BrokerConfig

	mu   sync.Mutex       // serializes connecting: one dial at a time
	conn *amqp.Connection // guarded by mu

	// live is conn once its topology is declared, for Connected, which must
	// never wait behind a dial that holds mu (up to its timeout).
	live atomic.Pointer[amqp.Connection]
}

// NewBroker returns a broker for cfg; it connects when first asked to.
func NewBroker(cfg BrokerConfig) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Broker{cfg: cfg}, nil
}

// Config is the client configuration of every connection shop makes.
func (b *Broker) Config() amqp.Config {
	return amqp.Config{Heartbeat: 10 * time.Second, Properties: amqp.Table{"connection_name": b.cfg.Name}}
}

// URL is the RabbitMQ URL the broker dials.
func (b *Broker) URL() string { return b.cfg.URL }

// Topology is what the broker declares on every connection.
func (b *Broker) Topology() Topology { return b.cfg.Topology }

// Dial opens a new connection of the caller's own, with the topology
// declared; one attempt.
func (b *Broker) Dial() (*amqp.Connection, error) {
	conn, err := amqp.DialConfig(b.cfg.URL, b.Config())
	if err != nil {
		return nil, fmt.Errorf("connect to rabbitmq: %w", err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = b.cfg.Topology.Declare(ch)
		_ = ch.Close()
	}
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("declare topology: %w", err)
	}
	return conn, nil
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
		conn, err := b.Dial()
		if err != nil {
			return nil, err
		}
		b.conn = conn
		b.live.Store(conn)
		b.cfg.Logger.Info("connected to rabbitmq; topology declared")
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
