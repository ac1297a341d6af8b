package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/store"
)

// shopBin is the shop binary built once for these tests.
var shopBin string

// TestMain builds the binary for the tests that run it as a process; with
// -short, which runs what needs no service, there are none.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "shop-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shopBin = filepath.Join(dir, "shop")
	build := exec.Command("go", "build", "-race", "-o", shopBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build shop:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// shop runs the binary to completion with env added to a minimal environment.
func shop(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	return shopStdin(t, env, "", args...)
}

func environ(env map[string]string) []string {
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "BCRYPT_COST=4"}
	if _, ok := env["REDIS_PREFIX"]; !ok {
		// Keys of their own, rate limits included, unless a test shares
		// them between processes on purpose.
		out = append(out, "REDIS_PREFIX="+testRedisPrefix())
	}
	if _, ok := env["METRICS_ADDR"]; !ok {
		out = append(out, "METRICS_ADDR=127.0.0.1:0") // never a port another test holds
	}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// freshDatabaseURL names a database that does not exist yet; it is dropped
// when t ends.
func freshDatabaseURL(t *testing.T) string {
	t.Helper()
	testenv.NeedServices(t)
	u, err := url.Parse(testenv.ServerURL())
	testenv.Must(t, err, "parse server url")
	u.Path = "/shop_cmd_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
	dbURL := u.String()
	t.Cleanup(func() {
		if err := store.DropDatabase(context.Background(), dbURL); err != nil {
			t.Errorf("drop: %v", err)
		}
	})
	return dbURL
}

func TestMigrateAddAdminServeAndStop(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": freshDatabaseURL(t)}

	for i := range 2 { // creates the database, then finds nothing to do
		if _, stderr, code := shop(t, env, "migrate"); code != 0 {
			t.Fatalf("migrate #%d exit code %d:\n%s", i+1, code, stderr)
		}
	}
	stdout, stderr, code := shop(t, env, "user", "add", "--email", "Root@Example.com", "--password", "correct horse", "--admin")
	if code != 0 || !strings.Contains(stdout, "root@example.com admin") {
		t.Fatalf("user add: code %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	if _, stderr, code := shop(t, env, "user", "add", "--email", "root@example.com", "--password", "another one"); code == 0 || !strings.Contains(stderr, "email already registered") {
		t.Fatalf("second user add with the same email: code %d, stderr:\n%s", code, stderr)
	}
	if strings.Contains(stderr, "correct horse") {
		t.Fatal("the password was logged")
	}

	env["HTTP_ADDR"] = "127.0.0.1:0"
	env["JWT_SECRET"] = strings.Repeat("s", 32)
	api, addr := startAPI(t, env)

	token := postJSON(t, "http://"+addr+"/v1/tokens", "", `{"email":"root@example.com","password":"correct horse"}`, http.StatusOK)["token"]
	if token == nil {
		t.Fatal("no token issued")
	}
	postJSON(t, "http://"+addr+"/v1/products", token.(string), `{"sku":"S-1","name":"Spoon","price_cents":199,"stock":3}`, http.StatusCreated)

	stop(t, api)
}

// stop sends SIGTERM and expects the process to exit 0 within 30 s.
func stop(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	testenv.Must(t, cmd.Process.Signal(syscall.SIGTERM), "send SIGTERM")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s did not exit 0 after SIGTERM: %v", cmd.Args[1], err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("%s did not stop within 30 s of SIGTERM", cmd.Args[1])
	}
}

// startAPI starts `shop api` and returns it with the address it listens on,
// read from its "listening" log line.
func startAPI(t *testing.T, env map[string]string) (*exec.Cmd, string) {
	t.Helper()
	return startServing(t, env, "api")
}

// waitReady waits until the process serving /readyz on addr is ready.
func waitReady(t *testing.T, addr string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		res, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz = %d", res.StatusCode)
		}
		return nil
	})
}

// metrics returns what the process serving /metrics on addr exposes now.
func metrics(t *testing.T, addr string) string {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	testenv.Must(t, err, "GET /metrics")
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	testenv.Must(t, err, "read /metrics")
	return string(body)
}

