package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/crypto/bcrypt"

	"github.com/shopdev/shop/app"
	"github.com/shopdev/shop/auth"
	"github.com/shopdev/shop/domain/user"
	"github.com/shopdev/shop/handlers/httpapi"
	"github.com/shopdev/shop/internal/telemetry"
	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/limit"
	"github.com/shopdev/shop/projections"
	"github.com/shopdev/shop/store"
)

// BenchmarkPlaceOrder measures POST /v1/orders through the Echo handler
// (no network) against a real Postgres: JWT check, price lookup, order,
// items, outbox and idempotency rows, one transaction per request.
//
// With limit=on every request also spends its user's budget in the rate
// limit that the replicas share in Redis, a budget it never reaches. With
// tracing=on every request is a sampled trace (the server span, the pool's
// spans), exported by the SDK's batch processor over OTLP/HTTP to a local
// server that reads and drops each export.
//
//	go test -run '^$' -bench PlaceOrder -benchmem -cpu 2 ./handlers/httpapi/
func BenchmarkPlaceOrder(b *testing.B) {
	for _, tt := range []struct {
		name         string
		limit        float64
		tracing      bool
		batch, lanes int  // the command group (COMMAND_BATCH_MAX, COMMAND_LANES); 0: Config's defaults
		alone        bool // one request at a time, as at a low rate; else 16 × GOMAXPROCS at once
	}{
		{"limit=off", 0, false, 0, 0, false}, {"limit=on", 1e9, false, 0, 0, false}, {"tracing=on", 0, true, 0, 0, false},
		// A transaction per command, against groups in as many lanes as
		// shop api runs by default.
		{"group=off", 0, false, 1, 1, false}, {"group=64x4", 0, false, 64, 4, false},
		{"group=off/alone", 0, false, 1, 1, true}, {"group=64x4/alone", 0, false, 64, 4, true},
	} {
		b.Run(tt.name, func(b *testing.B) { benchmarkPlaceOrder(b, tt.limit, tt.tracing, tt.batch, tt.lanes, tt.alone) })
	}
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	testenv.Must(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru), "getrusage")
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// exportingTracer is a tracer provider that exports over OTLP/HTTP, as
// shop's does, to a local server that reads each export and drops it.
func exportingTracer(b *testing.B) trace.TracerProvider {
	b.Helper()
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	b.Cleanup(sink.Close)
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(sink.URL+"/v1/traces"))
	testenv.Must(b, err, "exporter")
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp
}

// sharedLimiter is the Redis rate limit of rate requests per second per
// client, through an autopipelined client as shop api's; nil for 0.
func sharedLimiter(b *testing.B, rate float64) *limit.Limiter {
	b.Helper()
	if rate == 0 {
		return nil
	}
	rdb, prefix := testenv.Redis(b)
	pipelined, err := rdb.AutoPipeline()
	testenv.Must(b, err, "autopipeline")
	l, err := limit.New(limit.Config{Client: pipelined, Prefix: prefix, Rate: rate})
	testenv.Must(b, err, "limiter")
	return l
}

