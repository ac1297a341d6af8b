package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/loadtest"
)

// chaosProcess is one shop process of the soak, restarted as it was
// started after each SIGKILL.
type chaosProcess struct {
	name string
	args []string
	env  map[string]string
	cmd  *exec.Cmd
}

// fault is one thing the soak does to the system, at a moment of its run.
type fault struct {
	at   time.Duration
	kind string // kill, rabbitmq, redis-restart, redis-flush, postgres
}

// chaosPlan spreads the faults of a run of d over its middle (10 % to 85 %
// of it), at random moments of rng: a SIGKILL every 25 s (at least 4), a
// RabbitMQ restart every 5 minutes (at least 1), one Redis restart, one
// FLUSHALL, and Postgres's connections terminated twice.
func chaosPlan(rng *rand.Rand, d time.Duration) []fault {
	kinds := []string{"redis-restart", "redis-flush", "postgres", "postgres"}
	for range max(4, int(d/(25*time.Second))) {
		kinds = append(kinds, "kill")
	}
	for range max(1, int(d/(5*time.Minute))) {
		kinds = append(kinds, "rabbitmq")
	}
	plan := make([]fault, len(kinds))
	for i, k := range kinds {
		plan[i] = fault{at: d/10 + time.Duration(rng.Int64N(int64(d*3/4))), kind: k}
	}
	slices.SortFunc(plan, func(a, b fault) int { return int(a.at - b.at) })
	return plan
}

