package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/shopdev/shop/domain/order"
	"github.com/shopdev/shop/handlers/httpapi"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/projections"
	"github.com/shopdev/shop/store"
)

// redisReads are the read models of a test's API, in Redis.
type redisReads struct {
	models *projections.Store
	reader *projections.Reader // once the API is started
	client string              // the name of the reader's Redis connections
}

// withRedis serves the read models from Redis at addr under a key prefix of
// the test's own (deleted when it ends); cfg sets the reader's timeouts.
func withRedis(t *testing.T, addr string, cfg projections.ReaderConfig) (tuning, *redisReads) {
	t.Helper()
	_, prefix := testenv.Redis(t) // a prefix of the test's own, cleaned up when it ends
	name := strings.TrimSuffix(prefix, ":")
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1, ClientName: name})
	t.Cleanup(func() { _ = rdb.Close() })
	models, err := projections.New(projections.Config{Client: rdb, Prefix: prefix})
	testenv.Must(t, err, "projections")
	rr := &redisReads{models: models, client: name}
	return func(c *httpapi.Config, pool *pgxpool.Pool) {
		cfg.Store, cfg.Origin = models, store.NewReads(pool)
		reads, err := projections.NewReader(cfg)
		testenv.Must(t, err, "reader")
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		reads.Watch(ctx)
		c.Reads, rr.reader = reads, reads
	}, rr
}

// waits is how long ?min_version waits.
func waits(d time.Duration) projections.ReaderConfig {
	return projections.ReaderConfig{MinVersionWait: d}
}

func source(r response) string { return r.header.Get(httpapi.HeaderReadSource) }

func TestQueriesMissRedisThenServeIt(t *testing.T) {
	t.Parallel()
	tune, _ := withRedis(t, "127.0.0.1:6379", waits(time.Second))
	a := newAPIWith(t, tune)
	_, admin := a.createAdmin(t)
	ann, annToken := a.registerCustomer(t, "ann@example.com")
	_, bobToken := a.registerCustomer(t, "bob@example.com")
	p := a.createProduct(t, admin, "MUG-1", 1200, 10)
	o := a.placeOrder(t, annToken, item(p.ID, 2))

	tests := []struct{ name, path, token string }{
		{"a product, to anyone", "/v1/products/" + p.ID, ""},
		{"an order, to its owner", "/v1/orders/" + o.ID, annToken},
	}
	for _, tt := range tests {
		first := a.do(t, "GET", tt.path, tt.token, nil, nil).expect(t, http.StatusOK)
		second := a.do(t, "GET", tt.path, tt.token, nil, nil).expect(t, http.StatusOK)
		if source(first) != "postgres" || source(second) != "redis" {
			t.Errorf("%s: sources %q then %q; want postgres (a miss, written back) then redis", tt.name, source(first), source(second))
		}
		if string(first.raw) != string(second.raw) {
			t.Errorf("%s: Postgres answered %s, Redis %s", tt.name, first.raw, second.raw)
		}
	}
	var got orderJSON
	a.do(t, "GET", "/v1/orders/"+o.ID, admin, nil, nil).expect(t, http.StatusOK).into(t, &got)
	if got.ID != o.ID || got.UserID != ann.String() || got.Status != "pending" || got.TotalCents != 2400 || got.Version != 1 || len(got.Items) != 1 {
		t.Errorf("order = %+v", got)
	}

	// Another user's order does not exist for them; no token is 401.
	a.do(t, "GET", "/v1/orders/"+o.ID, bobToken, nil, nil).problem(t, http.StatusNotFound)
	a.do(t, "GET", "/v1/orders/"+o.ID, "", nil, nil).unauthorized(t)

	var list struct {
		Items []orderJSON
		Next  *string
	}
	a.do(t, "GET", "/v1/orders", annToken, nil, nil).expect(t, http.StatusOK).into(t, &list)
	if len(list.Items) != 1 || list.Items[0].ID != o.ID || list.Next != nil {
		t.Errorf("ann's orders = %+v", list)
	}
	a.do(t, "GET", "/v1/orders", bobToken, nil, nil).expect(t, http.StatusOK).into(t, &list)
	if len(list.Items) != 0 {
		t.Errorf("bob's orders = %+v, want none", list)
	}
	a.do(t, "GET", "/v1/orders?user_id="+ann.String(), admin, nil, nil).expect(t, http.StatusOK).into(t, &list)
	if len(list.Items) != 1 {
		t.Errorf("ann's orders as the admin sees them = %+v", list)
	}

	a.do(t, "GET", "/v1/orders?user_id="+ann.String(), bobToken, nil, nil).problem(t, http.StatusForbidden)
}

