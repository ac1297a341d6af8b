package loadtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// The endpoints a report names.
const (
	EndpointPlace   = "POST /v1/orders"
	EndpointProduct = "GET /v1/products/{id}"
	EndpointOrder   = "GET /v1/orders/{id}"
	EndpointCancel  = "POST /v1/orders/{id}/cancel"
	EndpointRestock = "POST /v1/products/{id}/restock"
)

// maxInFlight bounds the requests an open-model test keeps waiting at
// once: arrivals beyond it are counted as dropped by the client, so that a
// server that stopped answering cannot exhaust this process.
const maxInFlight = 10_000

// followPause is the least time between two reads of one order that
// follow it to its decision.
const followPause = 100 * time.Millisecond

// customer is a signed-in customer and the orders it placed lately.
type customer struct {
	token string

	mu     sync.Mutex
	orders []placed // the newest last; at most 32
}

type placed struct {
	id      string
	version int64
}

func (c *customer) remember(o placed) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.orders = append(c.orders, o)
	if len(c.orders) > 32 {
		c.orders = c.orders[1:]
	}
}

// recent returns one of the customer's recent orders; take removes it (an
// order is cancelled once).
func (c *customer) recent(rng *mrand.Rand, take bool) (placed, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.orders) == 0 {
		return placed{}, false
	}
	i := len(c.orders) - 1 - rng.IntN(min(len(c.orders), 4))
	o := c.orders[i]
	if take {
		c.orders = append(c.orders[:i], c.orders[i+1:]...)
	}
	return o, true
}

// test is one run.
type test struct {
	cfg       Config
	urls      []string      // the APIs, used in turn
	next      atomic.Uint64 // the request count, which picks the API
	client    *http.Client
	admin     string // token; "" without an admin
	products  []string
	customers []*customer
	stats     map[string]*endpoint
	e2e       *endpoint

	mu                sync.Mutex // guards what follows
	orders            []string   // the accepted orders' ids
	slowest           SlowOrder  // the order that took longest to be decided
	inFlight, dropped atomic.Int64
	accepted, decided atomic.Int64
	followers         sync.WaitGroup
	settleBy          atomic.Int64 // unix nanoseconds after which followers give up; 0 while loading
}

// Run sets up (products, customers: not timed), sends the load for
// cfg.Duration, waits up to cfg.Settle for the accepted orders to be
// decided, and reports. An error is a set-up that failed or a ctx that
// ended; what the server answered, good or bad, is in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	t, err := prepare(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer t.client.CloseIdleConnections()
	return t.step(ctx, t.cfg.Rate, t.cfg.Duration, t.cfg.Settle)
}

// prepare validates cfg and sets the test up.
func prepare(ctx context.Context, cfg Config) (*test, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		cfg.Seed = binary.LittleEndian.Uint64(b[:]) | 1
	}
	urls, _ := cfg.urls() // Validate parsed them
	t := &test{
		cfg:  cfg,
		urls: urls,
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: 90 * time.Second,
		}},
	}
	if err := t.setUp(ctx); err != nil {
		t.client.CloseIdleConnections()
		return nil, fmt.Errorf("set up: %w", err)
	}
	return t, nil
}

// step sends load at rate (0: closed model) for duration, waits up to
// settle for its orders' decisions, and reports it alone.
func (t *test) step(ctx context.Context, rate float64, duration, settle time.Duration) (*Report, error) {
	t.cfg.Rate, t.cfg.Duration = rate, duration
	t.stats = map[string]*endpoint{}
	for _, e := range []string{EndpointPlace, EndpointProduct, EndpointOrder, EndpointCancel, EndpointRestock} {
		t.stats[e] = newEndpoint()
	}
	t.e2e = newEndpoint()
	t.dropped.Store(0)
	t.mu.Lock()
	t.orders, t.slowest = nil, SlowOrder{}
	t.mu.Unlock()
	t.accepted.Store(0)
	t.decided.Store(0)
	t.settleBy.Store(0)

	start := time.Now()
	stopProgress := t.progress(start)
	t.load(ctx, start)
	loaded := time.Since(start)
	t.settleBy.Store(time.Now().Add(settle).UnixNano())
	t.followers.Wait()
	stopProgress()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return t.report(loaded), nil
}

