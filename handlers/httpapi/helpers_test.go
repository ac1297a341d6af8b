package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/crypto/bcrypt"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/handlers/httpapi"
	"github.com/shopdev/shop/internal/ops"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/projections"
	"github.com/shopdev/shop/store"
)

// testSecret signs the tokens of every test server.
var testSecret = []byte("test-secret-of-at-least-32-bytes-for-hs256")

const (
	adminEmail    = "admin@example.com"
	adminPassword = "admin-password"
	password      = "correct horse battery"
)

// api is one running API on a database of its own.
type api struct {
	pool *pgxpool.Pool
	auth *auth.Auth
	srv  *httptest.Server
	logs *testenv.Logs
	reg  *prometheus.Registry // what the process would serve on METRICS_ADDR
}

// newAPI starts the API on a fresh, migrated database for t.
func newAPI(t *testing.T) *api {
	t.Helper()
	return newAPIWith(t, nil)
}

// tuning changes the Config of a test's API, whose database is pool.
type tuning func(c *httpapi.Config, pool *pgxpool.Pool)

// newAPIWith starts the API like newAPI, with tune changing its Config.
func newAPIWith(t *testing.T, tune tuning) *api {
	t.Helper()
	a, err := auth.New(auth.Config{Secret: testSecret, PasswordCost: bcrypt.MinCost})
	testenv.Must(t, err, "auth")
	pool := testenv.Pool(t)
	logs := &testenv.Logs{}
	cfg := newConfig(t, pool, a)
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if tune != nil {
		tune(&cfg, pool)
	}
	e, err := httpapi.New(cfg)
	testenv.Must(t, err, "http server")
	srv := httptest.NewServer(checked(t, e)) // every exchange is checked against api/openapi.yaml
	t.Cleanup(srv.Close)
	return &api{pool: pool, auth: a, srv: srv, logs: logs, reg: cfg.Registry}
}

// newConfig wires the API to pool as shop api does: its reads from
// Postgres (a test may add Redis: withRedis), its readiness Postgres's.
func newConfig(t testing.TB, pool *pgxpool.Pool, a *auth.Auth) httpapi.Config {
	t.Helper()
	uow := store.NewUnitOfWork(pool, nil)
	reads, err := projections.NewReader(projections.ReaderConfig{Origin: store.NewReads(pool)})
	testenv.Must(t, err, "reader")
	reg := prometheus.NewRegistry()
	return httpapi.Config{UnitOfWork: uow, Reads: reads, Users: store.NewReads(pool), Auth: a, Registry: reg,
		Ops:    ops.Handler(reg, ops.NewReadiness(ops.Check{Name: "postgres", Ready: uow.Ping})),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// replica starts a second API server of cfg beside a, on its database.
func (a *api) replica(t *testing.T, cfg httpapi.Config) *api {
	t.Helper()
	e, err := httpapi.New(cfg)
	testenv.Must(t, err, "replica")
	srv := httptest.NewServer(checked(t, e))
	t.Cleanup(srv.Close)
	return &api{pool: a.pool, auth: a.auth, srv: srv, logs: a.logs, reg: cfg.Registry}
}

// scrape returns what the process's /metrics would serve now.
func (a *api) scrape(t *testing.T) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics = %d: %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// logLine returns the server's log line about a request, if any.
func (a *api) logLine(requestID string) string {
	for line := range strings.Lines(a.logs.String()) {
		if requestID != "" && strings.Contains(line, requestID) {
			return strings.TrimSpace(line)
		}
	}
	return "(none)"
}

// response is what the API answered.
type response struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any // the body when it is a JSON object, else nil
}

// headers are extra request headers.
type headers map[string]string

// send makes one request without failing the test, so that it can be used
// from any goroutine. body is sent as is when it is a string or []byte,
// chunked (no Content-Length) when it is an io.Reader, else encoded as JSON;
// nil sends no body.
func (a *api) send(method, path, token string, body any, hdr headers) (response, error) {
	var reader io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		reader = strings.NewReader(b)
	case []byte:
		reader = bytes.NewReader(b)
	case io.Reader:
		reader = io.MultiReader(b) // a reader of unknown length: sent chunked
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return response{}, fmt.Errorf("encode request body: %w", err)
		}
		reader = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, a.srv.URL+path, reader)
	if err != nil {
		return response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := a.srv.Client().Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	r := response{status: res.StatusCode, header: res.Header, raw: raw}
	_ = json.Unmarshal(raw, &r.body)
	return r, nil
}

// do makes one request; see send.
func (a *api) do(t *testing.T, method, path, token string, body any, hdr headers) response {
	t.Helper()
	r, err := a.send(method, path, token, body, hdr)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// expect fails the test unless the response has status want.
func (r response) expect(t *testing.T, want int) response {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d; body: %s", r.status, want, r.raw)
	}
	return r
}

