package main_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/handlers"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/store"
)

// startProcess starts the shop binary with env; it is killed when t ends if
// it still runs.
func startProcess(t *testing.T, env map[string]string, args ...string) *exec.Cmd {
	t.Helper()
	testenv.NeedServices(t)
	cmd := exec.Command(shopBin, args...)
	cmd.Env = environ(env)
	cmd.Stderr = os.Stderr
	if !testing.Verbose() {
		cmd.Stderr = nil
	}
	testenv.Must(t, cmd.Start(), "start shop "+fmt.Sprint(args))
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	testenv.Must(t, cmd.Process.Signal(syscall.SIGKILL), "SIGKILL")
	_ = cmd.Wait()
}

// TestRelayKilledMidBatchLosesNothing streams commands while a real relay
// process is SIGKILLed and restarted, again and again, each time once it is
// publishing: every committed event arrives, per aggregate in version order,
// and the only duplicates are batches a killed relay had published but not
// yet deleted.
func TestRelayKilledMidBatchLosesNothing(t *testing.T) {
	t.Parallel()
	dbURL := freshDatabaseURL(t)
	env := map[string]string{
		"DATABASE_URL": dbURL, "AMQP_URL": testenv.AMQPURL(t), "METRICS_ADDR": "127.0.0.1:0",
		"RELAY_BATCH_SIZE": "20", "RELAY_WORKERS": "4", "LOG_LEVEL": "error",
	}
	testenv.ValidateEvents(t, env["AMQP_URL"])
	if _, stderr, code := shop(t, env, "migrate"); code != 0 {
		t.Fatalf("migrate: %s", stderr)
	}
	pgConns.take(t, 8)
	pool, err := store.Open(context.Background(), store.Config{DatabaseURL: dbURL, MaxConns: 8})
	testenv.Must(t, err, "pool")
	t.Cleanup(pool.Close)
	_, err = pool.Exec(context.Background(), `
		CREATE TABLE committed (event_id uuid PRIMARY KEY);
		CREATE FUNCTION remember_event() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO committed VALUES (NEW.event_id); RETURN NEW; END $$;
		CREATE TRIGGER remember AFTER INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION remember_event();`)
	testenv.Must(t, err, "record commits")
	sink := testenv.NewSink(t, env["AMQP_URL"], handlers.Topology())

	uow := store.NewUnitOfWork(pool, nil)
	products := make([]uuid.UUID, 20)
	for i := range products {
		err := uow.Do(context.Background(), func(ctx context.Context, tx *store.Tx) error {
			p, err := app.AddProduct(ctx, tx, app.Operator, app.CreateProduct{SKU: fmt.Sprintf("K-%d", i), Name: "K", PriceCents: 1}, time.Now())
			products[i] = p.ID()
			return err
		})
		testenv.Must(t, err, "add product")
	}

	// 4 writers stream commands until every kill is done.
	stopWriting := make(chan struct{})
	streaming := make(chan struct{}) // closed when every writer stopped
	streamErr := make(chan error, 4)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i += 4 {
				select {
				case <-stopWriting:
					return
				default:
				}
				err := uow.Do(context.Background(), func(ctx context.Context, tx *store.Tx) error {
					_, err := app.Restock(ctx, tx, app.Operator, products[i%len(products)], 1, time.Now())
					return err
				})
				if err != nil {
					streamErr <- err
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(streaming) }()
	t.Cleanup(func() {
		select {
		case <-stopWriting:
		default:
			close(stopWriting)
		}
		<-streaming
	})

	// Each relay is killed once it has published (its own counter) and
	// the sink got more events than at the previous kill, while the
	// commands still stream: it is busy relaying a backlog that grows.
	relayEnv := maps.Clone(env)
	relayEnv["LOG_LEVEL"] = "info" // startServing reads the "listening" line
	const kills = 6
	arrived := len(sink.Arrivals())
	for k := range kills {
		relay, addr := startServing(t, relayEnv, "relay")
		testenv.Eventually(t, 60*time.Second, func() error {
			if n, err := metricTotal(addr, "shop_relay_published_total"); err != nil || n == 0 {
				return fmt.Errorf("relay %d has published nothing yet (%v)", k+1, err)
			}
			if n := len(sink.Arrivals()); n <= arrived {
				return fmt.Errorf("%d events at the sink, no more than at the previous kill", n)
			}
			return nil
		})
		select {
		case <-streaming:
			t.Fatalf("the commands stopped before kill %d", k+1)
		default:
		}
		kill(t, relay)
		arrived = len(sink.Arrivals())
	}
	close(stopWriting)
	<-streaming
	close(streamErr)
	for err := range streamErr {
		t.Fatalf("commands: %v", err)
	}
	startProcess(t, env, "relay") // the survivor drains the rest

	rows, err := pool.Query(context.Background(), `SELECT event_id FROM committed`)
	testenv.Must(t, err, "committed events")
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	testenv.Must(t, err, "committed events")
	want := map[uuid.UUID]bool{}
	for _, id := range ids {
		want[id] = true
	}
	got := sink.WaitFor(t, want, 90*time.Second) // every committed event, at least once
	dups := testenv.CheckOrder(t, got)
	if bound := kills * 4 * 20; dups > bound { // kills × workers × batch size
		t.Fatalf("%d duplicates; more than the %d rows the killed relays could have had in flight", dups, bound)
	}
	t.Logf("%d events, %d duplicates after %d kills", len(want), dups, kills)
}

// TestRelayServesOpsAndStopsOnSIGTERM checks the relay's health, readiness
// and metrics endpoints, its outbox status command, and a clean stop.
func TestRelayServesOpsAndStopsOnSIGTERM(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": freshDatabaseURL(t), "AMQP_URL": testenv.AMQPURL(t), "METRICS_ADDR": "127.0.0.1:0"}
	if _, stderr, code := shop(t, env, "migrate"); code != 0 {
		t.Fatalf("migrate: %s", stderr)
	}
	relay, addr := startServing(t, env, "relay")
	waitReady(t, addr)
	// The outbox's gauges appear once the relay has first measured it,
	// which may come after it is ready.
	testenv.Eventually(t, 30*time.Second, func() error {
		body := metrics(t, addr)
		for _, metric := range []string{"shop_relay_published_total", "shop_outbox_pending", "shop_outbox_oldest_age_seconds"} {
			if !strings.Contains(body, metric) {
				return fmt.Errorf("/metrics lacks %s", metric)
			}
		}
		return nil
	})
	if status := statusOf(t, "http://"+addr+"/debug/pprof/"); status != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/ without PPROF = %d, want 404: profiles are served only when asked", status)
	}
	stdout, stderr, code := shop(t, env, "outbox", "status")
	if code != 0 || !strings.Contains(stdout, "partition") || !strings.Contains(stdout, "total") {
		t.Errorf("outbox status: code %d, stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	stop(t, relay)
}