// metricTotal sums every sample of the metric family name (all its label
// sets) that the process serving /metrics on addr exposes now; 0 when it
// has none yet.
func metricTotal(addr, name string) (float64, error) {
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("GET /metrics: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, fmt.Errorf("read /metrics: %w", err)
	}
	total := 0.0
	for line := range strings.Lines(string(body)) {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		fields := strings.Fields(line)
		n, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metrics line %q: %w", line, err)
		}
		total += n
	}
	return total, nil
}

// startServing starts a long-running shop command and returns it with the
// address its HTTP server listens on (the API's, for api and run; the ops
// server's otherwise), read from its "listening" log line.
func startServing(t *testing.T, env map[string]string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd, addrs := startListening(t, env, args...)
	if args[0] == "api" || args[0] == "run" {
		return cmd, addrs["api"]
	}
	return cmd, addrs["ops"]
}

// startListening starts a long-running shop command and returns it with
// the address of each of its HTTP servers, by name ("api", "ops"), once
// every one it has logged its "listening" line.
func startListening(t *testing.T, env map[string]string, args ...string) (*exec.Cmd, map[string]string) {
	t.Helper()
	testenv.NeedServices(t)
	cmd := exec.Command(shopBin, args...)
	cmd.Env = environ(env)
	stderr, err := cmd.StderrPipe()
	testenv.Must(t, err, "stderr pipe")
	testenv.Must(t, cmd.Start(), "start api")
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	servers := []string{"ops"}
	if args[0] == "api" || args[0] == "run" {
		servers = append(servers, "api")
	}
	type listening struct{ server, addr string }
	addrc := make(chan listening, len(servers))
	// What went wrong in the process is shown with what failed the test.
	problems := &testenv.Logs{}
	t.Cleanup(func() {
		if t.Failed() && problems.String() != "" {
			t.Logf("shop %s logged at WARN or ERROR (the last 40 lines):\n%s", strings.Join(args, " "), tail(problems.String(), 40))
		}
	})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var line struct{ Msg, Addr, Server, Level string }
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			switch {
			case line.Msg == "listening":
				select {
				case addrc <- listening{line.Server, line.Addr}:
				default:
				}
			case line.Level == "WARN" || line.Level == "ERROR":
				_, _ = problems.Write([]byte(sc.Text() + "\n"))
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	addrs := map[string]string{}
	deadline := time.After(30 * time.Second)
	for len(addrs) < len(servers) {
		select {
		case l := <-addrc:
			addrs[l.server] = l.addr
		case <-deadline:
			t.Fatalf("shop %v did not log the listening addresses of %v within 30 s (got %v)", args, servers, addrs)
		}
	}
	// What its pools may open counts against the budget from here: it has
	// opened few yet, and the test has not loaded it.
	conns, err := metricTotal(addrs["ops"], "shop_db_pool_max_conns")
	testenv.Must(t, err, "read the pools' sizes")
	pgConns.take(t, int(conns))
	return cmd, addrs
}

func postJSON(t *testing.T, url, token, body string, wantStatus int) map[string]any {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	testenv.Must(t, err, "new request")
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	testenv.Must(t, err, "POST "+url)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != wantStatus {
		t.Fatalf("POST %s = %d, want %d: %s", url, res.StatusCode, wantStatus, raw)
	}
	var out map[string]any
	testenv.Must(t, json.Unmarshal(raw, &out), "decode response")
	return out
}

// testRedisPrefix is a Redis key prefix no other test uses.
func testRedisPrefix() string {
	return "shop_test_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12] + ":"
}

// TestAPIReplicasShareOneRateLimit: two `shop api` processes that share
// Redis let a client through as often as one would (RATE_LIMIT and
// RATE_LIMIT_BURST reach them): its first two requests go through, one to
// each, and every later one gets 429 with Retry-After, from either; the
// health check still answers.
func TestAPIReplicasShareOneRateLimit(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"DATABASE_URL": freshDatabaseURL(t), "HTTP_ADDR": "127.0.0.1:0", "JWT_SECRET": strings.Repeat("s", 32),
		"RATE_LIMIT": "0.01", "RATE_LIMIT_BURST": "2", "REDIS_PREFIX": testRedisPrefix(),
	}
	if _, stderr, code := shop(t, env, "migrate"); code != 0 {
		t.Fatalf("migrate: %s", stderr)
	}
	first, addr1 := startAPI(t, env)
	second, addr2 := startAPI(t, env)
	path := "/v1/products/" + uuid.NewString()
	var statuses []int
	for _, addr := range []string{addr1, addr2, addr1, addr2} {
		res, err := http.Get("http://" + addr + path)
		testenv.Must(t, err, "GET a product")
		res.Body.Close()
		statuses = append(statuses, res.StatusCode)
		if res.StatusCode == http.StatusTooManyRequests && res.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if want := []int{404, 404, 429, 429}; !slices.Equal(statuses, want) {
		t.Errorf("statuses from replicas 1, 2, 1, 2 = %v, want %v", statuses, want)
	}
	res, err := http.Get("http://" + addr1 + "/healthz")
	testenv.Must(t, err, "GET /healthz")
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("/healthz = %d past the limit, want 200", res.StatusCode)
	}
	stop(t, first)
	stop(t, second)
}