// setUp signs the admin in, makes or finds the products, and registers and
// signs in the customers.
func (t *test) setUp(ctx context.Context) error {
	run := make([]byte, 4)
	_, _ = rand.Read(run)
	id := hex.EncodeToString(run)
	if t.cfg.AdminEmail != "" {
		token, err := t.signIn(ctx, t.cfg.AdminEmail, t.cfg.AdminPassword)
		if err != nil {
			return fmt.Errorf("sign the admin in: %w", err)
		}
		t.admin = token
		for i := range t.cfg.Products {
			var p struct {
				ID string `json:"id"`
			}
			body := map[string]any{"sku": fmt.Sprintf("LT-%s-%d", id, i), "name": fmt.Sprintf("Load test item %d", i),
				"price_cents": 100 + 50*int64(i%20), "stock": t.cfg.ProductStock}
			if err := t.expect(ctx, http.MethodPost, "/v1/products", t.admin, body, http.StatusCreated, &p); err != nil {
				return fmt.Errorf("create product %d: %w", i+1, err)
			}
			t.products = append(t.products, p.ID)
		}
	} else {
		after := ""
		for len(t.products) < t.cfg.Products {
			var page struct {
				Items []struct {
					ID string `json:"id"`
				} `json:"items"`
				Next *string `json:"next"`
			}
			path := "/v1/products?limit=100"
			if after != "" {
				path += "&after=" + after
			}
			if err := t.expect(ctx, http.MethodGet, path, "", nil, http.StatusOK, &page); err != nil {
				return fmt.Errorf("list the products: %w", err)
			}
			for _, p := range page.Items {
				if len(t.products) < t.cfg.Products {
					t.products = append(t.products, p.ID)
				}
			}
			if page.Next == nil {
				break
			}
			after = *page.Next
		}
		if len(t.products) == 0 {
			return errors.New("the catalogue is empty: give an admin (--admin-email, --admin-password) to create products")
		}
	}
	password := "loadtest-" + id
	errs := make([]error, t.cfg.Customers)
	t.customers = make([]*customer, t.cfg.Customers)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8) // passwords are hashed: a few at a time
	for i := range t.cfg.Customers {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			email := fmt.Sprintf("lt-%s-%d@loadtest.shop.example", id, i)
			body := map[string]any{"email": email, "name": fmt.Sprintf("Load tester %d", i), "password": password}
			if err := t.expect(ctx, http.MethodPost, "/v1/users", "", body, http.StatusCreated, nil); err != nil {
				errs[i] = fmt.Errorf("register customer %d: %w", i+1, err)
				return
			}
			token, err := t.signIn(ctx, email, password)
			if err != nil {
				errs[i] = fmt.Errorf("sign customer %d in: %w", i+1, err)
				return
			}
			t.customers[i] = &customer{token: token}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (t *test) signIn(ctx context.Context, email, password string) (string, error) {
	var tok struct {
		Token string `json:"token"`
	}
	err := t.expect(ctx, http.MethodPost, "/v1/tokens", "", map[string]string{"email": email, "password": password}, http.StatusOK, &tok)
	return tok.Token, err
}

// expect sends a set-up request and decodes its answer into out, unless
// its status is not want.
func (t *test) expect(ctx context.Context, method, path, token string, body any, want int, out any) error {
	status, raw, err := t.send(ctx, method, path, token, body)
	switch {
	case err != nil:
		return err
	case status != want:
		return fmt.Errorf("%s %s: %d %s", method, path, status, bytes.TrimSpace(raw))
	case out != nil:
		return json.Unmarshal(raw, out)
	}
	return nil
}

// send sends one request; a command carries an Idempotency-Key.
func (t *test) send(ctx context.Context, method, path, token string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	base := t.urls[int(t.next.Add(1)%uint64(len(t.urls)))]
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if method == http.MethodPost && path != "/v1/tokens" {
		req.Header.Set("Idempotency-Key", uuid.NewString())
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := t.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	return res.StatusCode, raw, err
}

// choice is one request to send: what, by whom, on what.
type choice struct {
	op       Op
	customer *customer
	rng      *mrand.Rand
}

// load sends requests until cfg.Duration has passed: at fixed arrival
// times (open model) or back to back from each worker (closed model).
func (t *test) load(ctx context.Context, start time.Time) {
	end := start.Add(t.cfg.Duration)
	var wg sync.WaitGroup
	defer wg.Wait()
	if t.cfg.Rate > 0 {
		rng := mrand.New(mrand.NewPCG(t.cfg.Seed, 0))
		timer := time.NewTimer(0)
		defer timer.Stop()
		for i := int64(0); ; i++ {
			at := start.Add(time.Duration(float64(i) * float64(time.Second) / t.cfg.Rate))
			if !at.Before(end) {
				return
			}
			timer.Reset(time.Until(at))
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			if t.inFlight.Load() >= maxInFlight {
				t.dropped.Add(1)
				continue
			}
			c := t.choose(rng)
			c.rng = mrand.New(mrand.NewPCG(t.cfg.Seed, uint64(i)+1))
			t.inFlight.Add(1)
			wg.Go(func() {
				defer t.inFlight.Add(-1)
				t.do(ctx, c, at) // latency from the arrival time: no coordinated omission
			})
		}
	}
	for w := range t.cfg.Connections {
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(t.cfg.Seed, uint64(w)+1))
			for ctx.Err() == nil && time.Now().Before(end) {
				c := t.choose(rng)
				c.rng = rng
				t.inFlight.Add(1)
				t.do(ctx, c, time.Now())
				t.inFlight.Add(-1)
			}
		})
	}
}

