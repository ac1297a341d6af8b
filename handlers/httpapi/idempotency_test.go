package httpapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopdev/shop/handlers/httpapi"
	"github.com/shopdev/shop/internal/testenv"
)

func TestIdempotencyKeyConcurrentOrdersPlaceOne(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	_, customer := a.registerCustomer(t, "nina@example.com")
	p := a.createProduct(t, admin, "RACE-1", 250, 100)
	body, err := json.Marshal(orderBody(item(p.ID, 3)))
	if err != nil {
		t.Fatal(err)
	}

	outboxIDs := func() int64 {
		var v int64
		testenv.Must(t, a.pool.QueryRow(t.Context(), `SELECT last_value FROM outbox_id_seq`).Scan(&v), "read outbox sequence")
		return v
	}
	idsBefore := outboxIDs()

	const n = 20
	var (
		wg        sync.WaitGroup
		start     = make(chan struct{})
		responses = make([]response, n)
		errs      = make([]error, n)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			responses[i], errs[i] = a.send("POST", "/v1/orders", customer, body, headers{"Idempotency-Key": "order-once"})
		}()
	}
	close(start)
	wg.Wait()

	// Rolled-back outbox inserts still consume identity values: this says how
	// many requests got as far as writing before the key decided the race.
	t.Logf("%d of %d requests wrote before losing the key race", outboxIDs()-idsBefore-1, n)

	first := -1
	fresh := 0
	for i, r := range responses {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		if r.status != http.StatusAccepted {
			t.Errorf("request %d: status %d, want 202; %s\nserver log: %s", i, r.status, r.raw, a.logLine(r.header.Get("X-Request-Id")))
			continue
		}
		if r.header.Get("Idempotent-Replayed") != "true" {
			fresh++
		}
		if first < 0 {
			first = i
			continue
		}
		if !bytes.Equal(r.raw, responses[first].raw) {
			t.Errorf("request %d answered\n%s\nrequest %d answered\n%s\nwant byte-identical bodies", i, r.raw, first, responses[first].raw)
		}
		if r.header.Get("Location") != responses[first].header.Get("Location") {
			t.Errorf("request %d: Location %q, request %d: %q", i, r.header.Get("Location"), first, responses[first].header.Get("Location"))
		}
	}
	if fresh != 1 {
		t.Errorf("%d responses without Idempotent-Replayed: true, want exactly 1 (the one that placed the order)", fresh)
	}
	if got := a.count(t, `SELECT count(*) FROM orders`); got != 1 {
		t.Errorf("%d orders, want 1", got)
	}
	if got := a.count(t, `SELECT count(*) FROM order_items`); got != 1 {
		t.Errorf("%d order_items, want 1", got)
	}
	if got := a.count(t, `SELECT count(*) FROM outbox WHERE routing_key = 'order.placed'`); got != 1 {
		t.Errorf("%d order.placed events, want 1", got)
	}
	if got := a.count(t, `SELECT count(*) FROM idempotency_keys`); got != 1 {
		t.Errorf("%d idempotency keys, want 1", got)
	}
	if first >= 0 {
		var o orderJSON
		responses[first].into(t, &o)
		if got := a.count(t, `SELECT count(*) FROM orders WHERE id = $1`, o.ID); got != 1 {
			t.Errorf("the replayed order %s is not the stored one", o.ID)
		}
	}
}

