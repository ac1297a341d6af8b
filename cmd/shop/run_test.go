package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"

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
	run, addr := startServing(t, env, "run")
	base := "http://" + addr

	if out, stderr, code := shop(t, env, "user", "add", "--email", "admin@run.test", "--password", "admin password", "--admin"); code != 0 {
		t.Fatalf("user add: %s %s", out, stderr)
	}
	admin := postJSON(t, base+"/v1/tokens", "", `{"email":"admin@run.test","password":"admin password"}`, http.StatusOK)["token"].(string)
	product := postJSON(t, base+"/v1/products", admin, `{"sku":"MUG-1","name":"Mug","price_cents":1200,"stock":10}`, http.StatusCreated)["id"].(string)
	postJSON(t, base+"/v1/users", "", `{"email":"ann@run.test","name":"Ann","password":"ann secret"}`, http.StatusCreated)
	ann := postJSON(t, base+"/v1/tokens", "", `{"email":"ann@run.test","password":"ann secret"}`, http.StatusOK)["token"].(string)
	placed := postJSON(t, base+"/v1/orders", ann, fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":2}]}`, product), http.StatusAccepted)

	order, hdr := getJSON(t, base+"/v1/orders/"+placed["id"].(string)+"?min_version=2", ann, http.StatusOK)
	if order["status"] != "confirmed" || order["version"] != 2.0 || hdr.Get("X-Read-Stale") != "" {
		t.Fatalf("order read with min_version=2 = %v (stale %q); want confirmed v2", order, hdr.Get("X-Read-Stale"))
	}
	p, _ := getJSON(t, base+"/v1/products/"+product+"?min_version=2", "", http.StatusOK)
	if p["stock_available"] != 8.0 {
		t.Errorf("product = %v, want 8 available after reserving 2", p)
	}
	metrics, err := http.Get(base + "/metrics")
	testenv.Must(t, err, "GET /metrics")
	body, _ := io.ReadAll(metrics.Body)
	metrics.Body.Close()
	for _, m := range []string{"shop_relay_published_total", "shop_consumer_messages_total", "shop_http_requests_total"} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics of shop run lacks %s", m)
		}
	}
	stop(t, run)
}
