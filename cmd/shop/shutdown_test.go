package main_test

import (
	"context"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
	"github.com/shopdev/shop/store"
)

// stopDeadline is how long a process may take to stop after SIGTERM, its
// drain deadline (cmd/shop/process.go's drainDeadline), plus what a
// loaded test machine adds.
const stopDeadline = 25*time.Second + 5*time.Second

// TestStopsOnSIGTERMWithItsDependenciesGone: a process whose RabbitMQ vhost
// and Postgres database are deleted while deliveries fail and go to the dead
// queue, and stay deleted for longer than the reconnect backoff's ceiling
// (5 s), still stops cleanly within its drain deadline on SIGTERM: nothing
// waits forever for a broker that is not coming back.
func TestStopsOnSIGTERMWithItsDependenciesGone(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"run"}, {"consume", "orders", "inventory", "emails", "projections"}} {
		t.Run(args[0], func(t *testing.T) {
			t.Parallel()
			dbURL := freshDatabaseURL(t)
			vhost := testenv.VHost(t)
			u, err := url.Parse(testenv.AMQPServerURL())
			testenv.Must(t, err, "parse amqp url")
			u.Path = "/" + vhost
			env := map[string]string{"DATABASE_URL": dbURL, "AMQP_URL": u.String(), "HTTP_ADDR": "127.0.0.1:0",
				"CONSUMER_MAX_RETRIES": "1"}
			if args[0] == "consume" {
				if _, stderr, code := shop(t, env, "migrate"); code != 0 {
					t.Fatalf("migrate: %s", stderr)
				}
			}
			cmd, _ := startServing(t, env, args...)

			// Deliveries that fail for good (not an event), one every few
			// milliseconds, each published to its group's dead queue.
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			t.Cleanup(func() { cancel(); wg.Wait() })
			wg.Go(func() { publishGarbage(ctx, u.String()) })

			time.Sleep(2 * time.Second)
			testenv.DeleteVHost(t, vhost)
			testenv.Must(t, store.DropDatabase(context.Background(), dbURL), "drop the database")
			time.Sleep(8 * time.Second) // longer than the reconnect backoff's ceiling

			testenv.Must(t, cmd.Process.Signal(syscall.SIGTERM), "send SIGTERM")
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("shop %s exited with %v after SIGTERM (%s), want 0: something did not stop by itself",
						strings.Join(args, " "), err, time.Since(start).Round(time.Millisecond))
				}
				t.Logf("shop %s stopped %s after SIGTERM", args[0], time.Since(start).Round(time.Millisecond))
			case <-time.After(stopDeadline):
				_ = cmd.Process.Kill()
				t.Fatalf("shop %s still running %s after SIGTERM", strings.Join(args, " "), stopDeadline)
			}
		})
	}
}

// publishGarbage publishes messages that are no event to every group's
// queue until ctx ends, reconnecting while the vhost exists; it gives up
// quietly once the vhost is gone.
func publishGarbage(ctx context.Context, amqpURL string) {
	keys := []string{"order.placed", "stock.reserved", "user.registered", "product.created"}
	for ctx.Err() == nil {
		conn, err := amqp.Dial(amqpURL)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		ch, err := conn.Channel()
		for i := 0; err == nil && ctx.Err() == nil; i++ {
			err = ch.PublishWithContext(ctx, outbox.Exchange, keys[i%len(keys)], false, false,
				amqp.Publishing{ContentType: "application/json", Body: []byte("not an event")})
			time.Sleep(5 * time.Millisecond)
		}
		_ = conn.Close()
	}
}