func TestProductListPagesInCreationOrder(t *testing.T) {
	t.Parallel()
	tune, _ := withRedis(t, "127.0.0.1:6379", waits(time.Second))
	a := newAPIWith(t, tune)
	_, admin := a.createAdmin(t)
	var want []string
	for _, sku := range []string{"A-1", "B-2", "C-3", "D-4", "E-5"} {
		want = append(want, a.createProduct(t, admin, sku, 100, 1).ID)
	}
	var got []string
	path := "/v1/products?limit=2"
	for pages := 0; pages < 5; pages++ {
		var page struct {
			Items []struct {
				ID, SKU, Name  string
				PriceCents     int64 `json:"price_cents"`
				StockAvailable int64 `json:"stock_available"`
				Version        int64
			}
			Next *string
		}
		a.do(t, "GET", path, "", nil, nil).expect(t, http.StatusOK).into(t, &page)
		for _, p := range page.Items {
			got = append(got, p.ID)
		}
		if page.Next == nil {
			break
		}
		path = "/v1/products?limit=2&after=" + *page.Next
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("pages = %v, want %v", got, want)
	}
}

func TestQueriesRejectBadInput(t *testing.T) {
	t.Parallel()
	tune, _ := withRedis(t, "127.0.0.1:6379", waits(time.Second))
	a := newAPIWith(t, tune)
	_, token := a.registerCustomer(t, "ann@example.com")
	a.do(t, "GET", "/v1/products/not-a-uuid", "", nil, nil).problem(t, http.StatusNotFound)
	a.do(t, "GET", "/v1/products/"+uuid.NewString(), "", nil, nil).problem(t, http.StatusNotFound)
	a.do(t, "GET", "/v1/orders/"+uuid.NewString(), token, nil, nil).problem(t, http.StatusNotFound)
	a.do(t, "GET", "/v1/products/"+uuid.NewString()+"?min_version=abc", "", nil, nil).invalid(t, "min_version")
	a.do(t, "GET", "/v1/products?limit=0", "", nil, nil).invalid(t, "limit")
	a.do(t, "GET", "/v1/products?after=zzz&limit=500", "", nil, nil).invalid(t, "after", "limit")
	a.do(t, "GET", "/v1/orders?before=zzz", token, nil, nil).invalid(t, "before")
}

func TestMinVersionWaitsForTheProjection(t *testing.T) {
	t.Parallel()
	// Long bounds, so that a loaded machine (CI's -race with every test
	// in parallel) can neither make the projection late nor make a Redis
	// read time out and fall back to Postgres.
	tune, rr := withRedis(t, "127.0.0.1:6379", projections.ReaderConfig{MinVersionWait: 20 * time.Second, Timeout: 10 * time.Second})
	a := newAPIWith(t, tune)
	_, admin := a.createAdmin(t)
	_, annToken := a.registerCustomer(t, "ann@example.com")
	p := a.createProduct(t, admin, "MUG-1", 1200, 10)
	o := a.placeOrder(t, annToken, item(p.ID, 2))

	// The projector confirms the order once the read with min_version=2
	// waits for it (as the consumers would, later): the read answers it.
	confirmed := make(chan error, 1)
	go func() {
		for deadline := time.Now().Add(20 * time.Second); rr.reader.Waiting() == 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond) // a poll of the condition, not a guess at the time it takes
		}
		err := rr.models.PutOrder(context.Background(), projections.Order{
			ID: uuid.MustParse(o.ID), UserID: uuid.MustParse(o.UserID), Status: order.StatusConfirmed,
			Items:      []order.Line{{ProductID: uuid.MustParse(p.ID), SKU: "MUG-1", Name: "Product MUG-1", Quantity: 2, UnitPriceCents: 1200}},
			TotalCents: 2400, Version: 2, UpdatedAt: time.Now().UTC(),
		})
		confirmed <- err
	}()
	var got struct {
		Status  string
		Version int64
	}
	r := a.do(t, "GET", "/v1/orders/"+o.ID+"?min_version=2", annToken, nil, nil).expect(t, http.StatusOK)
	testenv.Must(t, <-confirmed, "project the confirmation")
	if err := json.Unmarshal(r.raw, &got); err != nil || got.Status != "confirmed" || got.Version != 2 || source(r) != "redis" {
		t.Fatalf("min_version=2 answered %s from %s; want the confirmed order v2 from redis", r.raw, source(r))
	}
	if r.header.Get(httpapi.HeaderStale) != "" {
		t.Errorf("a reached min_version is marked stale")
	}

}

