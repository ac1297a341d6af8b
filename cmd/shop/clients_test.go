package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/outbox"
)

// The examples docs/clients.md shows: a Node subscriber of the event
// stream, and a TypeScript client generated from the OpenAPI document.
const (
	nodeExample       = "../../docs/examples/node-consumer"
	typescriptExample = "../../docs/examples/typescript-client"
)

// installExample copies the files of an example into a directory of t's
// own and installs its packages from npm (at the versions of its lock
// file), or skips t where Node or npm is missing.
func installExample(t *testing.T, example string, files ...string) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: the example %s of docs/clients.md is not run", tool, example)
		}
	}
	dir := t.TempDir()
	for _, name := range append([]string{"package.json", "package-lock.json"}, files...) {
		raw, err := os.ReadFile(filepath.Join(example, name))
		testenv.Must(t, err, "read the example")
		testenv.Must(t, os.WriteFile(filepath.Join(dir, name), raw, 0o644), "copy the example")
	}
	runIn(t, dir, 3*time.Minute, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	return dir
}

// runIn runs a command in dir and fails t unless it succeeds.
func runIn(t *testing.T, dir string, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	out, err := tryIn(dir, timeout, nil, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// tryIn runs a command in dir with env added and returns its combined
// output.
func tryIn(dir string, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	// npm's check for a newer npm, which goes to the registry, is not
	// what is tested (CI=true turns it off too).
	cmd.Env = append(append(os.Environ(), "NPM_CONFIG_UPDATE_NOTIFIER=false"), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// nodeConsumer is a running `node consume.mjs`.
type nodeConsumer struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr *testenv.Logs
	done   chan error
}

// startNodeConsumer runs the example with env and returns once it says it
// is bound and consuming.
func startNodeConsumer(t *testing.T, dir string, env map[string]string) *nodeConsumer {
	t.Helper()
	asyncapi, err := filepath.Abs("../../api/asyncapi.yaml")
	testenv.Must(t, err, "path of asyncapi.yaml")
	cmd := exec.Command("node", "consume.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ASYNCAPI="+asyncapi)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	n := &nodeConsumer{cmd: cmd, stderr: &testenv.Logs{}, done: make(chan error, 1)}
	cmd.Stdout = &n.stdout
	stderr, err := cmd.StderrPipe()
	testenv.Must(t, err, "stderr pipe")
	testenv.Must(t, cmd.Start(), "start node")
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-n.done
	})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			_, _ = n.stderr.Write(append(sc.Bytes(), '\n'))
			if !signalled && strings.Contains(sc.Text(), `"ready":true`) {
				signalled = true
				close(ready)
			}
		}
		n.done <- cmd.Wait()
	}()
	select {
	case <-ready:
		return n
	case err := <-n.done:
		n.done <- err
		t.Fatalf("the Node subscriber stopped before it was ready: %v\n%s", err, n.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("the Node subscriber was not ready within 30 s:\n%s", n.stderr)
	}
	return nil
}

// wait waits for the subscriber to exit and returns its exit code.
func (n *nodeConsumer) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case err := <-n.done:
		n.done <- err
		if err == nil {
			return 0
		}
		if exit, ok := err.(*exec.ExitError); ok {
			return exit.ExitCode()
		}
		t.Fatalf("node: %v", err)
	case <-time.After(timeout):
		t.Fatalf("the Node subscriber did not stop within %s; it printed:\n%s\n%s", timeout, n.stdout.String(), n.stderr)
	}
	return -1
}

// nodeEvent is one line the subscriber prints per event it accepted.
type nodeEvent struct {
	RoutingKey       string         `json:"routing_key"`
	ID               string         `json:"id"`
	AggregateID      string         `json:"aggregate_id"`
	AggregateVersion int64          `json:"aggregate_version"`
	Data             map[string]any `json:"data"`
}