// into decodes the body into v.
func (r response) into(t *testing.T, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(r.raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %T: %v; body: %s", v, err, r.raw)
	}
}

// keys returns the sorted keys of the body object.
func (r response) keys() []string {
	var ks []string
	for k := range r.body {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// problem is an RFC 9457 problem document as the API writes it.
type problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail"`
	Instance  string       `json:"instance"`
	RequestID string       `json:"request_id"`
	Errors    []fieldError `json:"errors"`
}

type fieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// leaks are what a problem body must never show a client.
var leaks = []string{"pgx", "pgconn", "SQLSTATE", "goroutine", "panic", ".go:", "runtime/"}

// problem asserts that the response is a problem+json document with status
// want that gives nothing internal away, and returns it.
func (r response) problem(t *testing.T, want int) problem {
	t.Helper()
	r.expect(t, want)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("Content-Type %q, want application/problem+json; body: %s", ct, r.raw)
	}
	var p problem
	r.into(t, &p)
	if p.Status != want {
		t.Errorf("problem status %d, want %d (the HTTP status)", p.Status, want)
	}
	if p.Title != http.StatusText(want) {
		t.Errorf("problem title %q, want %q", p.Title, http.StatusText(want))
	}
	if p.Type == "" {
		t.Errorf("problem type is empty; body: %s", r.raw)
	}
	if p.RequestID == "" || p.RequestID != r.header.Get("X-Request-Id") {
		t.Errorf("problem request_id %q, want the X-Request-Id header %q", p.RequestID, r.header.Get("X-Request-Id"))
	}
	// The request id is random letters and may spell anything.
	scanned := strings.ToLower(strings.ReplaceAll(string(r.raw), p.RequestID, ""))
	for _, leak := range leaks {
		if strings.Contains(scanned, strings.ToLower(leak)) {
			t.Errorf("problem body gives away internals (%q): %s", leak, r.raw)
		}
	}
	return p
}

// fields returns the names of the invalid fields, in order.
func (p problem) fields() []string {
	out := make([]string, len(p.Errors))
	for i, e := range p.Errors {
		out[i] = e.Field
	}
	return out
}

// invalid asserts a 422 problem naming exactly the fields want (in any order),
// each with a message.
func (r response) invalid(t *testing.T, want ...string) problem {
	t.Helper()
	p := r.problem(t, http.StatusUnprocessableEntity)
	got := p.fields()
	slices.Sort(got)
	w := slices.Clone(want)
	slices.Sort(w)
	if !slices.Equal(got, w) {
		t.Errorf("invalid fields %q, want %q; body: %s", got, w, r.raw)
	}
	for _, e := range p.Errors {
		if e.Message == "" {
			t.Errorf("field %q has no message", e.Field)
		}
	}
	return p
}

// unauthorized asserts a 401 problem with a Bearer challenge.
func (r response) unauthorized(t *testing.T) problem {
	t.Helper()
	p := r.problem(t, http.StatusUnauthorized)
	if h := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
		t.Errorf("WWW-Authenticate %q, want a Bearer challenge", h)
	}
	return p
}

// count runs a count(*) query on the test's database.
func (a *api) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	return testenv.Count(t, a.pool, sql, args...)
}

// tables are the write side's tables whose rows tests count.
var tables = []string{"users", "products", "orders", "order_items", "outbox", "idempotency_keys"}

// snapshot counts the rows of every write-side table.
func (a *api) snapshot(t *testing.T) map[string]int {
	t.Helper()
	out := make(map[string]int, len(tables))
	for _, table := range tables {
		out[table] = a.count(t, "SELECT count(*) FROM "+table)
	}
	return out
}

// unchanged fails the test when any table's row count differs from before.
func (a *api) unchanged(t *testing.T, before map[string]int) {
	t.Helper()
	after := a.snapshot(t)
	for _, table := range tables {
		if after[table] != before[table] {
			t.Errorf("table %s has %d rows, want %d: a rejected request wrote to it", table, after[table], before[table])
		}
	}
}

// createAdmin adds an admin straight through the app layer (the API cannot
// make one) and returns the admin's id and a token.
func (a *api) createAdmin(t *testing.T) (uuid.UUID, string) {
	t.Helper()
	hash, err := a.auth.HashPassword(adminPassword)
	testenv.Must(t, err, "hash admin password")
	var u *user.User
	err = store.NewUnitOfWork(a.pool, nil).Do(context.Background(), func(ctx context.Context, tx *store.Tx) (err error) {
		u, err = app.Register(ctx, tx, app.RegisterUser{Email: adminEmail, Name: "Admin", PasswordHash: hash, Role: user.RoleAdmin}, time.Now())
		return err
	})
	testenv.Must(t, err, "create admin")
	return u.ID(), a.login(t, adminEmail, adminPassword)
}

