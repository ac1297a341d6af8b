package main_test

import (
	"bytes"
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

	"github.com/shopdev/shop/internal/testenv"
)

// placement is one POST /v1/orders of the test below: its key and body,
// and what the API answered, if it answered.
type placement struct {
	token, key, body string
	status           int    // 0: no answer (the API was killed)
	orderID          string // of a 202
}

// TestAPIKilledMidGroupLosesNothing: `shop api` commits concurrent orders
// in groups (COMMAND_BATCH_MAX); SIGKILLed under 16 streams of orders, it
// leaves every order it answered 202 committed whole (its lines, its
// order.placed, its Idempotency-Key), no order half-written, and every
// order nobody heard of either absent or whole. Restarted, the API answers
// each unanswered request, sent again with its Idempotency-Key, without a
// second order.
func TestAPIKilledMidGroupLosesNothing(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	env := maps.Clone(s.env)
	env["HTTP_ADDR"], env["JWT_SECRET"], env["RATE_LIMIT"], env["COMMAND_BATCH_MAX"] = "127.0.0.1:0", strings.Repeat("s", 32), "0", "64"
	env["DB_MAX_CONNS"], env["LOG_LEVEL"] = "8", "info"
	api, addr := startAPI(t, env)
	base := "http://" + addr
	product := s.product(t, "GROUP-1", 1_000_000)

	const streams = 16
	tokens := make([]string, streams)
	for i := range tokens {
		email := fmt.Sprintf("g%d@group.test", i)
		postJSON(t, base+"/v1/users", "", fmt.Sprintf(`{"email":%q,"name":"G","password":"group password"}`, email), http.StatusCreated)
		tokens[i] = postJSON(t, base+"/v1/tokens", "", fmt.Sprintf(`{"email":%q,"password":"group password"}`, email), http.StatusOK)["token"].(string)
	}

	var (
		mu     sync.Mutex
		placed []*placement
		wg     sync.WaitGroup
		killed = make(chan struct{})
	)
	client := &http.Client{Timeout: 10 * time.Second}
	for i := range streams {
		wg.Go(func() {
			for n := 1; ; n++ {
				p := &placement{token: tokens[i], key: uuid.NewString(),
					body: fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":%d}]}`, product, 1+n%3)}
				mu.Lock()
				placed = append(placed, p)
				mu.Unlock()
				p.status, p.orderID = placeWithKey(client, base, p)
				if p.status == 0 {
					return // the API is gone
				}
				select {
				case <-killed:
					return
				default:
				}
			}
		})
	}
	// Kill it once it has answered a few hundred orders, mid-stream.
	testenv.Eventually(t, 60*time.Second, func() error {
		if n := s.count(t, "SELECT count(*) FROM orders"); n < 300 {
			return fmt.Errorf("%d orders so far", n)
		}
		return nil
	})
	testenv.Must(t, api.Process.Kill(), "SIGKILL the API")
	_ = api.Wait()
	close(killed)
	wg.Wait()

	answered, unanswered := 0, 0
	for _, p := range placed {
		switch p.status {
		case http.StatusAccepted:
			answered++
			if s.count(t, "SELECT count(*) FROM orders WHERE id = $1", p.orderID) != 1 {
				t.Errorf("order %s was answered 202 but is not in Postgres", p.orderID)
			}
		case 0:
			unanswered++
		default:
			t.Errorf("POST /v1/orders answered %d before the kill", p.status)
		}
	}
	if unanswered == 0 {
		t.Fatalf("the kill cut no request short (%d answered): it did not happen mid-group", answered)
	}
	// Whole or absent: every order has its lines, its one order.placed
	// and its key.
	for what, sql := range map[string]string{
		"an order without lines":         `SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id)`,
		"an order without order.placed":  `SELECT count(*) FROM orders o WHERE (SELECT count(*) FROM committed c WHERE c.routing_key = 'order.placed' AND c.payload->>'aggregate_id' = o.id::text) != 1`,
		"an order without its key":       `SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM idempotency_keys k WHERE convert_from(k.body, 'UTF8')::jsonb->>'id' = o.id::text)`,
		"an order.placed without order":  `SELECT count(*) FROM committed c WHERE c.routing_key = 'order.placed' AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.id::text = c.payload->>'aggregate_id')`,
		"lines of no order (impossible)": `SELECT count(*) FROM order_items i WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = i.order_id)`,
	} {
		if n := s.count(t, sql); n != 0 {
			t.Errorf("%d × %s", n, what)
		}
	}
	t.Logf("%d orders answered, %d requests cut short by the kill", answered, unanswered)

	// Restarted, the API answers each cut-short request, sent again with
	// its key, once: a replay where its group had committed, else anew.
	_, addr = startAPI(t, env)
	base = "http://" + addr
	replayed := 0
	for _, p := range placed {
		if p.status != 0 {
			continue
		}
		status, id := placeWithKey(client, base, p)
		if status != http.StatusAccepted {
			t.Fatalf("retrying a cut-short order: %d, want 202", status)
		}
		if s.count(t, "SELECT count(*) FROM idempotency_keys k WHERE convert_from(k.body, 'UTF8')::jsonb->>'id' = $1", id) != 1 {
			t.Errorf("retried order %s has no single key", id)
		}
		p.status, p.orderID = status, id
		replayed++
	}
	t.Logf("%d cut-short requests answered after the restart", replayed)
	if orders := s.count(t, "SELECT count(*) FROM orders"); orders != len(placed) {
		t.Errorf("%d orders for %d distinct requests: a retry placed a second order, or one was lost", orders, len(placed))
	}
}

// placeWithKey posts p's order with its Idempotency-Key; status 0 when the
// API did not answer.
func placeWithKey(client *http.Client, base string, p *placement) (status int, orderID string) {
	req, err := http.NewRequest(http.MethodPost, base+"/v1/orders", strings.NewReader(p.body))
	if err != nil {
		return 0, ""
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Idempotency-Key", p.key)
	res, err := client.Do(req)
	if err != nil {
		return 0, ""
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var body struct {
		ID string `json:"id"`
	}
	_ = json.NewDecoder(bytes.NewReader(raw)).Decode(&body)
	return res.StatusCode, body.ID
}