// TestNodeSubscriberReadsAnOrderFlow is docs/clients.md's Node subscriber
// (amqplib, and ajv checking each event against api/asyncapi.yaml: a check
// made by no Go code) reading one whole order flow of `shop run`: a
// customer registers, an admin adds a product, the customer orders and
// then cancels. It stops after the last event of the flow, and fails at
// the first event that breaks its schema or its AMQP properties.
func TestNodeSubscriberReadsAnOrderFlow(t *testing.T) {
	t.Parallel()
	dir := installExample(t, nodeExample, "consume.mjs")
	s := newSystem(t)
	env := maps.Clone(s.env)
	env["LOG_LEVEL"], env["HTTP_ADDR"] = "info", "127.0.0.1:0"
	run, base := startServing(t, env, "run")
	base = "http://" + base

	node := startNodeConsumer(t, dir, map[string]string{"AMQP_URL": env["AMQP_URL"], "STOP_AFTER": "stock.released", "STRICT": "1"})

	if out, stderr, code := shop(t, env, "user", "add", "--email", "admin@node.test", "--password", "admin password", "--admin"); code != 0 {
		t.Fatalf("user add: %s %s", out, stderr)
	}
	admin := postJSON(t, base+"/v1/tokens", "", `{"email":"admin@node.test","password":"admin password"}`, http.StatusOK)["token"].(string)
	product := postJSON(t, base+"/v1/products", admin, `{"sku":"NODE-1","name":"Node mug","price_cents":900,"stock":5}`, http.StatusCreated)["id"].(string)
	postJSON(t, base+"/v1/users", "", `{"email":"nia@node.test","name":"Nia","password":"nia secret"}`, http.StatusCreated)
	nia := postJSON(t, base+"/v1/tokens", "", `{"email":"nia@node.test","password":"nia secret"}`, http.StatusOK)["token"].(string)
	placed := postJSON(t, base+"/v1/orders", nia, fmt.Sprintf(`{"items":[{"product_id":%q,"quantity":2}]}`, product), http.StatusAccepted)
	orderID := placed["id"].(string)
	if o := readAtLeast(t, base+"/v1/orders/"+orderID+"?min_version=2", nia); o["status"] != "confirmed" {
		t.Fatalf("order = %v, want confirmed", o)
	}
	postJSON(t, base+"/v1/orders/"+orderID+"/cancel", nia, `{}`, http.StatusAccepted)

	if code := node.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("the Node subscriber exited %d:\n%s", code, node.stderr)
	}
	var seen []nodeEvent
	for line := range strings.Lines(node.stdout.String()) {
		var e nodeEvent
		testenv.Must(t, json.Unmarshal([]byte(line), &e), "decode a line of the Node subscriber")
		seen = append(seen, e)
	}
	keys := map[string]bool{}
	var orderFlow []string
	for _, e := range seen {
		keys[e.RoutingKey] = true
		if e.AggregateID == orderID && strings.HasPrefix(e.RoutingKey, "order.") {
			orderFlow = append(orderFlow, fmt.Sprintf("%s v%d", e.RoutingKey, e.AggregateVersion))
		}
	}
	for _, key := range []string{"user.registered", "product.created", "order.placed", "stock.reserved", "stock.changed",
		"order.confirmed", "order.cancelled", "stock.released"} {
		if !keys[key] {
			t.Errorf("the Node subscriber saw no %s; it saw %v", key, slices.Sorted(maps.Keys(keys)))
		}
	}
	if want := []string{"order.placed v1", "order.confirmed v2", "order.cancelled v3"}; !slices.Equal(orderFlow, want) {
		t.Errorf("the order's own events (order.*), in the order the subscriber read them = %v, want %v", orderFlow, want)
	}
	stop(t, run)
}

// TestNodeSubscriberRefusesAnUndocumentedField proves the Node check can
// fail: an order.placed whose data has a field api/asyncapi.yaml does not
// list stops the subscriber with exit 1, naming the field.
func TestNodeSubscriberRefusesAnUndocumentedField(t *testing.T) {
	t.Parallel()
	dir := installExample(t, nodeExample, "consume.mjs")
	url := testenv.AMQPURL(t)
	conn, err := amqp.Dial(url)
	testenv.Must(t, err, "dial RabbitMQ")
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	testenv.Must(t, err, "open a channel")
	testenv.Must(t, ch.ExchangeDeclare(outbox.Exchange, amqp.ExchangeTopic, true, false, false, false, nil), "declare the exchange as shop does")

	node := startNodeConsumer(t, dir, map[string]string{"AMQP_URL": url, "STRICT": "1"})

	id, orderID, product := uuid.Must(uuid.NewV7()), uuid.New(), uuid.New()
	body := fmt.Sprintf(`{"id":%q,"type":"order.placed","schema_version":1,"aggregate_type":"order","aggregate_id":%q,
		"aggregate_version":1,"occurred_at":"2026-11-30T12:00:00Z","correlation_id":%q,"causation_id":"req-1",
		"data":{"order_id":%q,"user_id":%q,"status":"pending","items":[{"product_id":%q,"sku":"X-1","name":"X","quantity":1,"unit_price_cents":100}],
		"total_cents":100,"coupon":"FREE"}}`, id, orderID, id, orderID, uuid.New(), product)
	testenv.Must(t, ch.PublishWithContext(context.Background(), outbox.Exchange, "order.placed", false, false, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: id.String(), Type: "order.placed", Body: []byte(body),
	}), "publish")

	if code := node.wait(t, 30*time.Second); code != 1 {
		t.Fatalf("the Node subscriber exited %d on an undocumented field, want 1:\n%s", code, node.stderr)
	}
	if !strings.Contains(node.stderr.String(), "coupon") {
		t.Errorf("the Node subscriber's complaint does not name the field coupon:\n%s", node.stderr)
	}
	if node.stdout.Len() != 0 {
		t.Errorf("the Node subscriber handled the broken event:\n%s", node.stdout.String())
	}
}