func benchmarkPlaceOrder(b *testing.B, rate float64, tracing bool, batch, lanes int, alone bool) {
	pool := testenv.Pool(b)
	var tp trace.TracerProvider
	var pg *telemetry.Postgres
	if tracing {
		tp = exportingTracer(b)
		pg = telemetry.NewPostgres(tp)
		var err error
		pool, err = store.Open(context.Background(), store.Config{DatabaseURL: pool.Config().ConnString(), MaxConns: 32, Tracer: pg})
		testenv.Must(b, err, "traced pool")
		b.Cleanup(pool.Close)
	}
	a, err := auth.New(auth.Config{Secret: []byte(strings.Repeat("b", 32)), PasswordCost: bcrypt.MinCost})
	testenv.Must(b, err, "auth")
	cfg := newConfig(b, pool, a)
	cfg.Limiter = sharedLimiter(b, rate)
	cfg.CommandBatchMax, cfg.CommandLanes = batch, lanes
	if tracing {
		cfg.Tracing, cfg.UnitOfWork = tp, cfg.UnitOfWork.Traced(pg)
	}
	h, err := httpapi.New(cfg)
	testenv.Must(b, err, "api")
	uow := store.NewUnitOfWork(pool, nil)
	now := time.Now()
	var buyer *user.User
	var products []string
	err = uow.Do(context.Background(), func(ctx context.Context, tx *store.Tx) (err error) {
		if buyer, err = app.Register(ctx, tx, app.RegisterUser{Email: "b@bench.test", Name: "B", PasswordHash: "x", Role: user.RoleCustomer}, now); err != nil {
			return err
		}
		for i := range 100 {
			p, err := app.AddProduct(ctx, tx, app.Operator, app.CreateProduct{SKU: fmt.Sprintf("B-%d", i), Name: "Bench", PriceCents: int64(100 + i), Stock: 1_000_000}, now)
			if err != nil {
				return err
			}
			products = append(products, p.ID().String())
		}
		return nil
	})
	testenv.Must(b, err, "seed")
	token, err := a.Issue(buyer, now)
	testenv.Must(b, err, "token")

	var n atomic.Int64
	place := func() {
		i := n.Add(1)
		body := fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":2},{"product_id":%q,"quantity":1}]}`,
			products[i%100], products[(i+1)%100])
		req := httptest.NewRequest(http.MethodPost, "/v1/orders", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token.Token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("bench-%d", i))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("POST /v1/orders = %d: %s", rec.Code, rec.Body)
		}
	}
	b.ReportAllocs()
	// What the process spent per order: the handler's and the benchmark's
	// own work, not Postgres's.
	start := cpuTime(b)
	b.ResetTimer()
	if alone {
		for b.Loop() {
			place()
		}
	} else {
		b.SetParallelism(16) // 16 × GOMAXPROCS requests in flight, as under load
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				place()
			}
		})
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkGetProduct measures GET /v1/products/{id} through the Echo
// handler (no network) with the model in a real Redis: the hot read path.
//
//	go test -run '^$' -bench GetProduct -benchmem -cpu 2 ./handlers/httpapi/
func BenchmarkGetProduct(b *testing.B) {
	plain := func(c *redis.Client) (redis.UniversalClient, error) { return c, nil }
	autopipeline := func(c *redis.Client) (redis.UniversalClient, error) { return c.AutoPipeline() }
	for _, tt := range []struct {
		name    string
		client  func(*redis.Client) (redis.UniversalClient, error)
		limit   float64 // requests per second per client; 0 none
		clients int64   // distinct clients; 0: one
		cache   int     // READ_CACHE_MAX; 0: none
	}{
		{"client=plain", plain, 0, 0, 0},
		{"client=autopipeline", autopipeline, 0, 0, 0},
		// The API's in-memory copies in front of Redis.
		{"client=autopipeline/cache=on", autopipeline, 0, 0, 1000},
		// What the rate limiter costs a request it lets through: every
		// request comes from one client, under a limit it never reaches.
		{"client=autopipeline/limit=on", autopipeline, 1e9, 0, 0},
		// The same from 10,000 clients, named by a trusted proxy: most
		// requests are their client's first in its second, and ask Redis.
		{"client=autopipeline/limit=on/clients=10000", autopipeline, 1e9, 10_000, 0},
	} {
		b.Run(tt.name, func(b *testing.B) { benchmarkGetProduct(b, tt.client, tt.limit, tt.clients, tt.cache) })
	}
}

func benchmarkGetProduct(b *testing.B, client func(*redis.Client) (redis.UniversalClient, error), rate float64, clients int64, cache int) {
	pool := testenv.Pool(b)
	a, err := auth.New(auth.Config{Secret: []byte(strings.Repeat("b", 32)), PasswordCost: bcrypt.MinCost})
	testenv.Must(b, err, "auth")
	rdb, prefix := testenv.Redis(b)
	pipelined, err := client(rdb)
	testenv.Must(b, err, "redis client")
	models, err := projections.New(projections.Config{Client: pipelined, Prefix: prefix})
	testenv.Must(b, err, "projections")
	cfg := newConfig(b, pool, a)
	cfg.Limiter = sharedLimiter(b, rate)
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")} // httptest's requests come from there
	cfg.Reads, err = projections.NewReader(projections.ReaderConfig{Store: models, Origin: store.NewReads(pool), CacheMax: cache})
	testenv.Must(b, err, "reader")
	cfg.Reads.Watch(b.Context())
	h, err := httpapi.New(cfg)
	testenv.Must(b, err, "api")
	ids := make([]string, 100)
	for i := range ids {
		id := uuid.Must(uuid.NewV7())
		testenv.Must(b, models.PutProduct(context.Background(), projections.Product{ID: id, SKU: fmt.Sprintf("B-%d", i),
			Name: "Bench", PriceCents: 100, StockAvailable: 5, Version: 1}), "put product")
		ids[i] = id.String()
	}
	var n atomic.Int64
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			req := httptest.NewRequest(http.MethodGet, "/v1/products/"+ids[i%int64(len(ids))], nil)
			if clients > 0 {
				c := i % clients
				req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.%d.%d.%d", c>>16&255, c>>8&255, c&255))
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || rec.Header().Get(httpapi.HeaderReadSource) != "redis" {
				b.Errorf("status %d from %q: %s", rec.Code, rec.Header().Get(httpapi.HeaderReadSource), rec.Body)
				return
			}
		}
	})
}