// TestChaos is the soak of `make chaos` (CHAOS_DURATION, default 40 s here
// and 10 minutes there; CHAOS_SEED replays a run): two APIs, two relays and
// two processes of every consumer group, with a RabbitMQ node and a Redis of
// their own, under `shop loadtest` at a fixed rate, while processes are
// SIGKILLed and restarted, RabbitMQ and Redis are restarted, Redis is
// flushed and Postgres's connections are terminated, at seeded moments.
// Then, the load stopped and the system quiet: every accepted order exists
// and is decided, each group applied each event once and sent each email
// once, the stock adds up, Redis equals Postgres, the outbox and the dead
// queues are empty, and no answer was a 5xx other than a 503.
func TestChaos(t *testing.T) {
	t.Parallel()
	duration := 40 * time.Second
	if v := os.Getenv("CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		testenv.Must(t, err, "CHAOS_DURATION")
		duration = d
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		testenv.Must(t, err, "CHAOS_SEED")
		seed = n
	}
	t.Logf("chaos seed %d (replay: CHAOS_SEED=%d CHAOS_DURATION=%s make chaos)", seed, seed, duration)
	rng := rand.New(rand.NewPCG(seed, 0))

	rabbit := testenv.StartRabbitCluster(t, 1)
	node := rabbit.Nodes[0]
	rds := testenv.StartRedisServer(t)
	s := newSystemOn(t, rds.Addr)
	env := maps.Clone(s.env)
	env["AMQP_URL"] = rabbit.URLs()
	env["JWT_SECRET"] = fmt.Sprintf("chaos-%d-%s", seed, strings.Repeat("k", 32)) // one secret: a token works on either API

	var procs []*chaosProcess
	var apis []string
	for i := range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		testenv.Must(t, err, "find a port")
		addr := ln.Addr().String()
		_ = ln.Close()
		apiEnv := maps.Clone(env)
		apiEnv["HTTP_ADDR"] = addr
		apis = append(apis, "http://"+addr)
		procs = append(procs, &chaosProcess{name: fmt.Sprintf("api-%d", i+1), args: []string{"api"}, env: apiEnv})
	}
	for i := range 2 {
		procs = append(procs,
			&chaosProcess{name: fmt.Sprintf("relay-%d", i+1), args: []string{"relay"}, env: env},
			&chaosProcess{name: fmt.Sprintf("consume-%d", i+1), args: []string{"consume", "orders", "inventory", "emails", "projections"}, env: env})
	}
	// Two of each: 56 connections at most, 29 beyond what newSystemOn
	// reserved for one `shop run`.
	pgConns.reserve(t, 29)
	for _, p := range procs {
		p.cmd = startProcess(t, p.env, p.args...)
	}
	for _, api := range apis {
		waitReady(t, strings.TrimPrefix(api, "http://"))
	}
	if out, stderr, code := shop(t, env, "user", "add", "--email", "chaos@shop.test", "--password", "chaos admin", "--admin"); code != 0 {
		t.Fatalf("user add: %s %s", out, stderr)
	}

	var report bytes.Buffer
	progress := &testenv.Logs{} // read while the load test writes it
	load := exec.Command(shopBin, "loadtest", "--url", strings.Join(apis, ","), "--rate", "30", "--duration", duration.String(),
		"--customers", "8", "--products", "8", "--admin-email", "chaos@shop.test", "--admin-password", "chaos admin",
		"--settle", "3m", "--json", "--list-orders", "--seed", strconv.FormatUint(seed, 10))
	load.Env = environ(nil)
	load.Stdout, load.Stderr = &report, progress
	testenv.Must(t, load.Start(), "start shop loadtest")
	t.Cleanup(func() {
		if load.ProcessState == nil {
			_ = load.Process.Kill()
			_ = load.Wait()
		}
	})
	// The faults begin once the load does: its set-up (customers,
	// products) must not meet a killed API. Its first progress line comes
	// a second into the load.
	testenv.Eventually(t, time.Minute, func() error {
		if !strings.Contains(progress.String(), "req/s") {
			return fmt.Errorf("shop loadtest is still setting up: %s", tail(progress.String(), 3))
		}
		return nil
	})
	started := time.Now().Add(-time.Second)

	counts := map[string]int{}
	for _, f := range chaosPlan(rng, duration) {
		time.Sleep(time.Until(started.Add(f.at)))
		what := f.kind
		switch f.kind {
		case "kill":
			p := procs[rng.IntN(len(procs))]
			kill(t, p.cmd)
			p.cmd = startProcess(t, p.env, p.args...)
			what = "SIGKILL " + p.name
			counts["kills of "+strings.TrimRight(p.name, "-12")]++
		case "rabbitmq":
			node.Kill(t)
			time.Sleep(3 * time.Second)
			node.Start(t)
			counts["rabbitmq restarts"]++
		case "redis-restart":
			rds.Restart(t)
			counts["redis restarts (empty)"]++
		case "redis-flush":
			rdb := redis.NewClient(&redis.Options{Addr: rds.Addr})
			testenv.Must(t, rdb.FlushAll(context.Background()).Err(), "FLUSHALL")
			_ = rdb.Close()
			counts["redis FLUSHALLs"]++
		case "postgres":
			counts["postgres connections terminated"] += terminateConnections(t, env["DATABASE_URL"])
			counts["postgres terminations"]++
		}
		t.Logf("%6.1fs: %s", f.at.Seconds(), what)
	}

	done := make(chan error, 1)
	go func() { done <- load.Wait() }()
	select {
	case <-done: // non-zero on a 503, which is expected here: the report says
	case <-time.After(time.Until(started.Add(duration + 4*time.Minute))):
		t.Fatalf("shop loadtest did not end; its last lines:\n%s", tail(progress.String(), 10))
	}
	var r loadtest.Report
	if err := json.Unmarshal(report.Bytes(), &r); err != nil {
		t.Fatalf("shop loadtest's report: %v\n%s\n%s", err, report.String(), tail(progress.String(), 10))
	}
	for _, e := range r.Endpoints {
		for status, n := range e.Statuses {
			switch {
			case status == "503":
				counts["answers 503 (expected during outages)"] += n
			case strings.HasPrefix(status, "5"):
				counts["answers 5xx other than 503 (failures)"] += n
				t.Errorf("%s answered %s %d times (seed %d)", e.Endpoint, status, n, seed)
			case status == "error":
				counts["requests with no answer (a killed API)"] += n
			}
		}
	}
	counts["orders accepted"] = int(r.Accepted)
	counts["orders seen decided by the load test"] = int(r.Decided)
	counts["longest 202 → decided, ms"] = int(r.Slowest.WaitedMS)
	t.Logf("the slowest order, %s, accepted %.1fs into the run, was decided %.0f ms later",
		r.Slowest.ID, r.Slowest.AcceptedAt.Sub(started).Seconds(), r.Slowest.WaitedMS)
	if r.Accepted == 0 {
		t.Fatalf("no order was accepted (seed %d)", seed)
	}

	groups := []string{"orders", "inventory", "emails"} // projections keep no inbox
	s.waitQuiet(t, 3*time.Minute, groups...)
	counts["orders in postgres"] = s.count(t, `SELECT count(*) FROM orders`)
	if n := s.count(t, `SELECT count(*) FROM orders WHERE id = ANY($1::uuid[]) AND status IN ('confirmed', 'rejected', 'cancelled')`,
		r.Orders); n != len(r.Orders) || len(r.Orders) != int(r.Accepted) {
		t.Errorf("%d of the %d orders accepted (%d listed) are in Postgres and decided (seed %d)", n, r.Accepted, len(r.Orders), seed)
	}
	s.checkConverged(t, nil, groups...)
	checkStockAddsUp(t, s)
	s.waitRedisMatches(t, 2*time.Minute)
	testenv.Eventually(t, time.Minute, func() error {
		if n := s.count(t, `SELECT count(*) FROM outbox`); n > 0 {
			return fmt.Errorf("%d outbox rows not forwarded", n)
		}
		return nil
	})
	for queue, n := range rabbit.Messages(t) {
		if strings.HasSuffix(queue, ".dead") && n > 0 {
			t.Errorf("%d messages in %s (seed %d): `shop dead list` says why", n, queue, seed)
		}
	}
	var sb strings.Builder
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		fmt.Fprintf(&sb, "  %-42s %d\n", k, counts[k])
	}
	t.Logf("chaos over %s (seed %d):\n%s", duration, seed, sb.String())
}

