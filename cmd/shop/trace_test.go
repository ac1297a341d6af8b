package main_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/handlers"
	"github.com/shopdev/shop/internal/testenv"
)

// startLogged starts a long-running shop command whose stderr (JSON log
// lines) the test reads; it is killed when t ends.
func startLogged(t *testing.T, env map[string]string, args ...string) (*exec.Cmd, *testenv.Logs) {
	t.Helper()
	testenv.NeedServices(t)
	logs := &testenv.Logs{}
	cmd := exec.Command(shopBin, args...)
	cmd.Env = environ(env)
	cmd.Stderr = logs
	testenv.Must(t, cmd.Start(), "start shop "+fmt.Sprint(args))
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() && testing.Verbose() {
			t.Logf("shop %v logged:\n%s", args, logs.String())
		}
	})
	return cmd, logs
}

// randomHex is n random bytes in hex.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	testenv.Must(t, err, "random")
	return hex.EncodeToString(b)
}

// orderWithTrace places an order as the customer of token, continuing
// the trace of traceparent; it returns the order's id.
func orderWithTrace(t *testing.T, base, token, product, traceparent string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/v1/orders", strings.NewReader(fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":1}]}`, product)))
	testenv.Must(t, err, "new request")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Traceparent", traceparent)
	res, err := http.DefaultClient.Do(req)
	testenv.Must(t, err, "POST /v1/orders")
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/orders = %d: %s", res.StatusCode, raw)
	}
	id := lastSegment(res.Header.Get("Location"))
	if id == "" {
		t.Fatalf("POST /v1/orders gave no Location: %s", raw)
	}
	return id
}

// TestOneOrderIsOneTrace: the API, the relay and each consumer group run as
// processes of their own, exporting OTLP (HTTP or gRPC) to a receiver of
// the test; an order placed with a traceparent is one trace through all of
// them: the API's server span continues the caller's, the relay publishes
// each event in a producer span that is a child of the span that appended
// it, every group's consumer span is a child of the relay's span of that
// message and names its routing key and event id, and the Postgres, Redis
// and SMTP work of a delivery are children of its span. Every log line of a
// delivery carries the trace and span ids.
func TestOneOrderIsOneTrace(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	recv := testenv.OTLP(t)
	mail := testenv.NewSMTPServer(t)
	traced := func(protocol string, extra map[string]string) map[string]string {
		env := maps.Clone(s.env)
		env["OTEL_BSP_SCHEDULE_DELAY"] = "100" // ms: export soon after
		env["OTEL_EXPORTER_OTLP_ENDPOINT"] = recv.HTTPEndpoint()
		if protocol == "grpc" {
			env["OTEL_EXPORTER_OTLP_PROTOCOL"], env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "grpc", recv.GRPCEndpoint()
		}
		maps.Copy(env, extra)
		return env
	}
	_, addrs := startListening(t, traced("http", map[string]string{"HTTP_ADDR": "127.0.0.1:0", "JWT_SECRET": strings.Repeat("s", 32), "RATE_LIMIT": "0", "LOG_LEVEL": "info"}), "api")
	base := "http://" + addrs["api"]
	startProcess(t, traced("grpc", nil), "relay")
	logs := map[string]*testenv.Logs{}
	for i, g := range handlers.Names() {
		protocol := []string{"http", "grpc"}[i%2]
		_, logs[g] = startLogged(t, traced(protocol, map[string]string{"LOG_LEVEL": "debug", "SMTP_ADDR": mail.Addr}), "consume", g)
	}

	if out, stderr, code := shop(t, s.env, "user", "add", "--email", "admin@trace.test", "--password", "admin password", "--admin"); code != 0 {
		t.Fatalf("user add: %s %s", out, stderr)
	}
	admin := postJSON(t, base+"/v1/tokens", "", `{"email":"admin@trace.test","password":"admin password"}`, http.StatusOK)["token"].(string)
	product := postJSON(t, base+"/v1/products", admin, `{"sku":"TRACE-1","name":"Traced mug","price_cents":900,"stock":5}`, http.StatusCreated)["id"].(string)
	postJSON(t, base+"/v1/users", "", `{"email":"tess@trace.test","name":"Tess","password":"tess secret"}`, http.StatusCreated)
	tess := postJSON(t, base+"/v1/tokens", "", `{"email":"tess@trace.test","password":"tess secret"}`, http.StatusOK)["token"].(string)

	traceID, callerSpan := randomHex(t, 16), randomHex(t, 8)
	orderID := orderWithTrace(t, base, tess, product, "00-"+traceID+"-"+callerSpan+"-01")
	testenv.Eventually(t, 30*time.Second, func() error {
		if got := s.status(t, uuid.MustParse(orderID)); got != "confirmed" {
			return fmt.Errorf("order is %s", got)
		}
		return nil
	})

	// The order's events, each with the trace context its envelope carries.
	type event struct{ id, key, traceparent string }
	var events []event
	rows, err := s.pool.Query(context.Background(), `SELECT event_id::text, routing_key, coalesce(payload->'trace'->>'traceparent', '')
		FROM committed WHERE payload->>'correlation_id' = (SELECT payload->>'correlation_id' FROM committed
		WHERE routing_key = 'order.placed' AND payload->>'aggregate_id' = $1)`, orderID)
	testenv.Must(t, err, "events of the order")
	for rows.Next() {
		var e event
		testenv.Must(t, rows.Scan(&e.id, &e.key, &e.traceparent), "scan event")
		events = append(events, e)
	}
	testenv.Must(t, rows.Err(), "events of the order")
	keys := map[string]bool{}
	for _, e := range events {
		keys[e.key] = true
		if !strings.HasPrefix(e.traceparent, "00-"+traceID+"-") {
			t.Errorf("event %s (%s) carries trace context %q, want trace %s", e.id, e.key, e.traceparent, traceID)
		}
	}
	for _, k := range []string{"order.placed", "stock.reserved", "order.confirmed"} {
		if !keys[k] {
			t.Fatalf("the order caused no %s: %v", k, events)
		}
	}

	// The relay forwarded each event and every group applied its events of
	// the order, and their spans arrived.
	want := func(spans []testenv.Span) error {
		var missing []string
		for _, e := range events {
			if find(spans, func(sp testenv.Span) bool {
				return sp.Service == "shop-relay" && sp.Kind == "producer" && sp.Attrs["messaging.message.id"] == e.id
			}) == nil {
				missing = append(missing, fmt.Sprintf("the relay's span of %s %s", e.key, e.id)) // its exporter may send it after the consumers' spans
			}
			for _, g := range handlers.Names() {
				if groupTakes(g, e.key) && find(spans, func(sp testenv.Span) bool {
					return sp.Service == "shop-consume-"+g && sp.Kind == "consumer" && sp.Attrs["messaging.message.id"] == e.id
				}) == nil {
					missing = append(missing, fmt.Sprintf("%s's span of %s %s", g, e.key, e.id))
				}
				// A republished event's relay span may come after the
				// span of a consumer that received the second copy.
				for _, sp := range spans {
					if sp.Service == "shop-consume-"+g && sp.Kind == "consumer" && sp.Attrs["messaging.message.id"] == e.id && find(spans, func(p testenv.Span) bool {
						return p.Service == "shop-relay" && p.SpanID == sp.ParentSpanID
					}) == nil {
						missing = append(missing, fmt.Sprintf("the relay's span %s, parent of %s's span of %s %s", sp.ParentSpanID, g, e.key, e.id))
					}
				}
			}
		}
		if find(spans, func(sp testenv.Span) bool { return sp.Name == "smtp send" && sp.TraceID == traceID }) == nil {
			missing = append(missing, "the smtp send of the confirmation")
		}
		if len(missing) > 0 {
			return errors.New(strings.Join(missing, "; "))
		}
		return nil
	}
	var spans []testenv.Span
	testenv.Eventually(t, 30*time.Second, func() error {
		spans = recv.Spans()
		return want(spans)
	})
	byID := map[string]testenv.Span{}
	for _, sp := range spans {
		byID[sp.SpanID] = sp
	}

	// The API continued the caller's trace.
	server := find(spans, func(sp testenv.Span) bool {
		return sp.Service == "shop-api" && sp.TraceID == traceID && sp.Kind == "server"
	})
	switch {
	case server == nil:
		t.Fatalf("no server span of shop-api in trace %s", traceID)
	case server.ParentSpanID != callerSpan:
		t.Errorf("the API's span has parent %s, want the caller's %s", server.ParentSpanID, callerSpan)
	case server.Name != "POST /v1/orders" || server.Attrs["http.route"] != "/v1/orders" || server.Attrs["http.response.status_code"] != "202":
		t.Errorf("the API's span is %q with route %q and status %q, want POST /v1/orders, /v1/orders, 202", server.Name, server.Attrs["http.route"], server.Attrs["http.response.status_code"])
	}
	// Its Postgres statements are its children, with placeholders, not values.
	statements := 0
	for _, sp := range spans {
		if sp.TraceID != traceID || sp.Attrs["db.system.name"] != "postgresql" {
			continue
		}
		statements++
		if text := sp.Attrs["db.query.text"]; strings.Contains(text, orderID) || strings.Contains(text, "tess@trace.test") {
			t.Errorf("a statement's span shows values: %q", text)
		}
	}
	if statements == 0 {
		t.Errorf("no Postgres span in trace %s", traceID)
	}

	// Each event: a relay span, a child of the span that appended it, whose
	// context its consumers' spans are children of. A round whose confirms
	// did not come (a broker slow past the confirm timeout) publishes its
	// events again, each in a span of its own: delivery is at least once,
	// so an event may have several, and a consumer's span is a child of
	// the one whose publication it received.
	for _, e := range events {
		appender := e.traceparent[len("00-"+traceID+"-"):][:16]
		creates := map[string]bool{}
		for _, create := range spans {
			if create.Service != "shop-relay" || create.Kind != "producer" || create.Attrs["messaging.message.id"] != e.id {
				continue
			}
			creates[create.SpanID] = true
			if create.TraceID != traceID || create.ParentSpanID != appender {
				t.Errorf("relay span of %s: trace %s parent %s, want trace %s parent %s (the appender's)", e.key, create.TraceID, create.ParentSpanID, traceID, appender)
			}
			if create.Attrs["messaging.system"] != "rabbitmq" || create.Attrs["messaging.destination.name"] != "shop.events" || create.Attrs["messaging.rabbitmq.destination.routing_key"] != e.key {
				t.Errorf("relay span of %s has attributes %v", e.key, create.Attrs)
			}
			if find(spans, func(sp testenv.Span) bool {
				return sp.Service == "shop-relay" && sp.Name == "send shop.events" && slices.ContainsFunc(sp.Links, func(l testenv.Link) bool { return l.SpanID == create.SpanID })
			}) == nil {
				t.Errorf("no relay round span links to the span of %s", e.key)
			}
		}
		if len(creates) == 0 {
			t.Errorf("no relay span of %s %s", e.key, e.id)
			continue
		}
		if len(creates) > 1 {
			t.Logf("the relay published %s %s %d times", e.key, e.id, len(creates))
		}
		for _, g := range handlers.Names() {
			if !groupTakes(g, e.key) {
				continue
			}
			for _, sp := range spans {
				if sp.Service != "shop-consume-"+g || sp.Kind != "consumer" || sp.Attrs["messaging.message.id"] != e.id {
					continue
				}
				switch {
				case sp.TraceID != traceID:
					t.Errorf("%s's span of %s is in trace %s, want %s", g, e.key, sp.TraceID, traceID)
				case !creates[sp.ParentSpanID]:
					t.Errorf("%s's span of %s has parent %s, want one of the relay's %v", g, e.key, sp.ParentSpanID, slices.Sorted(maps.Keys(creates)))
				case sp.Attrs["messaging.rabbitmq.destination.routing_key"] != e.key || sp.Attrs["messaging.system"] != "rabbitmq" || sp.Attrs["messaging.consumer.group.name"] != g:
					t.Errorf("%s's span of %s has attributes %v", g, e.key, sp.Attrs)
				}
			}
		}
	}

	// Every span any process made in this trace descends from the caller's
	// span; the work of a delivery (transaction, statements, Redis, SMTP)
	// from its delivery's.
	services := map[string]bool{}
	for _, sp := range spans {
		if sp.TraceID != traceID {
			continue
		}
		services[sp.Service] = true
		root := sp
		for hops := 0; root.ParentSpanID != callerSpan; hops++ {
			parent, ok := byID[root.ParentSpanID]
			if !ok || hops > 100 {
				t.Errorf("span %q of %s (%s) does not descend from the caller's span: its ancestor %q has parent %s, not received", sp.Name, sp.Service, sp.SpanID, root.Name, root.ParentSpanID)
				break
			}
			root = parent
		}
	}
	counts := map[string]int{}
	for _, sp := range spans {
		if sp.TraceID == traceID {
			counts[sp.Service+" "+sp.Name]++
		}
	}
	t.Logf("spans of the order's trace, by service and name: %v", counts)
	for _, service := range []string{"shop-api", "shop-relay", "shop-consume-orders", "shop-consume-inventory", "shop-consume-emails", "shop-consume-projections"} {
		if !services[service] {
			t.Errorf("no span of %s in the order's trace", service)
		}
	}
	for name, check := range map[string]func(sp testenv.Span) bool{
		"inventory's transaction": func(sp testenv.Span) bool { return sp.Service == "shop-consume-inventory" && sp.Name == "transaction" },
		"projections' Redis": func(sp testenv.Span) bool {
			return sp.Service == "shop-consume-projections" && sp.Attrs["db.system.name"] == "redis"
		},
		"emails' smtp send": func(sp testenv.Span) bool { return sp.Service == "shop-consume-emails" && sp.Name == "smtp send" },
		"orders' Postgres queries": func(sp testenv.Span) bool {
			return sp.Service == "shop-consume-orders" && sp.Attrs["db.system.name"] == "postgresql"
		},
	} {
		if find(spans, func(sp testenv.Span) bool { return sp.TraceID == traceID && check(sp) }) == nil {
			t.Errorf("no span of %s in the order's trace", name)
		}
	}

	// The log lines of the deliveries carry the trace and the delivery's span.
	for g, l := range logs {
		applied := 0
		for _, line := range l.Lines(t) {
			if line["msg"] != "event applied" || line["correlation_id"] == nil {
				continue
			}
			if !slices.ContainsFunc(events, func(e event) bool { return e.id == line["event_id"] }) {
				continue
			}
			applied++
			span, ok := byID[fmt.Sprint(line["span_id"])]
			if line["trace_id"] != traceID || !ok || span.Kind != "consumer" {
				t.Errorf("%s logged %v: want trace_id %s and the span_id of its delivery's span", g, line, traceID)
			}
		}
		if applied == 0 {
			t.Errorf("%s logged no event of the order as applied", g)
		}
	}
}

// groupTakes reports whether group g consumes events of routing key key.
func groupTakes(g, key string) bool {
	route, ok := handlers.Topology().Route(g)
	return ok && slices.Contains(route.Keys, key)
}

// find returns the first span that matches, or nil.
func find(spans []testenv.Span, match func(testenv.Span) bool) *testenv.Span {
	for i := range spans {
		if match(spans[i]) {
			return &spans[i]
		}
	}
	return nil
}

// TestNoEndpointNoTracing: without OTEL_EXPORTER_OTLP_ENDPOINT, or with
// OTEL_SDK_DISABLED=true, a whole flow exports nothing and the process
// dials nothing but Postgres, Redis and RabbitMQ (its sockets say so); a
// listener on the SDK's default port 4318 hears nothing. The events still
// carry the caller's trace context, as before.
func TestNoEndpointNoTracing(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	recv := testenv.OTLP(t)
	accepted := make(chan struct{}, 1)
	if ln, err := net.Listen("tcp", "127.0.0.1:4318"); err == nil { // the SDK's default: taken by something else, skip this part
		t.Cleanup(func() { _ = ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_ = c.Close()
				select {
				case accepted <- struct{}{}:
				default:
				}
			}
		}()
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"no endpoint", map[string]string{"OTEL_SERVICE_NAME": "untraced", "OTEL_TRACES_SAMPLER": "always_on"}},
		{"disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": recv.HTTPEndpoint(), "OTEL_SDK_DISABLED": "true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := maps.Clone(s.env)
			maps.Copy(env, tc.env)
			env["HTTP_ADDR"], env["LOG_LEVEL"], env["RATE_LIMIT"] = "127.0.0.1:0", "info", "0"
			env["REDIS_PREFIX"] = testRedisPrefix()
			run, addrs := startListening(t, env, "run")
			base := "http://" + addrs["api"]
			email := strings.ReplaceAll(tc.name, " ", "") + "@untraced.test"
			if out, stderr, code := shop(t, env, "user", "add", "--email", email, "--password", "a password", "--admin"); code != 0 {
				t.Fatalf("user add: %s %s", out, stderr)
			}
			admin := postJSON(t, base+"/v1/tokens", "", fmt.Sprintf(`{"email":%q,"password":"a password"}`, email), http.StatusOK)["token"].(string)
			product := postJSON(t, base+"/v1/products", admin, fmt.Sprintf(`{"sku":"UNTRACED-%d","name":"Mug","price_cents":900,"stock":5}`, time.Now().UnixNano()), http.StatusCreated)["id"].(string)
			postJSON(t, base+"/v1/users", "", `{"email":"c-`+email+`","name":"C","password":"c password"}`, http.StatusCreated)
			customer := postJSON(t, base+"/v1/tokens", "", `{"email":"c-`+email+`","password":"c password"}`, http.StatusOK)["token"].(string)
			traceID := randomHex(t, 16)
			orderID := orderWithTrace(t, base, customer, product, "00-"+traceID+"-"+randomHex(t, 8)+"-01")
			readAtLeast(t, base+"/v1/orders/"+orderID+"?min_version=2", customer)

			var carried string
			testenv.Must(t, s.pool.QueryRow(context.Background(), `SELECT payload->'trace'->>'traceparent' FROM committed
				WHERE routing_key = 'order.placed' AND payload->>'aggregate_id' = $1`, orderID).Scan(&carried), "order.placed")
			if !strings.HasPrefix(carried, "00-"+traceID+"-") {
				t.Errorf("order.placed carries %q, want the caller's trace %s", carried, traceID)
			}
			if dials := foreignConnections(t, run.Process.Pid, addrs); len(dials) > 0 {
				t.Errorf("shop run holds connections to other than Postgres, Redis and RabbitMQ: %v", dials)
			}
			stop(t, run)
			if n := recv.Requests(); n != 0 {
				t.Errorf("the receiver got %d exports", n)
			}
			select {
			case <-accepted:
				t.Errorf("something connected to the SDK's default endpoint 127.0.0.1:4318")
			default:
			}
		})
	}
}

// foreignConnections returns the TCP connections of process pid that are
// neither accepted by one of its own servers (addrs) nor to Postgres,
// Redis or RabbitMQ, as "local->remote state" strings, from /proc.
func foreignConnections(t *testing.T, pid int, addrs map[string]string) []string {
	t.Helper()
	own := map[int]bool{}
	for _, a := range addrs {
		_, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		own[p] = true
	}
	services := map[int]bool{5432: true, 6379: true, 5672: true}
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	testenv.Must(t, err, "read the process's fds")
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, table := range []string{"tcp", "tcp6"} {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		testenv.Must(t, err, "read /proc net "+table)
		for i, line := range strings.Split(string(raw), "\n") {
			f := strings.Fields(line)
			if i == 0 || len(f) < 10 || !inodes[f[9]] || f[3] == "0A" { // 0A: listening
				continue
			}
			local, remote := hexPort(f[1]), hexPort(f[2])
			if own[local] || services[remote] {
				continue
			}
			out = append(out, fmt.Sprintf("%s->%s state %s", f[1], f[2], f[3]))
		}
	}
	return out
}

// hexPort is the port of a /proc/net/tcp address (ADDR:PORT in hex).
func hexPort(addr string) int {
	_, port, _ := strings.Cut(addr, ":")
	p, _ := strconv.ParseInt(port, 16, 32)
	return int(p)
}