func TestIdempotencyKeyReplaysTheFirstResponse(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	_, customer := a.registerCustomer(t, "olga@example.com")
	p := a.createProduct(t, admin, "REPLAY-1", 100, 10)

	tests := []struct {
		name         string
		token        string
		method, path string
		body         any
	}{
		{name: "place an order", token: customer, method: "POST", path: "/v1/orders", body: orderBody(item(p.ID, 2))},
		{name: "register a user", method: "POST", path: "/v1/users",
			body: map[string]any{"email": "pat@example.com", "name": "Pat", "password": "long-enough"}},
		{name: "create a product", token: admin, method: "POST", path: "/v1/products",
			body: map[string]any{"sku": "REPLAY-2", "name": "Two", "price_cents": 5, "stock": 1}},
		{name: "restock", token: admin, method: "POST", path: "/v1/products/" + p.ID + "/restock", body: map[string]any{"quantity": 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := headers{"Idempotency-Key": "key for " + tt.name}
			first := a.do(t, tt.method, tt.path, tt.token, tt.body, key)
			if first.status >= 300 {
				t.Fatalf("first request: status %d; %s", first.status, first.raw)
			}
			if h := first.header.Get("Idempotent-Replayed"); h != "" {
				t.Errorf("first response has Idempotent-Replayed %q, want none", h)
			}
			before := a.snapshot(t)

			again := a.do(t, tt.method, tt.path, tt.token, tt.body, key)

			if again.status != first.status {
				t.Errorf("replay status %d, want the first %d", again.status, first.status)
			}
			if !bytes.Equal(again.raw, first.raw) {
				t.Errorf("replay body\n%s\nwant the first\n%s", again.raw, first.raw)
			}
			if again.header.Get("Location") != first.header.Get("Location") {
				t.Errorf("replay Location %q, want %q", again.header.Get("Location"), first.header.Get("Location"))
			}
			if h := again.header.Get("Idempotent-Replayed"); h != "true" {
				t.Errorf("replay has Idempotent-Replayed %q, want true", h)
			}
			a.unchanged(t, before)
		})
	}
	if got := a.count(t, `SELECT count(*) FROM users WHERE email = 'pat@example.com'`); got != 1 {
		t.Errorf("%d users registered with one key, want 1", got)
	}
	if got := a.storedProduct(t, p.ID).Stock; got != 15 {
		t.Errorf("stock %d after one restock of 5 sent twice, want 15", got)
	}
}

func TestIdempotencyKeyReplayIgnoresLaterChanges(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	_, customer := a.registerCustomer(t, "quinn@example.com")
	p := a.createProduct(t, admin, "LATER-1", 100, 10)
	key := headers{"Idempotency-Key": "cancel-1"}
	o := a.placeOrder(t, customer, item(p.ID, 1))

	first := a.do(t, "POST", "/v1/orders/"+o.ID+"/cancel", customer, nil, key)
	first.expect(t, http.StatusAccepted)
	before := a.snapshot(t)

	// Without the key, cancelling again is a conflict; with it, the client
	// that lost the first answer gets it again.
	a.do(t, "POST", "/v1/orders/"+o.ID+"/cancel", customer, nil, nil).problem(t, http.StatusConflict)
	again := a.do(t, "POST", "/v1/orders/"+o.ID+"/cancel", customer, nil, key)
	again.expect(t, http.StatusAccepted)
	if !bytes.Equal(again.raw, first.raw) {
		t.Errorf("replay body\n%s\nwant\n%s", again.raw, first.raw)
	}
	a.unchanged(t, before)

	// A product changed after its creation: the replay is the creation's answer.
	create := map[string]any{"sku": "LATER-2", "name": "Original", "price_cents": 5, "stock": 1}
	created := a.do(t, "POST", "/v1/products", admin, create, key)
	created.expect(t, http.StatusCreated)
	var cp productJSON
	created.into(t, &cp)
	a.do(t, "PATCH", "/v1/products/"+cp.ID, admin, map[string]any{"name": "Renamed"}, nil).expect(t, http.StatusOK)
	replayed := a.do(t, "POST", "/v1/products", admin, create, key)
	replayed.expect(t, http.StatusCreated)
	if !bytes.Equal(replayed.raw, created.raw) {
		t.Errorf("replay body\n%s\nwant the creation's\n%s", replayed.raw, created.raw)
	}
	if got := a.count(t, `SELECT count(*) FROM products WHERE sku = 'LATER-2'`); got != 1 {
		t.Errorf("%d products LATER-2, want 1", got)
	}
}

