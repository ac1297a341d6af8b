package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopdev/shop/internal/testenv"
)

// getJSON makes a GET and decodes the answer; it fails t unless the status
// is wantStatus.
func getJSON(t *testing.T, url, token string, wantStatus int) (map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	testenv.Must(t, err, "new request")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	testenv.Must(t, err, "GET "+url)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != wantStatus {
		t.Fatalf("GET %s = %d, want %d: %s", url, res.StatusCode, wantStatus, raw)
	}
	var out map[string]any
	testenv.Must(t, json.Unmarshal(raw, &out), "decode response")
	return out, res.Header
}

// TestRunServesTheWholeSystem is the README's session against `shop run`:
// register, log in, create a product as admin, order, and read the order
// confirmed with ?min_version=2 right after placing it, without sleeping.
func TestRunServesTheWholeSystem(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	env := maps.Clone(s.env)
	env["LOG_LEVEL"], env["HTTP_ADDR"] = "info", "127.0.0.1:0"
	run, addrs := startListening(t, env, "run")
	base := "http://" + addrs["api"]

	if out, stderr, code := shop(t, env, "user", "add", "--email", "admin@run.test", "--password", "admin password", "--admin"); code != 0 {
		t.Fatalf("user add: %s %s", out, stderr)
	}
	admin := postJSON(t, base+"/v1/tokens", "", `{"email":"admin@run.test","password":"admin password"}`, http.StatusOK)["token"].(string)
	product := postJSON(t, base+"/v1/products", admin, `{"sku":"MUG-1","name":"Mug","price_cents":1200,"stock":10}`, http.StatusCreated)["id"].(string)
	postJSON(t, base+"/v1/users", "", `{"email":"ann@run.test","name":"Ann","password":"ann secret"}`, http.StatusCreated)
	ann := postJSON(t, base+"/v1/tokens", "", `{"email":"ann@run.test","password":"ann secret"}`, http.StatusOK)["token"].(string)
	placed := postJSON(t, base+"/v1/orders", ann, fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":2}]}`, product), http.StatusAccepted)

	order := readAtLeast(t, base+"/v1/orders/"+placed["id"].(string)+"?min_version=2", ann)
	if order["status"] != "confirmed" || order["version"] != 2.0 {
		t.Fatalf("order read with min_version=2 = %v; want confirmed v2", order)
	}
	if p := readAtLeast(t, base+"/v1/products/"+product+"?min_version=2", ""); p["stock_available"] != 8.0 {
		t.Errorf("product = %v, want 8 available after reserving 2", p)
	}
	body := metrics(t, addrs["ops"])
	for _, m := range []string{"shop_relay_published_total", "shop_consumer_messages_total", "shop_http_requests_total",
		`shop_db_pool_max_conns{pool="api"}`, `shop_db_pool_max_conns{pool="relay"}`, `shop_db_pool_max_conns{pool="consumers"}`,
		`shop_redis_pool_total_conns{pool="api"}`, `shop_redis_pool_total_conns{pool="consumers"}`,
		`shop_consumer_event_age_seconds_count{group="orders"}`} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics of shop run lacks %s", m)
		}
	}
	// The API's pool lent connections for the commands above, and every
	// group's lag counts the events it applied.
	for _, series := range []string{`shop_db_pool_acquires_total{pool="api"}`, `shop_consumer_event_age_seconds_count{group="orders"}`,
		`shop_consumer_event_age_seconds_count{group="inventory"}`, `shop_consumer_event_age_seconds_count{group="projections"}`} {
		if v := sample(body, series); v < 1 {
			t.Errorf("%s = %v, want at least 1", series, v)
		}
	}
	// The API's port serves the API and health only: /metrics may stay
	// private on METRICS_ADDR.
	res, err := http.Get(base + "/metrics")
	testenv.Must(t, err, "GET /metrics on the API's port")
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics on the API's port = %d, want 404", res.StatusCode)
	}
	stop(t, run)
}