func TestMinVersionNotReachedAnswersTheLatestViewMarkedStale(t *testing.T) {
	t.Parallel()
	tune, _ := withRedis(t, "127.0.0.1:6379", waits(300*time.Millisecond))
	a := newAPIWith(t, tune)
	_, admin := a.createAdmin(t)
	_, annToken := a.registerCustomer(t, "ann@example.com")
	p := a.createProduct(t, admin, "MUG-1", 1200, 10)
	o := a.placeOrder(t, annToken, item(p.ID, 2))
	r := a.do(t, "GET", "/v1/orders/"+o.ID+"?min_version=9", annToken, nil, nil).expect(t, http.StatusOK)
	var got orderJSON
	r.into(t, &got)
	if r.header.Get(httpapi.HeaderStale) != "true" || got.Version != 1 || got.Status != "pending" {
		t.Errorf("min_version=9: %+v with stale header %q; want the pending v1, marked stale", got, r.header.Get(httpapi.HeaderStale))
	}
}

func TestQueriesAnswerFromPostgresWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	tune, _ := withRedis(t, "127.0.0.1:1", waits(200*time.Millisecond)) // nothing listens there
	a := newAPIWith(t, tune)
	_, admin := a.createAdmin(t)
	_, annToken := a.registerCustomer(t, "ann@example.com")
	p := a.createProduct(t, admin, "MUG-1", 1200, 10)
	o := a.placeOrder(t, annToken, item(p.ID, 1))
	for i := range 6 { // past the breaker's threshold: it opens, answers stay right
		for _, path := range []string{"/v1/products/" + p.ID, "/v1/orders/" + o.ID + "?min_version=1", "/v1/products", "/v1/orders"} {
			r := a.do(t, "GET", path, annToken, nil, nil).expect(t, http.StatusOK)
			if source(r) != "postgres" || r.header.Get(httpapi.HeaderRedis) != "unavailable" {
				t.Fatalf("round %d %s: source %q, %s %q; want postgres and unavailable", i, path, source(r),
					httpapi.HeaderRedis, r.header.Get(httpapi.HeaderRedis))
			}
		}
	}
}

// startRedis runs a redis-server of the test's own on a free port and
// returns its address and a stop function; it is stopped when t ends.
func startRedis(t *testing.T, port int) (addr string, stop func()) {
	t.Helper()
	if port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		testenv.Must(t, err, "find a free port")
		port = ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
	}
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	testenv.Must(t, cmd.Start(), "start redis-server")
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(stop)
	testenv.Eventually(t, 10*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
		}
		return err
	})
	return addr, stop
}

// TestRedisStoppedAndStartedAgain stops a real Redis under the API: reads
// go on from Postgres, saying so; once Redis is back, they return to it.
func TestRedisStoppedAndStartedAgain(t *testing.T) {
	t.Parallel()
	addr, stop := startRedis(t, 0)
	tune, _ := withRedis(t, addr, waits(200*time.Millisecond))
	a := newAPIWith(t, tune)
	_, admin := a.createAdmin(t)
	p := a.createProduct(t, admin, "MUG-1", 1200, 10)
	path := "/v1/products/" + p.ID
	// The first read fills Redis; on a loaded machine that write can
	// outlast the Redis timeout, and the next read fills it again.
	testenv.Eventually(t, 10*time.Second, func() error {
		if r := a.do(t, "GET", path, "", nil, nil).expect(t, http.StatusOK); source(r) != "redis" {
			return fmt.Errorf("source %q with Redis up, want redis", source(r))
		}
		return nil
	})

	stop()
	for range 5 { // a hang would fail the request's own deadline (see send)
		r := a.do(t, "GET", path, "", nil, nil).expect(t, http.StatusOK)
		if source(r) != "postgres" || r.header.Get(httpapi.HeaderRedis) != "unavailable" {
			t.Fatalf("Redis down: source %q, %s %q", source(r), httpapi.HeaderRedis, r.header.Get(httpapi.HeaderRedis))
		}
	}

	port, _ := strconv.Atoi(addr[strings.LastIndex(addr, ":")+1:])
	startRedis(t, port) // back, empty
	testenv.Eventually(t, 15*time.Second, func() error {
		if r := a.do(t, "GET", path, "", nil, nil).expect(t, http.StatusOK); source(r) != "redis" {
			return fmt.Errorf("source %q after Redis came back", source(r))
		}
		return nil
	})
}

