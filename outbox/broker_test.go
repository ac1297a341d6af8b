package outbox_test

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
)

var silent = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestBrokerURLs(t *testing.T) {
	t.Parallel()
	topology := outbox.Topology{{Group: "g", Keys: []string{"k"}}}
	tests := []struct {
		name    string
		url     string
		wantErr string // "" for a valid list
	}{
		{"one node", "amqp://guest:guest@127.0.0.1:5672/", ""},
		{"three nodes", "amqp://u:p@a:5672/v,amqp://u:p@b:5672/v,amqp://u:p@c:5672/v", ""},
		{"spaces around the commas", "amqp://u:p@a/v , amqp://u:p@b/v", ""},
		{"tls nodes", "amqps://u:p@a/v,amqps://u:p@b/v", ""},
		{"an empty element", "amqp://u:p@a/v,,amqp://u:p@b/v", "amqp url 2 of 3"},
		{"not amqp", "amqp://u:p@a/v,http://u:p@b/v", "amqp url 2 of 2"},
		{"another vhost", "amqp://u:p@a/v,amqp://u:p@b/w", "share their vhosts"},
		{"a bad url, its password unsaid", "amqp://u:s3cret@a/v,amqp://u:s3cret@b:port/v", "amqp url 2 of 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := outbox.NewBroker(outbox.BrokerConfig{URL: tt.url, Topology: topology, Logger: silent})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("NewBroker(%q): %v", tt.url, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("NewBroker(%q): %v, want an error saying %q", tt.url, err, tt.wantErr)
			case err != nil && strings.Contains(err.Error(), "s3cret"):
				t.Fatalf("the error repeats the password: %v", err)
			}
		})
	}
}

// TestBrokerDialsTheNextNode: with the first node of the list down, a dial
// connects to the next; a dial after that starts at the node after the one
// that last answered, so a process whose node went away does not wait on it
// first.
func TestBrokerDialsTheNextNode(t *testing.T) {
	t.Parallel()
	good := testenv.AMQPURL(t)
	u, err := url.Parse(good)
	testenv.Must(t, err, "parse amqp url")
	down := *u
	down.Host = testenv.RefusedAddr(t)
	b, err := outbox.NewBroker(outbox.BrokerConfig{URL: down.String() + "," + good, Topology: topology, Logger: silent})
	testenv.Must(t, err, "new broker")
	for i := range 3 {
		conn, err := b.Dial()
		testenv.Must(t, err, "dial with the first node down")
		if got := conn.RemoteAddr().String(); got != u.Host {
			t.Errorf("dial %d connected to %s, want %s", i+1, got, u.Host)
		}
		_ = conn.Close()
	}

	bothDown := *u
	bothDown.Host = testenv.RefusedAddr(t)
	b, err = outbox.NewBroker(outbox.BrokerConfig{URL: down.String() + "," + bothDown.String(), Topology: topology, Logger: silent})
	testenv.Must(t, err, "new broker")
	_, err = b.Dial()
	if err == nil || !strings.Contains(err.Error(), down.Host) || !strings.Contains(err.Error(), bothDown.Host) {
		t.Errorf("dial with every node down: %v, want an error naming each node", err)
	}
	if err != nil && strings.Contains(err.Error(), "guest:guest") {
		t.Errorf("the error repeats the credentials: %v", err)
	}
}

// TestQuorumSizeIsDeclared: a topology with a quorum size declares every
// queue with x-quorum-initial-group-size; without one, with none (the
// broker's default).
func TestQuorumSizeIsDeclared(t *testing.T) {
	t.Parallel()
	route := outbox.Route{Group: "g", Keys: []string{"k"}}
	for _, args := range []amqp.Table{route.QueueArgs(), route.DeadQueueArgs()} {
		if _, ok := args["x-quorum-initial-group-size"]; ok {
			t.Errorf("without a quorum size the arguments %v name one", args)
		}
	}
	unsized := outbox.Topology{route}
	sized := unsized.WithQuorumSize(3)
	for _, args := range []amqp.Table{sized[0].QueueArgs(), sized[0].DeadQueueArgs()} {
		if got := args["x-quorum-initial-group-size"]; got != 3 {
			t.Errorf("with quorum size 3 the arguments %v say %v", args, got)
		}
	}
	if unsized[0].QuorumSize != 0 {
		t.Error("WithQuorumSize changed the topology it was called on")
	}

	// A single node takes the size, capped at its one member; a process
	// with another size is refused, and told which setting to fix.
	amqpURL := testenv.AMQPURL(t)
	testenv.Must(t, sized.Declare(amqpChannel(t, amqpURL)), "declare a sized topology")
	err := unsized.Declare(amqpChannel(t, amqpURL))
	if err == nil || !strings.Contains(err.Error(), "AMQP_QUORUM_SIZE") {
		t.Errorf("declaring the queues again with no size: %v, want an error naming AMQP_QUORUM_SIZE", err)
	}
}

// TestHeldWritesLeaveTogether: what is published on the broker's own
// connection while Hold holds stays in the client; release sends all of
// it, and RabbitMQ confirms every message. A Hold before any connection
// holds nothing.
func TestHeldWritesLeaveTogether(t *testing.T) {
	t.Parallel()
	topology := outbox.Topology{{Group: "held", Keys: []string{"held.k"}}}
	b, err := outbox.NewBroker(outbox.BrokerConfig{URL: testenv.AMQPURL(t), Topology: topology, Logger: silent})
	testenv.Must(t, err, "broker")
	t.Cleanup(func() { _ = b.Close() })
	b.Hold()() // no connection yet: nothing to hold

	ch, err := b.Channel(t.Context())
	testenv.Must(t, err, "channel")
	const n = 20
	release := b.Hold()
	confirms := make([]*amqp.DeferredConfirmation, n)
	for i := range confirms {
		confirms[i], err = ch.PublishWithDeferredConfirmWithContext(t.Context(), outbox.Exchange, "held.k", true, false,
			amqp.Publishing{Body: []byte("m")})
		testenv.Must(t, err, "publish")
	}
	select {
	case <-confirms[0].Done():
		release()
		t.Fatal("a message held back was confirmed before the release")
	case <-time.After(300 * time.Millisecond):
	}
	release()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i, c := range confirms {
		ok, err := c.WaitContext(ctx)
		if err != nil || !ok {
			t.Fatalf("message %d: confirmed %v, %v", i, ok, err)
		}
	}
	q, err := ch.QueueDeclarePassive(topology[0].Queue(), true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum})
	testenv.Must(t, err, "inspect queue")
	if q.Messages != n {
		t.Fatalf("%d messages in %s, want %d", q.Messages, topology[0].Queue(), n)
	}
}