// choose picks an op by the mix's weights and a customer.
func (t *test) choose(rng *mrand.Rand) choice {
	total := 0
	for _, w := range t.cfg.Mix {
		total += w
	}
	n := rng.IntN(total)
	op := Read
	for _, o := range []Op{Place, Read, Cancel, Restock} {
		if n < t.cfg.Mix[o] {
			op = o
			break
		}
		n -= t.cfg.Mix[o]
	}
	return choice{op: op, customer: t.customers[rng.IntN(len(t.customers))]}
}

// do sends one request of the mix, timed from at, and records it.
func (t *test) do(ctx context.Context, c choice, at time.Time) {
	product := func() string { return t.products[c.rng.IntN(len(t.products))] }
	switch c.op {
	case Place:
		var items []map[string]any
		seen := map[string]bool{}
		for range 1 + c.rng.IntN(3) {
			p := product()
			if !seen[p] {
				seen[p] = true
				items = append(items, map[string]any{"product_id": p, "quantity": 1 + c.rng.IntN(3)})
			}
		}
		status, raw, err := t.send(ctx, http.MethodPost, "/v1/orders", c.customer.token, map[string]any{"items": items})
		t.stats[EndpointPlace].record(at, status, err)
		if status != http.StatusAccepted {
			return
		}
		var o struct {
			ID      string `json:"id"`
			Version int64  `json:"version"`
		}
		if json.Unmarshal(raw, &o) != nil || o.ID == "" {
			t.stats[EndpointPlace].record(at, -1, nil) // a 202 without an order: counted as unreadable
			return
		}
		accepted := time.Now()
		t.accepted.Add(1)
		t.mu.Lock()
		t.orders = append(t.orders, o.ID)
		t.mu.Unlock()
		c.customer.remember(placed{o.ID, o.Version})
		t.followers.Go(func() { t.follow(ctx, c.customer, placed{o.ID, o.Version}, accepted) })
	case Cancel:
		if o, ok := c.customer.recent(c.rng, true); ok {
			status, _, err := t.send(ctx, http.MethodPost, "/v1/orders/"+o.id+"/cancel", c.customer.token, nil)
			t.stats[EndpointCancel].record(at, status, err)
			return
		}
		fallthrough // nothing to cancel yet: a read instead
	case Read:
		if c.rng.IntN(10) < 3 {
			if o, ok := c.customer.recent(c.rng, false); ok {
				status, _, err := t.send(ctx, http.MethodGet, "/v1/orders/"+o.id, c.customer.token, nil)
				t.stats[EndpointOrder].record(at, status, err)
				return
			}
		}
		status, _, err := t.send(ctx, http.MethodGet, "/v1/products/"+product(), c.customer.token, nil)
		t.stats[EndpointProduct].record(at, status, err)
	case Restock:
		status, _, err := t.send(ctx, http.MethodPost, "/v1/products/"+product()+"/restock", t.admin, map[string]any{"quantity": 100})
		t.stats[EndpointRestock].record(at, status, err)
	}
}

// follow reads the order with min_version until it is decided (confirmed,
// rejected, or cancelled first), and records the time from its 202; it
// gives up at the settle deadline.
func (t *test) follow(ctx context.Context, c *customer, o placed, accepted time.Time) {
	path := fmt.Sprintf("/v1/orders/%s?min_version=%d", o.id, o.version+1)
	for ctx.Err() == nil {
		if by := t.settleBy.Load(); by != 0 && time.Now().UnixNano() > by {
			return
		}
		asked := time.Now()
		status, raw, err := t.send(ctx, http.MethodGet, path, c.token, nil)
		if err == nil && status == http.StatusOK {
			var got struct {
				Status string `json:"status"`
			}
			if json.Unmarshal(raw, &got) == nil && got.Status != "" && got.Status != "pending" {
				t.e2e.record(accepted, http.StatusOK, nil)
				t.decided.Add(1)
				waited := time.Since(accepted)
				t.mu.Lock()
				if ms := float64(waited) / float64(time.Millisecond); ms > t.slowest.WaitedMS {
					t.slowest = SlowOrder{ID: o.id, AcceptedAt: accepted.UTC(), WaitedMS: ms}
				}
				t.mu.Unlock()
				return
			}
			// Still pending. The server waits for the version up to its
			// limit; when it could not (its Redis breaker open, say) the
			// answer came at once, and asking again at once would spend
			// the customer's rate limit on polling.
		}
		select { // at most one ask per followPause: not at full speed
		case <-ctx.Done():
		case <-time.After(followPause - time.Since(asked)):
		}
	}
}