// TestClientsDocShowsTheTestedExample: docs/clients.md shows the examples
// that the tests above run, verbatim.
func TestClientsDocShowsTheTestedExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/clients.md")
	testenv.Must(t, err, "read docs/clients.md")
	for _, name := range []string{"node-consumer/consume.mjs", "node-consumer/package.json", "typescript-client/client.ts", "typescript-client/package.json"} {
		raw, err := os.ReadFile(filepath.Join("../../docs/examples", name))
		testenv.Must(t, err, "read the example")
		if !bytes.Contains(doc, raw) {
			t.Errorf("docs/clients.md does not show docs/examples/%s as it is: paste it again", name)
		}
	}
}

// TestTypeScriptClientAgainstShop generates a TypeScript client from
// api/openapi.yaml with openapi-typescript, as docs/clients.md does,
// compiles the example that calls shop with it (openapi-fetch), and runs it
// against `shop run`: it registers, signs in, orders and reads its order
// confirmed. A call the contract does not have must not compile.
func TestTypeScriptClientAgainstShop(t *testing.T) {
	t.Parallel()
	dir := installExample(t, typescriptExample, "tsconfig.json", "client.ts")
	document, err := filepath.Abs("../../api/openapi.yaml")
	testenv.Must(t, err, "path of openapi.yaml")
	runIn(t, dir, 3*time.Minute, "npx", "openapi-typescript", document, "-o", "shop-api.d.ts")
	runIn(t, dir, 2*time.Minute, "npx", "tsc")

	t.Run("a call the contract does not have does not compile", func(t *testing.T) {
		bad := `import createClient from "openapi-fetch";
import type { paths } from "./shop-api.js";
const shop = createClient<paths>({ baseUrl: "http://localhost:8080" });
await shop.POST("/v1/orders", { body: { items: [{ product_id: "p", qty: 1 }] } });
`
		testenv.Must(t, os.WriteFile(filepath.Join(dir, "bad.ts"), []byte(bad), 0o644), "write bad.ts")
		out, err := tryIn(dir, 2*time.Minute, nil, "npx", "tsc", "--noEmit", "--module", "nodenext", "--target", "es2022",
			"--strict", "--skipLibCheck", "bad.ts")
		if err == nil || !strings.Contains(out, "qty") {
			t.Errorf("tsc accepted an order line with qty instead of quantity (err %v):\n%s", err, out)
		}
	})

	s := newSystem(t)
	env := maps.Clone(s.env)
	env["LOG_LEVEL"], env["HTTP_ADDR"] = "info", "127.0.0.1:0"
	run, addr := startServing(t, env, "run")
	base := "http://" + addr
	if out, stderr, code := shop(t, env, "user", "add", "--email", "admin@ts.test", "--password", "admin password", "--admin"); code != 0 {
		t.Fatalf("user add: %s %s", out, stderr)
	}
	admin := postJSON(t, base+"/v1/tokens", "", `{"email":"admin@ts.test","password":"admin password"}`, http.StatusOK)["token"].(string)
	product := postJSON(t, base+"/v1/products", admin, `{"sku":"TS-1","name":"Typed mug","price_cents":700,"stock":5}`, http.StatusCreated)["id"].(string)
	readAtLeast(t, base+"/v1/products/"+product+"?min_version=1", "") // the catalogue's read model has it

	out, err := tryIn(dir, time.Minute, []string{"SHOP_URL=" + base}, "node", "dist/client.js")
	if err != nil {
		t.Fatalf("the TypeScript client failed: %v\n%s", err, out)
	}
	var got struct {
		Order, Status string
		TotalCents    int64 `json:"total_cents"`
		Stale         bool
	}
	testenv.Must(t, json.Unmarshal([]byte(strings.TrimSpace(out)), &got), "decode the client's line")
	if got.Status != "confirmed" || got.TotalCents != 700 || got.Stale {
		t.Errorf("the TypeScript client read %+v, want its order confirmed, 700 cents, not stale", got)
	}
	stop(t, run)
}