func TestIdempotencyKeyWithAnotherRequestIs422(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	_, customer := a.registerCustomer(t, "rita@example.com")
	p := a.createProduct(t, admin, "DIFF-1", 100, 10)
	q := a.createProduct(t, admin, "DIFF-2", 100, 10)
	key := headers{"Idempotency-Key": "same-key"}
	a.do(t, "POST", "/v1/orders", customer, orderBody(item(p.ID, 1)), key).expect(t, http.StatusAccepted)
	a.do(t, "POST", "/v1/products", admin, map[string]any{"sku": "DIFF-3", "name": "X", "price_cents": 1, "stock": 1}, key).expect(t, http.StatusCreated)
	before := a.snapshot(t)

	tests := []struct {
		name         string
		token        string
		method, path string
		body         any
	}{
		{"another quantity", customer, "POST", "/v1/orders", orderBody(item(p.ID, 2))},
		{"another product", customer, "POST", "/v1/orders", orderBody(item(q.ID, 1))},
		{"the same order spelled differently", customer, "POST", "/v1/orders", `{ "items": [ {"quantity": 1, "product_id": "` + p.ID + `"} ] }`},
		{"another endpoint", admin, "POST", "/v1/products/" + p.ID + "/restock", map[string]any{"quantity": 1}},
		{"another product to create", admin, "POST", "/v1/products", map[string]any{"sku": "DIFF-4", "name": "X", "price_cents": 1, "stock": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.do(t, tt.method, tt.path, tt.token, tt.body, key).invalid(t, "Idempotency-Key")
			a.unchanged(t, before)
		})
	}
}

func TestIdempotencyKeyIsPerUser(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	_, sam := a.registerCustomer(t, "sam@example.com")
	_, tess := a.registerCustomer(t, "tess@example.com")
	p := a.createProduct(t, admin, "PER-USER", 100, 10)
	key := headers{"Idempotency-Key": "shared-key"}
	body := orderBody(item(p.ID, 1))

	r1 := a.do(t, "POST", "/v1/orders", sam, body, key)
	r2 := a.do(t, "POST", "/v1/orders", tess, body, key)

	r1.expect(t, http.StatusAccepted)
	r2.expect(t, http.StatusAccepted)
	if r2.header.Get("Idempotent-Replayed") != "" {
		t.Error("another user's request was answered from the first user's key")
	}
	var o1, o2 orderJSON
	r1.into(t, &o1)
	r2.into(t, &o2)
	if o1.ID == o2.ID || o1.UserID == o2.UserID {
		t.Errorf("orders %s (user %s) and %s (user %s), want two orders of two users", o1.ID, o1.UserID, o2.ID, o2.UserID)
	}
	if got := a.count(t, `SELECT count(*) FROM orders`); got != 2 {
		t.Errorf("%d orders, want 2", got)
	}
}

func TestIdempotencyKeyOnlyForCommittedEffects(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	_, customer := a.registerCustomer(t, "uma@example.com")
	p := a.createProduct(t, admin, "EFFECT-1", 100, 10)
	key := headers{"Idempotency-Key": "retry-me"}

	t.Run("without a key every request acts", func(t *testing.T) {
		a.placeOrder(t, customer, item(p.ID, 1))
		a.placeOrder(t, customer, item(p.ID, 1))
		if got := a.count(t, `SELECT count(*) FROM orders`); got != 2 {
			t.Errorf("%d orders, want 2", got)
		}
	})
	t.Run("a rejected request does not use up its key", func(t *testing.T) {
		before := a.snapshot(t)
		a.do(t, "POST", "/v1/orders", customer, orderBody(item(p.ID, 0)), key).invalid(t, "items[0].quantity")
		a.unchanged(t, before)
		r := a.do(t, "POST", "/v1/orders", customer, orderBody(item(p.ID, 1)), key)
		r.expect(t, http.StatusAccepted)
		if r.header.Get("Idempotent-Replayed") != "" {
			t.Error("the corrected request was answered as a replay")
		}
	})
}

