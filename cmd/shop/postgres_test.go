package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/store"
)

// A DATABASE_URL may name several hosts with target_session_attrs=read-write
// (issue 17): every process connects to the first host that answers as a
// primary. These tests put a host that refuses every connection in front of
// the local server, and simulate a failover on the one server there is by
// making the test's own database read-only for new sessions, as a standby's
// are, and ending its sessions: then no host satisfies read-write.

// postgresLayouts are the ways to run the system these tests run it in.
var postgresLayouts = []struct {
	name  string
	procs [][]string // the shop commands to start, each a process
}{
	{"shop run", [][]string{{"run"}}},
	{"a process each", [][]string{{"api"}, {"relay"}, {"consume", "orders", "inventory"}, {"consume", "emails", "projections"}}},
}

// cleanRedisPrefix deletes every key of prefix when t ends.
func cleanRedisPrefix(t *testing.T, prefix string) {
	t.Helper()
	t.Cleanup(func() {
		rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
		defer rdb.Close()
		iter := rdb.Scan(context.Background(), 0, prefix+"*", 1000).Iterator()
		for iter.Next(context.Background()) {
			rdb.Del(context.Background(), iter.Val())
		}
	})
}

// shopProc is a running shop process and the address of its ops server.
type shopProc struct {
	cmd *exec.Cmd
	ops string
}

// startLayout starts the processes of procs with env, waits until each is
// ready, and returns them with the base URL of the API.
func startLayout(t *testing.T, env map[string]string, procs [][]string) ([]shopProc, string) {
	t.Helper()
	var started []shopProc
	base := ""
	for _, args := range procs {
		cmd, addrs := startListening(t, env, args...)
		started = append(started, shopProc{cmd, addrs["ops"]})
		if addrs["api"] != "" {
			base = "http://" + addrs["api"]
		}
	}
	for _, p := range started {
		waitReady(t, p.ops)
	}
	return started, base
}

// session is an admin, a customer and a product of a running shop.
type session struct {
	base, admin, customer, product string
}

// newSession, as the README's session does: adds an admin (`shop user
// add`), who logs in and adds a product with stock, registers a customer
// who logs in, all with env's DATABASE_URL.
func newSession(t *testing.T, env map[string]string, base string, stock int) session {
	t.Helper()
	if out, stderr, code := shop(t, env, "user", "add", "--email", "admin@pg.test", "--password", "admin password", "--admin"); code != 0 {
		t.Fatalf("shop user add: exit %d: %s %s", code, out, stderr)
	}
	s := session{base: base}
	s.admin = postJSON(t, base+"/v1/tokens", "", `{"email":"admin@pg.test","password":"admin password"}`, http.StatusOK)["token"].(string)
	s.product = postJSON(t, base+"/v1/products", s.admin,
		fmt.Sprintf(`{"sku":"PG-1","name":"Mug","price_cents":1200,"stock":%d}`, stock), http.StatusCreated)["id"].(string)
	postJSON(t, base+"/v1/users", "", `{"email":"ann@pg.test","name":"Ann","password":"ann secret"}`, http.StatusCreated)
	s.customer = postJSON(t, base+"/v1/tokens", "", `{"email":"ann@pg.test","password":"ann secret"}`, http.StatusOK)["token"].(string)
	return s
}

// order places an order of one unit and returns its id.
func (s session) order(t *testing.T) string {
	t.Helper()
	return postJSON(t, s.base+"/v1/orders", s.customer, fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1}]}`, s.product), http.StatusAccepted)["id"].(string)
}

// waitConfirmed reads each order, from the read models, until it is
// confirmed (version 2); it fails t when one ends otherwise.
func (s session) waitConfirmed(t *testing.T, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if o := readAtLeast(t, s.base+"/v1/orders/"+id+"?min_version=2", s.customer); o["status"] != "confirmed" {
			t.Fatalf("order %s = %v, want confirmed", id, o)
		}
	}
}

// TestMultiHostDatabaseURL: with a DATABASE_URL of two hosts whose first
// refuses every connection, and target_session_attrs=read-write, every
// process works: `shop migrate` (or `shop run`) creates the database and
// migrates it, `shop user add` adds the admin, and through the API an
// admin adds a product and a customer registers, logs in and orders; the
// relay and the consumers confirm the order.
func TestMultiHostDatabaseURL(t *testing.T) {
	t.Parallel()
	for _, layout := range postgresLayouts {
		t.Run(layout.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{
				"DATABASE_URL": testenv.MultiHostURL(t, freshDatabaseURL(t)), "AMQP_URL": testenv.AMQPURL(t),
				"REDIS_PREFIX": testRedisPrefix(), "HTTP_ADDR": "127.0.0.1:0", "JWT_SECRET": strings.Repeat("s", 32),
				"LOG_LEVEL": "info", "RATE_LIMIT": "0",
				"DB_MAX_CONNS": "4", "CONSUMER_CONCURRENCY": "4", "CONSUMER_BATCH": "4",
			}
			cleanRedisPrefix(t, env["REDIS_PREFIX"])
			if layout.procs[0][0] != "run" { // shop run migrates by itself
				_, stderr, code := shop(t, env, "migrate")
				if code != 0 || !strings.Contains(stderr, "database created") {
					t.Fatalf("shop migrate: exit %d, want 0 and the database created:\n%s", code, stderr)
				}
			}
			procs, base := startLayout(t, env, layout.procs)
			s := newSession(t, env, base, 10)
			s.waitConfirmed(t, s.order(t))
			for _, p := range procs {
				stop(t, p.cmd)
			}
		})
	}
}

// problem is what the tests read of a problem+json answer.
type problem struct {
	status      int
	contentType string
	retryAfter  string
	body        struct {
		Status int    `json:"status"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	raw string
}