// TestBurstOfOrdersEndsWithRedisEqualToPostgres: 500 orders from 20 users
// through `shop run`'s API at once, some beyond stock, some cancelled; once
// the system is quiet, every order and product in Redis equals Postgres.
func TestBurstOfOrdersEndsWithRedisEqualToPostgres(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	env := maps.Clone(s.env)
	env["LOG_LEVEL"], env["HTTP_ADDR"] = "info", "127.0.0.1:0"
	env["RATE_LIMIT"] = "0" // 20 users behind one address: the default limit would answer 429
	_, addr := startServing(t, env, "run")
	base := "http://" + addr

	if out, stderr, code := shop(t, env, "user", "add", "--email", "admin@burst.test", "--password", "admin password", "--admin"); code != 0 {
		t.Fatalf("user add: %s %s", out, stderr)
	}
	admin := postJSON(t, base+"/v1/tokens", "", `{"email":"admin@burst.test","password":"admin password"}`, http.StatusOK)["token"].(string)
	var products []string
	for i, stock := range []int{10_000, 10_000, 10_000, 10_000, 40} { // the last runs out
		products = append(products, postJSON(t, base+"/v1/products", admin,
			fmt.Sprintf(`{"sku":"BURST-%d","name":"Burst %d","price_cents":%d,"stock":%d}`, i, i, 100+i, stock), http.StatusCreated)["id"].(string))
	}
	tokens := make([]string, 20)
	for i := range tokens {
		email := fmt.Sprintf("buyer%d@burst.test", i)
		postJSON(t, base+"/v1/users", "", fmt.Sprintf(`{"email":%q,"name":"Buyer","password":"buyer password"}`, email), http.StatusCreated)
		tokens[i] = postJSON(t, base+"/v1/tokens", "", fmt.Sprintf(`{"email":%q,"password":"buyer password"}`, email), http.StatusOK)["token"].(string)
	}
	var wg sync.WaitGroup
	for u, token := range tokens {
		wg.Go(func() {
			for i := range 25 {
				body := fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":%d},{"product_id":%q,"quantity":1}]}`,
					products[(u+i)%4], 1+i%3, products[4])
				if i%2 == 0 {
					body = fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":%d}]}`, products[(u+i)%4], 1+i%3)
				}
				res, err := post(base+"/v1/orders", token, body)
				if err != nil || res.status != http.StatusAccepted {
					t.Errorf("place order: %v %d %s", err, res.status, res.body)
					return
				}
				if i%10 == 9 { // cancel some right away: they race the reservation
					if res, err := post(base+"/v1/orders/"+res.id+"/cancel", token, ""); err != nil ||
						(res.status != http.StatusAccepted && res.status != http.StatusConflict) {
						t.Errorf("cancel: %v %d %s", err, res.status, res.body)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if n := s.count(t, `SELECT count(*) FROM orders`); n != 500 {
		t.Fatalf("%d orders, want 500", n)
	}
	s.waitQuiet(t, 90*time.Second, "orders", "inventory", "emails")
	s.waitRedisMatches(t, 60*time.Second)
	t.Logf("statuses: %d confirmed, %d rejected, %d cancelled",
		s.count(t, `SELECT count(*) FROM orders WHERE status = 'confirmed'`),
		s.count(t, `SELECT count(*) FROM orders WHERE status = 'rejected'`),
		s.count(t, `SELECT count(*) FROM orders WHERE status = 'cancelled'`))
}

type posted struct {
	status int
	id     string
	body   string
}

// post sends a POST from any goroutine and returns status, id and body.
func post(url, token, body string) (posted, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return posted{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return posted{}, err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var v struct{ ID string }
	_ = json.Unmarshal(raw, &v)
	return posted{status: res.StatusCode, id: v.ID, body: string(raw)}, nil
}

// readAtLeast GETs a ?min_version URL until the answer is not stale. Each
// read waits up to 2 s on the server; on a loaded CI machine the flow may
// take longer than one wait, so a stale answer is asked again (no sleep:
// the waiting is the server's).
func readAtLeast(t *testing.T, url, token string) map[string]any {
	t.Helper()
	for attempt := 1; ; attempt++ {
		body, hdr := getJSON(t, url, token, http.StatusOK)
		if hdr.Get("X-Read-Stale") == "" {
			if attempt > 1 {
				t.Logf("%s: read on attempt %d", url, attempt)
			}
			return body
		}
		if attempt == 15 {
			t.Fatalf("%s still stale after %d reads: %v", url, attempt, body)
		}
	}
}

// TestRunIsNotReadyWithoutRabbitMQ: `shop run` against a RabbitMQ vhost that
// does not exist serves, but its /readyz (on its API's port as on its
// METRICS_ADDR) answers 503 naming RabbitMQ, whose every connection it
// retries, until the vhost exists: then it is ready, without a restart.
func TestRunIsNotReadyWithoutRabbitMQ(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	vhost := testenv.NewVHostName() // not created yet
	env := maps.Clone(s.env)
	env["LOG_LEVEL"], env["HTTP_ADDR"] = "info", "127.0.0.1:0"
	env["AMQP_URL"] = strings.Replace(env["AMQP_URL"], "/"+lastSegment(env["AMQP_URL"]), "/"+vhost, 1)
	run, addr := startServing(t, env, "run")
	testenv.Eventually(t, 30*time.Second, func() error {
		res, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		defer res.Body.Close()
		var body struct{ Unavailable []string }
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil || res.StatusCode != http.StatusServiceUnavailable {
			return fmt.Errorf("/readyz = %d (%v); want 503", res.StatusCode, err)
		}
		down := strings.Join(body.Unavailable, ",")
		for _, want := range []string{"rabbitmq (relay)", "rabbitmq (orders)", "rabbitmq (projections)"} {
			if !strings.Contains(down, want) {
				return fmt.Errorf("/readyz says %v unavailable; want %s among them", down, want)
			}
		}
		if strings.Contains(down, "postgres") || strings.Contains(down, "redis") {
			return fmt.Errorf("/readyz says %v unavailable, want only RabbitMQ", down)
		}
		return nil
	})
	testenv.CreateVHost(t, vhost)
	waitReady(t, addr)
	stop(t, run)
}

// lastSegment is the part of a URL after its last slash.
func lastSegment(u string) string { return u[strings.LastIndex(u, "/")+1:] }

// sample is the value of one series in a /metrics body; -1 when absent.
func sample(body, series string) float64 {
	for line := range strings.Lines(body) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}