// TestDevSecretIsMadeUpPerProcess: in dev, on loopback, without
// JWT_SECRET, each API signs with a secret of its own: a token of one is
// worthless to the other, so no deployment can share a known secret.
func TestDevSecretIsMadeUpPerProcess(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": freshDatabaseURL(t), "HTTP_ADDR": "127.0.0.1:0", "SHOP_ENV": "dev"}
	if _, stderr, code := shop(t, env, "migrate"); code != 0 {
		t.Fatalf("migrate: %s", stderr)
	}
	first, addr1 := startAPI(t, env)
	second, addr2 := startAPI(t, env)
	postJSON(t, "http://"+addr1+"/v1/users", "", `{"email":"dev@example.com","name":"Dev","password":"correct horse"}`, http.StatusCreated)
	token := postJSON(t, "http://"+addr1+"/v1/tokens", "", `{"email":"dev@example.com","password":"correct horse"}`, http.StatusOK)["token"].(string)
	for _, tc := range []struct {
		addr string
		want int
	}{{addr1, http.StatusOK}, {addr2, http.StatusUnauthorized}} {
		req, err := http.NewRequest(http.MethodGet, "http://"+tc.addr+"/v1/orders", nil)
		testenv.Must(t, err, "request")
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		testenv.Must(t, err, "GET /v1/orders")
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("GET /v1/orders on %s with the first API's token = %d, want %d", tc.addr, res.StatusCode, tc.want)
		}
	}
	stop(t, first)
	stop(t, second)
}

// startLimitedAPI migrates a fresh database and starts `shop api` on it
// with a rate limit of 2 requests per client and a token per 100 s after
// them: within a test, only the first two of a client go through. The
// proxy on 127.0.0.1 in front of it is trusted to name the clients.
func startLimitedAPI(t *testing.T) (*exec.Cmd, string) {
	t.Helper()
	env := map[string]string{
		"DATABASE_URL": freshDatabaseURL(t), "HTTP_ADDR": "127.0.0.1:0", "JWT_SECRET": strings.Repeat("s", 32),
		"RATE_LIMIT": "0.01", "RATE_LIMIT_BURST": "2", "TRUSTED_PROXIES": "127.0.0.1/32",
	}
	if _, stderr, code := shop(t, env, "migrate"); code != 0 {
		t.Fatalf("migrate: %s", stderr)
	}
	return startAPI(t, env)
}