func TestIdempotencyKeyFormat(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, admin := a.createAdmin(t)
	_, customer := a.registerCustomer(t, "vera@example.com")
	p := a.createProduct(t, admin, "KEYS-1", 100, 10)
	before := a.snapshot(t)

	for _, tt := range []struct{ name, key string }{
		{"256 characters", strings.Repeat("k", 256)},
		{"1000 characters", strings.Repeat("k", 1000)},
		{"empty", ""},
	} {
		t.Run(tt.name+" is 422", func(t *testing.T) {
			a.do(t, "POST", "/v1/orders", customer, orderBody(item(p.ID, 1)), headers{"Idempotency-Key": tt.key}).invalid(t, "Idempotency-Key")
			a.do(t, "POST", "/v1/users", "", map[string]any{"email": "w@example.com", "name": "W", "password": "long-enough"},
				headers{"Idempotency-Key": tt.key}).invalid(t, "Idempotency-Key")
			a.unchanged(t, before)
		})
	}
	t.Run("255 characters is accepted", func(t *testing.T) {
		long := headers{"Idempotency-Key": strings.Repeat("k", 255)}
		first := a.do(t, "POST", "/v1/orders", customer, orderBody(item(p.ID, 1)), long)
		first.expect(t, http.StatusAccepted)
		again := a.do(t, "POST", "/v1/orders", customer, orderBody(item(p.ID, 1)), long)
		again.expect(t, http.StatusAccepted)
		if !bytes.Equal(first.raw, again.raw) || again.header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("a 255-character key did not replay: %s vs %s", first.raw, again.raw)
		}
	})
}

// A stored registration must not let anyone who reads idempotency_keys
// guess the password offline: its request digest is keyed by the server's
// secret, not a plain hash of the body.
func TestIdempotencyKeyStoresNoPlainHashOfTheBody(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	body := `{"email":"vera@example.com","name":"Vera","password":"guessable password"}`
	a.do(t, "POST", "/v1/users", "", body, headers{"Idempotency-Key": "register-vera"}).expect(t, http.StatusCreated)

	var digest, stored []byte
	err := a.pool.QueryRow(context.Background(), `SELECT request_hash, body FROM idempotency_keys WHERE key = 'register-vera'`).Scan(&digest, &stored)
	testenv.Must(t, err, "read the stored reply")
	for _, plain := range [][]byte{[]byte(body), []byte("POST /v1/users\n" + body)} {
		if sum := sha256.Sum256(plain); bytes.Equal(digest, sum[:]) {
			t.Fatalf("request_hash is the plain sha256 of %q", plain)
		}
	}
	if strings.Contains(string(stored), "guessable password") {
		t.Errorf("the stored reply holds the password: %s", stored)
	}
	// The digest still identifies the request: the same body replays.
	a.do(t, "POST", "/v1/users", "", body, headers{"Idempotency-Key": "register-vera"}).expect(t, http.StatusCreated)
}

// TestAnonymousIdempotencyKeysAreEachClients: before login a key is the
// client address's: two clients that happen to pick one key each get their
// own registration, and neither can replay the other's reply.
func TestAnonymousIdempotencyKeysAreEachClients(t *testing.T) {
	t.Parallel()
	a := newAPIWith(t, func(c *httpapi.Config, _ *pgxpool.Pool) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	for i, client := range []string{"198.51.100.1", "198.51.100.2"} {
		body := map[string]any{"email": fmt.Sprintf("anon%d@example.com", i), "name": "A", "password": password}
		r := a.do(t, "POST", "/v1/users", "", body, headers{"Idempotency-Key": "same-key", "X-Forwarded-For": client})
		r.expect(t, http.StatusCreated)
		if r.header.Get("Idempotent-Replayed") != "" {
			t.Errorf("client %s got a replay of another client's reply", client)
		}
	}
	// The same client, the same key and body: its own reply again.
	r := a.do(t, "POST", "/v1/users", "", map[string]any{"email": "anon0@example.com", "name": "A", "password": password},
		headers{"Idempotency-Key": "same-key", "X-Forwarded-For": "198.51.100.1"})
	r.expect(t, http.StatusCreated)
	if r.header.Get("Idempotent-Replayed") != "true" {
		t.Error("a client's own retry was not a replay")
	}
}