// checkStockAddsUp checks every product: its stock in Postgres is what it
// was created with, plus its restocks, less what confirmed orders hold; and
// it was never negative (each stock.changed event says what it left).
func checkStockAddsUp(t *testing.T, s *system) {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), `
		SELECT p.id, p.stock,
		  (SELECT (c.payload->'data'->>'stock_available')::bigint FROM committed c
		     WHERE c.routing_key = 'product.created' AND c.payload->>'aggregate_id' = p.id::text),
		  (SELECT coalesce(sum((c.payload->'data'->>'delta')::bigint), 0) FROM committed c
		     WHERE c.routing_key = 'stock.changed' AND c.payload->>'aggregate_id' = p.id::text
		       AND c.payload->'data'->>'reason' = 'restocked'),
		  (SELECT coalesce(min((c.payload->'data'->>'stock_available')::bigint), 0) FROM committed c
		     WHERE c.routing_key = 'stock.changed' AND c.payload->>'aggregate_id' = p.id::text),
		  (SELECT coalesce(sum((l->>'quantity')::bigint), 0) FROM reservations r JOIN orders o ON o.id = r.order_id,
		     jsonb_array_elements(r.lines) l
		     WHERE r.status = 'reserved' AND o.status = 'confirmed' AND l->>'product_id' = p.id::text)
		FROM products p`)
	testenv.Must(t, err, "stock")
	type stock struct {
		ID                                string
		Stock, Initial, Restocked, Lowest int64
		Held                              int64
	}
	all, err := pgx.CollectRows(rows, pgx.RowToStructByPos[stock])
	testenv.Must(t, err, "stock")
	for _, p := range all {
		if p.Initial+p.Restocked-p.Held != p.Stock {
			t.Errorf("product %s: created with %d + restocked %d − held by confirmed orders %d = %d, but its stock is %d",
				p.ID, p.Initial, p.Restocked, p.Held, p.Initial+p.Restocked-p.Held, p.Stock)
		}
		if p.Lowest < 0 {
			t.Errorf("product %s: its stock went down to %d", p.ID, p.Lowest)
		}
	}
}

// terminateConnections ends every connection to the database of dbURL, as
// a Postgres restart or a network cut would, and returns how many.
func terminateConnections(t *testing.T, dbURL string) int {
	t.Helper()
	cfg, err := pgx.ParseConfig(dbURL)
	testenv.Must(t, err, "parse database url")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, testenv.ServerURL())
	testenv.Must(t, err, "connect to the server")
	defer admin.Close(context.Background())
	var n int
	testenv.Must(t, admin.QueryRow(ctx, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid()) t`, cfg.Database).Scan(&n), "terminate the connections")
	return n
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