// TestAPIBoundsItsConnections: HTTP_MAX_CONNS caps the connections the
// API serves at once (one more waits until one closes), and
// HTTP_READ_TIMEOUT closes a connection whose request never ends.
func TestAPIBoundsItsConnections(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": freshDatabaseURL(t), "HTTP_ADDR": "127.0.0.1:0", "JWT_SECRET": strings.Repeat("s", 32),
		"HTTP_MAX_CONNS": "1", "HTTP_READ_TIMEOUT": "1s"}
	if _, stderr, code := shop(t, env, "migrate"); code != 0 {
		t.Fatalf("migrate: %s", stderr)
	}
	api, addr := startAPI(t, env)

	// A slow client: headers that never end. The server hangs up.
	slow, err := net.Dial("tcp", addr)
	testenv.Must(t, err, "dial")
	_, err = slow.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "))
	testenv.Must(t, err, "write")
	testenv.Must(t, slow.SetReadDeadline(time.Now().Add(20*time.Second)), "deadline")
	if n, err := slow.Read(make([]byte, 1)); err == nil {
		t.Errorf("read %d bytes from a request that never ended, want the connection closed", n)
	}
	slow.Close()

	// One connection held open: a second one is not served until it closes.
	held, err := net.Dial("tcp", addr)
	testenv.Must(t, err, "dial")
	_, err = held.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
	testenv.Must(t, err, "write")
	testenv.Must(t, held.SetReadDeadline(time.Now().Add(10*time.Second)), "deadline")
	if _, err := bufio.NewReader(held).ReadString('\n'); err != nil {
		t.Fatalf("the first connection got no answer: %v", err)
	}
	waiting := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	if res, err := waiting.Get("http://" + addr + "/healthz"); err == nil {
		res.Body.Close()
		t.Errorf("a second connection was served (%d) while the cap of one was held", res.StatusCode)
	}
	held.Close()
	testenv.Eventually(t, 10*time.Second, func() error {
		res, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return err
		}
		res.Body.Close()
		return nil
	})
	stop(t, api)
}

// With no relay running, `shop api` takes commands until the outbox holds
// OUTBOX_MAX_PENDING unsent events; then a command waits OUTBOX_WAIT and
// is answered 503 with Retry-After, and /metrics counts the refusal.
func TestAPIRefusesCommandsWhileTheOutboxIsFull(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": freshDatabaseURL(t)}
	if _, stderr, code := shop(t, env, "migrate"); code != 0 {
		t.Fatalf("migrate: exit code %d:\n%s", code, stderr)
	}
	if _, stderr, code := shop(t, env, "user", "add", "--email", "root@example.com", "--password", "correct horse", "--admin"); code != 0 {
		t.Fatalf("user add: exit code %d:\n%s", code, stderr)
	}
	// The admin's user.registered is sent, as a relay would.
	conn, err := pgx.Connect(context.Background(), env["DATABASE_URL"])
	testenv.Must(t, err, "connect")
	_, err = conn.Exec(context.Background(), `DELETE FROM outbox`)
	testenv.Must(t, err, "empty the outbox")
	testenv.Must(t, conn.Close(context.Background()), "close")
	env["HTTP_ADDR"], env["METRICS_ADDR"] = "127.0.0.1:0", "127.0.0.1:0"
	env["JWT_SECRET"] = strings.Repeat("s", 32)
	env["OUTBOX_MAX_PENDING"], env["OUTBOX_WAIT"] = "1", "300ms"
	_, addrs := startListening(t, env, "api")
	token := postJSON(t, "http://"+addrs["api"]+"/v1/tokens", "", `{"email":"root@example.com","password":"correct horse"}`, http.StatusOK)["token"].(string)

	statuses := map[int]int{}
	for i := 0; statuses[http.StatusServiceUnavailable] == 0 && i < 50; i++ {
		req, err := http.NewRequest(http.MethodPost, "http://"+addrs["api"]+"/v1/products",
			strings.NewReader(fmt.Sprintf(`{"sku":"S-%d","name":"Spoon","price_cents":199,"stock":3}`, i)))
		testenv.Must(t, err, "new request")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		testenv.Must(t, err, "POST /v1/products")
		_ = res.Body.Close()
		statuses[res.StatusCode]++
		if res.StatusCode == http.StatusServiceUnavailable && res.Header.Get("Retry-After") != "1" {
			t.Errorf("503 with Retry-After %q, want 1", res.Header.Get("Retry-After"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if statuses[http.StatusCreated] == 0 || statuses[http.StatusServiceUnavailable] == 0 || len(statuses) != 2 {
		t.Fatalf("answers %v: want 201 until the outbox held its bound, then 503", statuses)
	}
	if got, err := metricTotal(addrs["ops"], "shop_outbox_backlog_refused_total"); err != nil || got < 1 {
		t.Errorf("shop_outbox_backlog_refused_total = %v (%v), want 1 or more", got, err)
	}
}