// send makes a request and returns its answer; the client gives up after
// 10 s, so a request that hangs fails.
func send(method, url, token, body string) (problem, error) {
	var p problem
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return p, err
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return p, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return p, err
	}
	p.status, p.contentType, p.retryAfter, p.raw = res.StatusCode, res.Header.Get("Content-Type"), res.Header.Get("Retry-After"), string(raw)
	if strings.HasPrefix(p.contentType, "application/problem+json") {
		err = json.Unmarshal(raw, &p.body)
	}
	return p, err
}

// attempt is one order a client tried to place.
type attempt struct {
	start, end time.Time
	status     int
	id         string // of an accepted order
}

// orderStream is a client placing an order every 20 ms until halted;
// every answer must be 202 or 503.
type orderStream struct {
	mu   sync.Mutex
	all  []attempt
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func startOrderStream(t *testing.T, s session) *orderStream {
	t.Helper()
	st := &orderStream{stop: make(chan struct{}), done: make(chan struct{})}
	body := fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1}]}`, s.product)
	go func() {
		defer close(st.done)
		pace := time.NewTicker(20 * time.Millisecond)
		defer pace.Stop()
		for {
			select {
			case <-st.stop:
				return
			case <-pace.C:
			}
			a := attempt{start: time.Now()}
			res, err := send(http.MethodPost, s.base+"/v1/orders", s.customer, body)
			a.end, a.status = time.Now(), res.status
			switch {
			case err != nil:
				t.Errorf("the client places an order: %v", err)
				return
			case res.status == http.StatusAccepted:
				var o struct{ ID string }
				if err := json.Unmarshal([]byte(res.raw), &o); err != nil || o.ID == "" {
					t.Errorf("an accepted order: %v %s", err, res.raw)
					return
				}
				a.id = o.ID
			case res.status != http.StatusServiceUnavailable:
				t.Errorf("the client places an order = %d %s; want 202, or 503 while there is no primary", res.status, res.raw)
				return
			}
			st.mu.Lock()
			st.all = append(st.all, a)
			st.mu.Unlock()
		}
	}()
	t.Cleanup(st.halt)
	return st
}

// halt stops the client and waits until it has.
func (st *orderStream) halt() {
	st.once.Do(func() { close(st.stop) })
	<-st.done
}

func (st *orderStream) attempts() []attempt {
	st.mu.Lock()
	defer st.mu.Unlock()
	return slices.Clone(st.all)
}

// accepted returns the ids of the orders accepted of those placed after
// since.
func (st *orderStream) accepted(since time.Time) []string {
	var ids []string
	for _, a := range st.attempts() {
		if a.status == http.StatusAccepted && a.start.After(since) {
			ids = append(ids, a.id)
		}
	}
	return ids
}

// waitAccepted waits until n orders placed after since were accepted.
func (st *orderStream) waitAccepted(t *testing.T, since time.Time, n int) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		select {
		case <-st.done:
			t.Fatal("the client stopped")
		default:
		}
		if got := len(st.accepted(since)); got < n {
			return fmt.Errorf("%d orders accepted, want %d", got, n)
		}
		return nil
	})
}

// TestPostgresFailover: the system runs on a two-host DATABASE_URL with
// target_session_attrs=read-write; orders are placed, then no server is a
// primary for a while, then one is again. While none is, pgx finds no
// server to connect to, which the store counts as unavailable; every
// command answers 503 problem+json at once, with Retry-After, and changes
// nothing; every process reports Postgres unready; reads of the read models
// that need no Postgres go on. Once a primary answers, commands succeed
// again within seconds, without a restart. Every order accepted before or
// after is confirmed, each group applied each event once, nothing went to
// a dead queue, the stock adds up, Redis equals Postgres, and every process
// stops cleanly.
func TestPostgresFailover(t *testing.T) {
	t.Parallel()
	for _, layout := range postgresLayouts {
		t.Run(layout.name, func(t *testing.T) {
			t.Parallel()
			sys := newSystem(t)
			dbURL := sys.env["DATABASE_URL"]
			env := maps.Clone(sys.env)
			env["DATABASE_URL"] = testenv.MultiHostURL(t, dbURL)
			env["LOG_LEVEL"], env["HTTP_ADDR"], env["JWT_SECRET"], env["RATE_LIMIT"] = "info", "127.0.0.1:0", strings.Repeat("s", 32), "0"
			procs, base := startLayout(t, env, layout.procs)
			const stock = 1000
			s := newSession(t, env, base, stock)
			productID := uuid.MustParse(s.product)
			readAtLeast(t, base+"/v1/products/"+s.product+"?min_version=1", "") // in Redis

			// A client places orders all along: some are in flight as the
			// primary goes away.
			stream := startOrderStream(t, s)
			stream.waitAccepted(t, time.Time{}, 10)
			// A burst just before, so that the relay and the consumers have
			// work in hand when the primary goes away.
			burst := make([]string, 40)
			var wg sync.WaitGroup
			for i := range burst {
				wg.Go(func() {
					res, err := send(http.MethodPost, base+"/v1/orders", s.customer, fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1}]}`, s.product))
					var o struct{ ID string }
					if err == nil {
						err = json.Unmarshal([]byte(res.raw), &o)
					}
					if err != nil || res.status != http.StatusAccepted {
						t.Errorf("place an order in the burst = %d %v %s, want 202", res.status, err, res.raw)
					}
					burst[i] = o.ID
				})
			}
			wg.Wait()
			if t.Failed() {
				t.FailNow()
			}

			cut := time.Now() // sessions are ended from here to down: a command in flight may commit and still see its connection die
			testenv.SetNoPrimary(t, dbURL, true)
			down := time.Now()
			sys.pool.Reset() // the harness's sessions were ended too
			accepted := stream.accepted(time.Time{})
			t.Logf("%s: %d of the %d orders accepted were pending as the primary went away", layout.name,
				sys.count(t, `SELECT count(*) FROM orders WHERE status = 'pending'`), len(accepted)+len(burst)) // a read-only session reads
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := pgx.Connect(ctx, env["DATABASE_URL"])
			var connectErr *pgconn.ConnectError
			if !errors.As(err, &connectErr) || !errors.Is(err, pgconn.ErrReadOnlyConnection) {
				t.Fatalf("pgx connecting with no primary = %v, want a ConnectError because every host is read-only or down", err)
			}
			pool, err := store.Open(ctx, store.Config{DatabaseURL: env["DATABASE_URL"], MaxConns: 1})
			testenv.Must(t, err, "open a pool")
			err = store.NewUnitOfWork(pool, nil).Ping(ctx)
			pool.Close()
			if !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("Ping with no primary = %v, want store.ErrUnavailable", err)
			}

			commands := []struct {
				name, path, token, body string
			}{
				{"place an order", "/v1/orders", s.customer, fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1}]}`, s.product)},
				{"cancel an order", "/v1/orders/" + accepted[0] + "/cancel", s.customer, ""},
				{"add a product", "/v1/products", s.admin, `{"sku":"PG-2","name":"Plate","price_cents":900,"stock":5}`},
				{"register", "/v1/users", "", `{"email":"bob@pg.test","name":"Bob","password":"bob secret"}`},
				{"log in", "/v1/tokens", "", `{"email":"ann@pg.test","password":"ann secret"}`},
			}
			// Twice: the first time the API's sessions have just been ended,
			// the second time it has none to reuse.
			for round := range 2 {
				for _, c := range commands {
					start := time.Now()
					res, err := send(http.MethodPost, base+c.path, c.token, c.body)
					switch {
					case err != nil:
						t.Errorf("%s with no primary (round %d): %v", c.name, round+1, err)
					case res.status != http.StatusServiceUnavailable || res.body.Status != http.StatusServiceUnavailable ||
						!strings.HasPrefix(res.contentType, "application/problem+json") || res.retryAfter == "":
						t.Errorf("%s with no primary (round %d) = %d %s (Retry-After %q): %s; want 503 problem+json with Retry-After",
							c.name, round+1, res.status, res.contentType, res.retryAfter, res.raw)
					case time.Since(start) > 5*time.Second:
						t.Errorf("%s with no primary took %s to answer 503", c.name, time.Since(start).Round(time.Millisecond))
					}
				}
				if round == 0 {
					time.Sleep(time.Second)
				}
			}
			// Reads served by the read models alone go on.
			if res, err := send(http.MethodGet, base+"/v1/products/"+s.product, "", ""); err != nil || res.status != http.StatusOK {
				t.Errorf("GET a product from Redis with no primary = %d %v %s, want 200", res.status, err, res.raw)
			}
			if res, err := send(http.MethodGet, base+"/v1/orders/"+accepted[0], s.customer, ""); err != nil ||
				(res.status != http.StatusOK && res.status != http.StatusServiceUnavailable) {
				t.Errorf("GET an order with no primary = %d %v %s, want 200 (the token's user cached) or 503", res.status, err, res.raw)
			}
			for _, p := range procs {
				testenv.Eventually(t, 20*time.Second, func() error {
					res, err := send(http.MethodGet, "http://"+p.ops+"/readyz", "", "")
					if err != nil {
						return err
					}
					if res.status != http.StatusServiceUnavailable || !strings.Contains(res.raw, "postgres") {
						return fmt.Errorf("%v: /readyz = %d %s, want 503 naming postgres", p.cmd.Args[1:], res.status, res.raw)
					}
					return nil
				})
			}
			if t.Failed() {
				t.FailNow()
			}
			time.Sleep(time.Until(down.Add(4 * time.Second))) // the relay and the consumers wait it out a while

			up := time.Now()
			testenv.SetNoPrimary(t, dbURL, false)
			sys.pool.Reset() // its sessions opened meanwhile are read-only
			stream.waitAccepted(t, up, 10)
			stream.halt()
			for _, p := range procs {
				waitReady(t, p.ops)
			}
			readyAfter := time.Since(up)

			// The client saw 202 before, 503 while there was no primary, 202
			// again within seconds after.
			var refused, unsure int
			var recovered time.Duration = -1
			accepted = burst
			for _, a := range stream.attempts() {
				if a.status == http.StatusAccepted {
					accepted = append(accepted, a.id)
				} else if a.start.Before(down) && a.end.After(cut) {
					unsure++ // its COMMIT may have reached Postgres as its session was ended
				}
				switch {
				case a.start.After(down) && a.end.Before(up) && a.status != http.StatusServiceUnavailable:
					t.Errorf("an order placed with no primary = %d, want 503", a.status)
				case a.status == http.StatusServiceUnavailable:
					refused++
				case a.start.After(up) && recovered < 0:
					recovered = a.end.Sub(up)
				}
			}
			if refused == 0 {
				t.Errorf("the client's orders were never refused while there was no primary")
			}
			t.Logf("%s: no primary for %s; %d orders answered 503; the first accepted after it %s after RESET; every process ready %s after RESET",
				layout.name, up.Sub(down).Round(time.Millisecond), refused, recovered.Round(time.Millisecond), readyAfter.Round(time.Millisecond))

			s.waitConfirmed(t, accepted...)
			t.Logf("%s: %d orders confirmed %s after RESET", layout.name, len(accepted), time.Since(up).Round(time.Millisecond))
			// What answered 503 changed nothing, but for a command whose
			// session was ended while its COMMIT was on the wire: it may have
			// committed (the client retries it with its Idempotency-Key).
			if got := sys.count(t, `SELECT count(*) FROM orders`); got < len(accepted) || got > len(accepted)+unsure {
				t.Errorf("%d orders, want the %d accepted (and up to %d more, in flight as the sessions were ended)", got, len(accepted), unsure)
			}
			for what, want := range map[string]int{
				`SELECT count(*) FROM orders WHERE status = 'cancelled'`: 0,
				`SELECT count(*) FROM products`:                          1,
				`SELECT count(*) FROM users`:                             2,
			} {
				if got := sys.count(t, what); got != want {
					t.Errorf("%s = %d, want %d", what, got, want)
				}
			}
			groups := []string{"orders", "inventory", "emails"}
			sys.waitQuiet(t, 60*time.Second, groups...)
			sys.checkConverged(t, map[uuid.UUID]int64{productID: stock}, groups...)
			sys.waitRedisMatches(t, 30*time.Second)
			for _, g := range append(groups, "projections") {
				out, stderr, code := shop(t, env, "dead", "list", g)
				if code != 0 || !strings.Contains(out, "0 dead message(s)") {
					t.Errorf("shop dead list %s: exit %d, %q %s; want no dead message", g, code, out, stderr)
				}
			}
			for _, p := range slices.Backward(procs) {
				stop(t, p.cmd)
			}
		})
	}
}
