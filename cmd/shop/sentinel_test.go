package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/projections"
	"github.com/shopdev/shop/store"
)

// onSentinels points the system at the master that f's Sentinels name:
// the REDIS_URL of its processes, and the models its checks read.
func onSentinels(t *testing.T, s *system, f *testenv.Failover) {
	t.Helper()
	s.env["REDIS_URL"] = f.URL()
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: f.Name, SentinelAddrs: f.Addrs})
	t.Cleanup(func() { _ = rdb.Close() })
	models, err := projections.New(projections.Config{Client: rdb, Prefix: s.env["REDIS_PREFIX"]})
	testenv.Must(t, err, "projections on the sentinels")
	s.models = models
}

// modelsAt returns the read models of the system as the Redis server at
// addr holds them (a replica serves reads).
func modelsAt(t *testing.T, s *system, f *testenv.Failover, addr string) *projections.Store {
	t.Helper()
	models, err := projections.New(projections.Config{Client: f.Client(t, addr), Prefix: s.env["REDIS_PREFIX"]})
	testenv.Must(t, err, "projections on "+addr)
	return models
}

// startProjections starts the projections group in a process of its own,
// which logs at info level, and returns what it logs.
func startProjections(t *testing.T, env map[string]string) *testenv.Logs {
	t.Helper()
	env = maps.Clone(env)
	env["LOG_LEVEL"] = "info"
	_, logs := startLogged(t, env, "consume", "projections")
	return logs
}

// rebuilds returns the rebuilds that repairAfterFailovers logged: those
// after a change of master, or with none recorded (first).
func rebuilds(t *testing.T, logs *testenv.Logs, first bool) []map[string]any {
	t.Helper()
	prefix := "projections: the Redis master changed"
	if first {
		prefix = "projections: no record of the Redis master"
	}
	var out []map[string]any
	for _, line := range logs.Lines(t) {
		if msg, _ := line["msg"].(string); strings.HasPrefix(msg, prefix) {
			out = append(out, line)
		}
	}
	return out
}

// call sends a request to the API; safe from any goroutine.
func call(client *http.Client, method, url, token, body string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, raw, err
}

