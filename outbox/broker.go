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
)

// broker keeps one AMQP connection, reconnecting with backoff, and declares
// the topology on every new connection before any channel is handed out.
type broker struct {
	url     string
	log     *slog.Logger
	backoff backoff

	mu   sync.Mutex       // serializes connecting: one dial at a time
	conn *amqp.Connection // guarded by mu

	// live is conn once its topology is declared, for connected(), which
	// must never wait behind a dial that holds mu (up to its timeout).
	live atomic.Pointer[amqp.Connection]
}

// channel returns a new channel in confirm mode, connecting first if needed.
// It blocks, retrying, until it succeeds or ctx ends: the relay starts (and
// keeps running) while RabbitMQ is down.
func (b *broker) channel(ctx context.Context) (*amqp.Channel, error) {
	for attempt := 0; ; attempt++ {
		ch, err := b.tryChannel()
		if err == nil {
			return ch, nil
		}
		wait := b.backoff.delay(attempt)
		b.log.Warn("rabbitmq unavailable; retrying", "error", err.Error(), "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

func (b *broker) tryChannel() (*amqp.Channel, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn == nil || b.conn.IsClosed() {
		conn, err := amqp.DialConfig(b.url, amqp.Config{Heartbeat: 10 * time.Second, Properties: amqp.Table{"connection_name": "shop relay"}})
		if err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		ch, err := conn.Channel()
		if err == nil {
			err = Declare(ch)
			_ = ch.Close()
		}
		if err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("declare topology: %w", err)
		}
		b.conn = conn
		b.live.Store(conn)
		b.log.Info("connected to rabbitmq; topology declared")
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

// connected reports whether the connection is open. It does not block,
// even while another goroutine is dialling.
func (b *broker) connected() bool {
	conn := b.live.Load()
	return conn != nil && !conn.IsClosed()
}

func (b *broker) close() error {
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

// backoff is an exponential delay between min and max.
type backoff struct {
	min, max time.Duration
}

func (b backoff) delay(attempt int) time.Duration {
	d := b.min
	for i := 0; i < attempt && d < b.max; i++ {
		d *= 2
	}
	return min(d, b.max)
}