// userJSON is the body of POST /v1/users.
type userJSON struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
}

// registerCustomer registers a customer through the API and returns the
// customer's id and a token.
func (a *api) registerCustomer(t *testing.T, email string) (uuid.UUID, string) {
	t.Helper()
	r := a.do(t, "POST", "/v1/users", "", map[string]any{"email": email, "name": "Customer " + email, "password": password}, nil)
	r.expect(t, http.StatusCreated)
	var u userJSON
	r.into(t, &u)
	return uuid.MustParse(u.ID), a.login(t, email, password)
}

// tokenJSON is the body of POST /v1/tokens.
type tokenJSON struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// login returns a token from POST /v1/tokens.
func (a *api) login(t *testing.T, email, pw string) string {
	t.Helper()
	r := a.do(t, "POST", "/v1/tokens", "", map[string]any{"email": email, "password": pw}, nil)
	r.expect(t, http.StatusOK)
	var tok tokenJSON
	r.into(t, &tok)
	if tok.Token == "" {
		t.Fatalf("POST /v1/tokens gave no token: %s", r.raw)
	}
	return tok.Token
}

// productJSON is a product as every endpoint answers it.
type productJSON struct {
	ID             string `json:"id"`
	SKU            string `json:"sku"`
	Name           string `json:"name"`
	PriceCents     int64  `json:"price_cents"`
	StockAvailable int64  `json:"stock_available"`
	Version        int64  `json:"version"`
}

// createProduct adds a product through the API.
func (a *api) createProduct(t *testing.T, adminToken, sku string, priceCents, stock int64) productJSON {
	t.Helper()
	r := a.do(t, "POST", "/v1/products", adminToken, map[string]any{"sku": sku, "name": "Product " + sku, "price_cents": priceCents, "stock": stock}, nil)
	r.expect(t, http.StatusCreated)
	var p productJSON
	r.into(t, &p)
	return p
}

// orderJSON is an order as every endpoint answers it.
type orderJSON struct {
	ID         string          `json:"id"`
	UserID     string          `json:"user_id"`
	Status     string          `json:"status"`
	Reason     string          `json:"reason"`
	Items      []orderLineJSON `json:"items"`
	TotalCents int64           `json:"total_cents"`
	Version    int64           `json:"version"`
	UpdatedAt  time.Time       `json:"updated_at"`
}

type orderLineJSON struct {
	ProductID      string `json:"product_id"`
	SKU            string `json:"sku"`
	Name           string `json:"name"`
	Quantity       int64  `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// item is one line of an order request.
func item(productID string, quantity any) map[string]any {
	return map[string]any{"product_id": productID, "quantity": quantity}
}

// orderBody is the body of POST /v1/orders.
func orderBody(items ...map[string]any) map[string]any {
	return map[string]any{"items": items}
}

// placeOrder places an order through the API.
func (a *api) placeOrder(t *testing.T, customerToken string, items ...map[string]any) orderJSON {
	t.Helper()
	r := a.do(t, "POST", "/v1/orders", customerToken, orderBody(items...), nil)
	r.expect(t, http.StatusAccepted)
	var o orderJSON
	r.into(t, &o)
	return o
}

// outboxRow is one row of the outbox table.
type outboxRow struct {
	ID               int64
	EventID          uuid.UUID
	Partition        int16
	RoutingKey       string
	AggregateType    string
	AggregateID      uuid.UUID
	AggregateVersion int64
	Payload          []byte
}

// outbox returns the outbox rows of an aggregate in outbox id order.
func (a *api) outbox(t *testing.T, aggregateID string) []outboxRow {
	t.Helper()
	rows, err := a.pool.Query(context.Background(), `SELECT id, event_id, partition, routing_key, aggregate_type,
		aggregate_id, aggregate_version, payload::text FROM outbox WHERE aggregate_id = $1 ORDER BY id`, aggregateID)
	testenv.Must(t, err, "query outbox")
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		var payload string
		testenv.Must(t, rows.Scan(&r.ID, &r.EventID, &r.Partition, &r.RoutingKey, &r.AggregateType,
			&r.AggregateID, &r.AggregateVersion, &payload), "scan outbox")
		r.Payload = []byte(payload)
		out = append(out, r)
	}
	testenv.Must(t, rows.Err(), "read outbox")
	return out
}

// routingKeys returns the routing keys of rows, in order.
func routingKeys(rows []outboxRow) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.RoutingKey
	}
	return out
}