// TestRedisFailoverUnderTraffic runs the system on a Redis master watched
// by three Sentinels (REDIS_URL=redis-sentinel://...): the API, its rate
// limit and login throttle, and the processes of the relay and the
// consumer groups. While a customer places orders and reads them and a
// product through the API, and products are added, the master is
// SIGKILLed. Every request still gets its answer (from Postgres while Redis
// has no master); once the Sentinels have promoted the replica, reads come
// from Redis again, logins work, a read waiting for a version is woken by
// the new master's announcement, the projections group rebuilds the read
// models (and logs it), and Redis converges to Postgres.
func TestRedisFailoverUnderTraffic(t *testing.T) {
	t.Parallel()
	f := testenv.Sentinels(t)
	s := newSystem(t)
	onSentinels(t, s, f)
	startProcess(t, s.env, "relay")
	startProcess(t, s.env, "consume", "orders", "inventory")
	projLogs := startProjections(t, s.env)
	apiEnv := maps.Clone(s.env)
	apiEnv["LOG_LEVEL"], apiEnv["HTTP_ADDR"], apiEnv["JWT_SECRET"] = "info", "127.0.0.1:0", strings.Repeat("s", 32)
	_, addr := startAPI(t, apiEnv)
	base := "http://" + addr
	client := &http.Client{Timeout: 10 * time.Second}

	testenv.Eventually(t, 30*time.Second, func() error {
		if len(rebuilds(t, projLogs, true)) == 0 {
			return fmt.Errorf("the projections group has not logged its first rebuild")
		}
		return nil
	})
	initial := map[uuid.UUID]int64{}
	plenty := s.product(t, "FAILOVER-PLENTY", 1_000_000)
	initial[plenty] = 1_000_000
	if code, _, body, err := call(client, http.MethodPost, base+"/v1/users", "", `{"email":"failover@shop.test","name":"F","password":"correct horse"}`); err != nil || code != http.StatusCreated {
		t.Fatalf("register: %d %s %v", code, body, err)
	}
	login := func() (string, error) {
		code, _, body, err := call(client, http.MethodPost, base+"/v1/tokens", "", `{"email":"failover@shop.test","password":"correct horse"}`)
		if err != nil || code != http.StatusOK {
			return "", fmt.Errorf("login: %d %s %v", code, body, err)
		}
		var tok struct{ Token string }
		return tok.Token, json.Unmarshal(body, &tok)
	}
	token, err := login()
	testenv.Must(t, err, "login")

	// The traffic: place an order, read it, read the product; again.
	type answer struct {
		at     time.Time
		what   string
		status int
		source string
		took   time.Duration
		err    error
	}
	var mu sync.Mutex
	var answers []answer
	record := func(what string, start time.Time, code int, h http.Header, err error) {
		mu.Lock()
		defer mu.Unlock()
		answers = append(answers, answer{at: start, what: what, status: code, source: h.Get("X-Read-Source"), took: time.Since(start), err: err})
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	var stopOnce sync.Once
	stopTraffic := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	t.Cleanup(stopTraffic)
	for w := range 2 {
		wg.Go(func() {
			pace := time.NewTicker(25 * time.Millisecond)
			defer pace.Stop()
			for {
				select {
				case <-stop:
					return
				case <-pace.C:
				}
				start := time.Now()
				code, h, body, err := call(client, http.MethodPost, base+"/v1/orders", token,
					fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1}]}`, plenty))
				record("POST /v1/orders", start, code, h, err)
				var placed struct{ ID string }
				if err != nil || code != http.StatusAccepted || json.Unmarshal(body, &placed) != nil {
					continue
				}
				start = time.Now()
				code, h, _, err = call(client, http.MethodGet, base+"/v1/orders/"+placed.ID, token, "")
				record("GET /v1/orders/{id}", start, code, h, err)
				if w == 0 {
					start = time.Now()
					code, h, _, err = call(client, http.MethodGet, base+"/v1/products/"+plenty.String(), "", "")
					record("GET /v1/products/{id}", start, code, h, err)
				}
			}
		})
	}
	time.Sleep(time.Second)
	initial[s.product(t, "FAILOVER-BEFORE", 10)] = 10
	// An order of before the failover, projected (the replica has it).
	code, _, body, err := call(client, http.MethodPost, base+"/v1/orders", token, fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1}]}`, plenty))
	var before struct{ ID uuid.UUID }
	if err != nil || code != http.StatusAccepted || json.Unmarshal(body, &before) != nil {
		t.Fatalf("place an order: %d %s %v", code, body, err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if _, found, err := s.models.Order(context.Background(), before.ID); err != nil || !found {
			return fmt.Errorf("the order is not projected yet (%v)", err)
		}
		return nil
	})

	killed := time.Now()
	old := f.KillMaster(t)
	initial[s.product(t, "FAILOVER-DURING", 10)] = 10
	master := f.WaitFailover(t, old, 30*time.Second)
	promoted := time.Since(killed)
	// Reads come from Redis again: from the new master, the old one is dead.
	var fromRedis time.Duration
	testenv.Eventually(t, 30*time.Second, func() error {
		code, h, _, err := call(client, http.MethodGet, base+"/v1/products/"+plenty.String(), "", "")
		if err != nil || code != http.StatusOK || h.Get("X-Read-Source") != "redis" {
			return fmt.Errorf("GET a product after the failover: %d, from %q, %v", code, h.Get("X-Read-Source"), err)
		}
		fromRedis = time.Since(killed)
		return nil
	})
	testenv.Eventually(t, 10*time.Second, func() error {
		code, h, _, err := call(client, http.MethodGet, base+"/v1/orders/"+before.ID.String(), token, "")
		if err != nil || code != http.StatusOK || h.Get("X-Read-Source") != "redis" {
			return fmt.Errorf("GET an order of before the failover: %d, from %q, %v", code, h.Get("X-Read-Source"), err)
		}
		return nil
	})
	initial[s.product(t, "FAILOVER-AFTER", 10)] = 10
	var loggedIn time.Duration
	testenv.Eventually(t, 30*time.Second, func() error {
		_, err := login() // the login throttle, in Redis, fails closed
		loggedIn = time.Since(killed)
		return err
	})
	t.Logf("master %s SIGKILLed: the Sentinels promoted %s after %s; reads came from Redis again after %s, logins after %s",
		old, master, promoted.Round(time.Millisecond), fromRedis.Round(time.Millisecond), loggedIn.Round(time.Millisecond))
	time.Sleep(time.Second) // traffic on the new master
	stopTraffic()

	// Every request had its answer, within the API's bounds.
	var slowest answer
	counts := map[string]int{}
	for _, a := range answers {
		want := http.StatusOK
		if a.what == "POST /v1/orders" {
			want = http.StatusAccepted
		}
		if a.err != nil || a.status != want {
			t.Errorf("%s at %s (kill +%s): %d, %v; want %d", a.what, a.at.Format("15:04:05.000"), a.at.Sub(killed).Round(time.Millisecond), a.status, a.err, want)
		}
		if a.took > slowest.took {
			slowest = a
		}
		counts[a.what+" from "+a.source]++
	}
	t.Logf("%d requests (by where reads came from: %v); the slowest, %s at kill %+s, took %s", len(answers), counts,
		slowest.what, slowest.at.Sub(killed).Round(time.Millisecond), slowest.took.Round(time.Millisecond))
	if slowest.took > 3*time.Second {
		t.Errorf("a request took %s: the API must not wait on a Redis that has no master", slowest.took)
	}

	// A read waiting for a version is woken by the new master's
	// announcement (its Pub/Sub subscription followed the master).
	waiting := s.product(t, "FAILOVER-WAIT", 10)
	initial[waiting] = 10
	testenv.Eventually(t, 30*time.Second, func() error {
		if _, found, err := s.models.Product(context.Background(), waiting); err != nil || !found {
			return fmt.Errorf("the product is not projected yet (%v)", err)
		}
		return nil
	})
	type waited struct {
		code  int
		stale string
		took  time.Duration
		err   error
	}
	done := make(chan waited, 1)
	start := time.Now()
	go func() {
		code, h, _, err := call(client, http.MethodGet, base+"/v1/products/"+waiting.String()+"?min_version=2", "", "")
		done <- waited{code, h.Get("X-Read-Stale"), time.Since(start), err}
	}()
	time.Sleep(300 * time.Millisecond) // the read waits
	s.do(t, "restock", func(ctx context.Context, tx *store.Tx) error {
		_, err := app.Restock(ctx, tx, app.Operator, waiting, 1, time.Now())
		return err
	})
	initial[waiting]++
	if w := <-done; w.err != nil || w.code != http.StatusOK || w.stale != "" || w.took < 300*time.Millisecond {
		t.Errorf("GET ?min_version=2: %d, stale %q, after %s, %v; want 200, woken by the change", w.code, w.stale, w.took, w.err)
	} else {
		t.Logf("a read waiting for version 2 was answered %s after it asked", w.took.Round(time.Millisecond))
	}

	// The projections group rebuilt the read models on the new master.
	testenv.Eventually(t, 30*time.Second, func() error {
		lines := rebuilds(t, projLogs, false)
		if len(lines) == 0 {
			return fmt.Errorf("no rebuild after the failover logged")
		}
		if l := lines[0]; l["products"].(float64) < 3 || l["orders"].(float64) < 1 || l["master_run_id"] == l["previous_run_id"] {
			return fmt.Errorf("the rebuild logged %v", l)
		}
		return nil
	})
	s.waitQuiet(t, 60*time.Second, "orders", "inventory")
	s.checkConverged(t, initial, "orders", "inventory")
	s.waitRedisMatches(t, 30*time.Second)
}

// TestRedisFailoverRepairsALostWrite: a write that the master acknowledged
// but never replicated (its replica detached) is lost when the master is
// SIGKILLed and the replica promoted; nothing would write that model again
// until its next event, but the projections group notices the new master
// and rebuilds the read models from Postgres, which brings the write back.
func TestRedisFailoverRepairsALostWrite(t *testing.T) {
	t.Parallel()
	f := testenv.Sentinels(t)
	s := newSystem(t)
	onSentinels(t, s, f)
	startProcess(t, s.env, "relay")
	projLogs := startProjections(t, s.env)
	ctx := context.Background()

	id := s.product(t, "LOST", 10)
	replicaAddr := f.ReplicaAddr(t)
	master, replica := modelsAt(t, s, f, f.MasterAddr(t)), modelsAt(t, s, f, replicaAddr)
	// The product is on the replica, and so is the record of the master
	// the models were made whole on.
	testenv.Eventually(t, 30*time.Second, func() error {
		p, found, err := replica.Product(ctx, id)
		if err != nil || !found || p.Version != 1 {
			return fmt.Errorf("the replica has the product at %+v (found %v, %v), want version 1", p, found, err)
		}
		if n, err := f.Client(t, replicaAddr).Exists(ctx, replica.MasterKey()).Result(); err != nil || n != 1 {
			return fmt.Errorf("the replica has no %s (%v)", replica.MasterKey(), err)
		}
		return nil
	})
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := len(rebuilds(t, projLogs, true)); n != 1 {
			return fmt.Errorf("%d first rebuilds logged, want 1", n)
		}
		return nil
	})

	reattach := f.Detach(t)
	s.do(t, "restock", func(ctx context.Context, tx *store.Tx) error {
		_, err := app.Restock(ctx, tx, app.Operator, id, 5, time.Now())
		return err
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		p, _, err := master.Product(ctx, id)
		if err != nil || p.Version != 2 || p.StockAvailable != 15 {
			return fmt.Errorf("the master has the product at %+v (%v), want version 2 and 15 in stock", p, err)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // what replication there were would be done
	if p, _, err := replica.Product(ctx, id); err != nil || p.Version != 1 {
		t.Fatalf("the detached replica has the product at %+v (%v), want version 1: the restock unreplicated", p, err)
	}

	killed := time.Now()
	old := f.KillMaster(t)
	reattach()
	if got := f.WaitFailover(t, old, 30*time.Second); got != replicaAddr {
		t.Fatalf("the Sentinels promoted %s, want the replica %s", got, replicaAddr)
	}
	promoted := time.Since(killed)
	testenv.Eventually(t, 30*time.Second, func() error {
		p, _, err := replica.Product(ctx, id)
		if err != nil || p.Version != 2 || p.StockAvailable != 15 {
			return fmt.Errorf("the new master has the product at %+v (%v), want the lost restock repaired: version 2, 15 in stock", p, err)
		}
		return nil
	})
	repaired := time.Since(killed)
	var lines []map[string]any
	testenv.Eventually(t, 10*time.Second, func() error {
		if lines = rebuilds(t, projLogs, false); len(lines) != 1 || lines[0]["products"] != 1.0 || lines[0]["orders"] != 0.0 {
			return fmt.Errorf("want one rebuild of 1 product and 0 orders logged after the failover, got %v", lines)
		}
		return nil
	})
	t.Logf("master SIGKILLed; the replica promoted after %s; the lost restock repaired after %s; logged: %v",
		promoted.Round(time.Millisecond), repaired.Round(time.Millisecond), lines[0])
	s.waitRedisMatches(t, 30*time.Second)
}