// TestAdminsListEveryOrder: an admin's GET /v1/orders is everyone's
// orders, newest first; a customer's, their own.
func TestAdminsListEveryOrder(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	_, ann := a.registerCustomer(t, "ann@example.com")
	_, bob := a.registerCustomer(t, "bob@example.com")
	p := a.createProduct(t, admin, "MUG-1", 1200, 10)
	anns, bobs := a.placeOrder(t, ann, item(p.ID, 1)), a.placeOrder(t, bob, item(p.ID, 1))
	var list struct {
		Items []orderJSON
		Next  *string
	}
	for _, tc := range []struct {
		who, token string
		want       []string
	}{
		{"the admin", admin, []string{bobs.ID, anns.ID}},
		{"ann", ann, []string{anns.ID}},
	} {
		a.do(t, "GET", "/v1/orders", tc.token, nil, nil).expect(t, http.StatusOK).into(t, &list)
		var got []string
		for _, o := range list.Items {
			got = append(got, o.ID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s lists %v, want %v", tc.who, got, tc.want)
		}
	}
}

// TestOneShapePerResource: what a command answers about a product or an
// order is, byte for byte, what a read of it answers: from Postgres (the
// first read, a miss) and from Redis (the next, written back).
func TestOneShapePerResource(t *testing.T) {
	t.Parallel()
	tune, _ := withRedis(t, "127.0.0.1:6379", waits(time.Second))
	a := newAPIWith(t, tune)
	_, admin := a.createAdmin(t)
	_, ann := a.registerCustomer(t, "ann@example.com")
	created := a.do(t, "POST", "/v1/products", admin, map[string]any{"sku": "MUG-1", "name": "Mug", "price_cents": 1200, "stock": 10}, nil).
		expect(t, http.StatusCreated)
	var p productJSON
	created.into(t, &p)
	placed := a.do(t, "POST", "/v1/orders", ann, orderBody(item(p.ID, 2)), nil).expect(t, http.StatusAccepted)
	var o orderJSON
	placed.into(t, &o)
	for _, tc := range []struct {
		what, path, token string
		wrote             response
	}{
		{"product", "/v1/products/" + p.ID, "", created},
		{"order", "/v1/orders/" + o.ID, ann, placed},
	} {
		for _, want := range []string{"postgres", "redis"} {
			r := a.do(t, "GET", tc.path, tc.token, nil, nil).expect(t, http.StatusOK)
			if source(r) != want {
				t.Fatalf("%s: read from %s, want %s", tc.what, source(r), want)
			}
			if strings.TrimSpace(string(r.raw)) != strings.TrimSpace(string(tc.wrote.raw)) {
				t.Errorf("%s: the command answered %s\n...and a read from %s %s", tc.what, tc.wrote.raw, want, r.raw)
			}
		}
	}
}

// TestReadCacheFollowsTheProjector: with READ_CACHE_MAX, a model read from
// Redis is answered from the API's memory afterwards (even with its Redis
// key gone), byte for byte as Redis's answer; once the projector announces
// a newer version, reads answer that one, at once for a read that asks for
// it with min_version.
func TestReadCacheFollowsTheProjector(t *testing.T) {
	t.Parallel()
	tune, rr := withRedis(t, "127.0.0.1:6379", projections.ReaderConfig{CacheMax: 100, CacheTTL: time.Minute,
		MinVersionWait: 20 * time.Second, Timeout: 10 * time.Second})
	a := newAPIWith(t, tune)
	_, admin := a.createAdmin(t)
	p := a.createProduct(t, admin, "MEMO-1", 1200, 10)
	path := "/v1/products/" + p.ID

	a.do(t, "GET", path, "", nil, nil).expect(t, http.StatusOK) // a miss: from Postgres, written to Redis
	// The projector's announcement of its own write of the product may
	// come between a read's lookup in Redis and its keeping the answer,
	// which then keeps nothing (it might be older than announced): a
	// later read keeps it.
	var fromRedis response
	testenv.Eventually(t, 10*time.Second, func() error {
		fromRedis = a.do(t, "GET", path, "", nil, nil).expect(t, http.StatusOK)
		if n := rr.reader.Cached(); n != 1 {
			return fmt.Errorf("%d models kept in memory after a read from %s, want 1", n, source(fromRedis))
		}
		return nil
	})
	rdb, _ := testenv.Redis(t)
	keys, err := rdb.Keys(context.Background(), "*product:"+p.ID).Result()
	testenv.Must(t, err, "find the product's key")
	testenv.Must(t, rdb.Del(context.Background(), keys...).Err(), "delete the product's key behind the API's back")
	fromMemory := a.do(t, "GET", path, "", nil, nil).expect(t, http.StatusOK)
	if string(fromMemory.raw) != string(fromRedis.raw) || source(fromMemory) != "redis" {
		t.Errorf("from memory: %s (%s), want Redis's answer %s", fromMemory.raw, source(fromMemory), fromRedis.raw)
	}

	// The copy lives a minute (CacheTTL): only the announcement of
	// version 2 can make a plain read answer it within the wait.
	put := func(version int64, name string) {
		t.Helper()
		testenv.Must(t, rr.models.PutProduct(context.Background(), projections.Product{ID: uuid.MustParse(p.ID), SKU: "MEMO-1",
			Name: name, PriceCents: 1300, StockAvailable: 10, Version: version}), fmt.Sprintf("project version %d", version))
	}
	put(2, "Renamed")
	testenv.Eventually(t, 10*time.Second, func() error {
		var now productJSON
		r, err := a.send("GET", path, "", nil, nil)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(r.raw, &now); err != nil || now.Version != 2 {
			return fmt.Errorf("answered %s", r.raw)
		}
		return nil
	})
	// A read that asks for a version the copy has not reached waits for
	// it and answers it, not stale.
	put(3, "Renamed again")
	var got productJSON
	r := a.do(t, "GET", path+"?min_version=3", "", nil, nil).expect(t, http.StatusOK)
	r.into(t, &got)
	if got.Version != 3 || got.Name != "Renamed again" || r.header.Get(httpapi.HeaderStale) != "" {
		t.Errorf("min_version=3 answered %+v (stale: %q), want version 3", got, r.header.Get(httpapi.HeaderStale))
	}
}

// TestReadCacheDropsCopiesWhenTheSubscriptionIsLost: an announcement sent
// while the reader's subscription is down never arrives, so the reader
// drops every copy when it subscribes again; until then a copy serves (for
// at most READ_CACHE_TTL, here an hour).
func TestReadCacheDropsCopiesWhenTheSubscriptionIsLost(t *testing.T) {
	t.Parallel()
	tune, rr := withRedis(t, "127.0.0.1:6379", projections.ReaderConfig{CacheMax: 100, CacheTTL: time.Hour})
	a := newAPIWith(t, tune)
	_, admin := a.createAdmin(t)
	p := a.createProduct(t, admin, "LOST-1", 1200, 10)
	path := "/v1/products/" + p.ID
	a.do(t, "GET", path, "", nil, nil).expect(t, http.StatusOK)
	testenv.Eventually(t, 10*time.Second, func() error {
		a.do(t, "GET", path, "", nil, nil).expect(t, http.StatusOK)
		if n := rr.reader.Cached(); n != 1 {
			return fmt.Errorf("%d models kept in memory, want 1", n)
		}
		return nil
	})

	// Version 2 reaches Redis, but its announcement is lost: the copy,
	// version 1, still serves.
	rdb, _ := testenv.Redis(t)
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*product:"+p.ID).Result()
	testenv.Must(t, err, "find the product's key")
	if len(keys) != 1 {
		t.Fatalf("keys of the product: %v, want one", keys)
	}
	testenv.Must(t, rdb.HSet(ctx, keys[0], "name", "Renamed quietly", "version", 2).Err(), "write version 2 unannounced")
	version := func() int64 {
		t.Helper()
		var got productJSON
		a.do(t, "GET", path, "", nil, nil).expect(t, http.StatusOK).into(t, &got)
		return got.Version
	}
	if v := version(); v != 1 {
		t.Fatalf("before the subscription was lost: version %d, want the copy's 1", v)
	}

	// The reader's subscription connection goes; the client makes it
	// again, and the copy goes with the announcements it may have missed.
	clients, err := rdb.ClientList(ctx).Result()
	testenv.Must(t, err, "list Redis clients")
	killed := 0
	for line := range strings.SplitSeq(clients, "\n") {
		fields := map[string]string{}
		for f := range strings.FieldsSeq(line) {
			if k, v, ok := strings.Cut(f, "="); ok {
				fields[k] = v
			}
		}
		if fields["name"] == rr.client && fields["sub"] != "0" && fields["sub"] != "" {
			testenv.Must(t, rdb.Do(ctx, "CLIENT", "KILL", "ID", fields["id"]).Err(), "kill the subscription's connection")
			killed++
		}
	}
	if killed != 1 {
		t.Fatalf("killed %d subscription connections named %s, want 1", killed, rr.client)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if v := version(); v != 2 {
			return fmt.Errorf("version %d, want 2", v)
		}
		return nil
	})
}
