package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

	"github.com/shopdev/shop/internal/testenv"
	"github.com/shopdev/shop/store"
)

// shopBin is the shop binary built once for these tests.
var shopBin string

func TestMain(m *testing.M) {
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
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, shopBin, args...)
	cmd.Env = environ(env)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		exitCode = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("run shop %v: %v", args, err)
	}
	return out.String(), errOut.String(), exitCode
}

func environ(env map[string]string) []string {
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "BCRYPT_COST=4"}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// freshDatabaseURL names a database that does not exist yet; it is dropped
// when t ends.
func freshDatabaseURL(t *testing.T) string {
	t.Helper()
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

func TestRefusesBadConfiguration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"api without JWT_SECRET outside dev", map[string]string{}, []string{"api"}, 1, "JWT_SECRET is required"},
		{"api in prod without JWT_SECRET", map[string]string{"SHOP_ENV": "prod"}, []string{"api"}, 1, "JWT_SECRET is required"},
		{"a short JWT_SECRET", map[string]string{"JWT_SECRET": "short"}, []string{"api"}, 1, "at least 32 bytes"},
		{"an unknown SHOP_ENV", map[string]string{"SHOP_ENV": "staging"}, []string{"api"}, 1, "SHOP_ENV must be prod or dev"},
		{"a DB_MAX_CONNS that is not a number", map[string]string{"DB_MAX_CONNS": "many"}, []string{"api"}, 1, `DB_MAX_CONNS="many": not an integer`},
		{"a DB_MAX_CONNS of zero", map[string]string{"DB_MAX_CONNS": "0"}, []string{"run"}, 1, "DB_MAX_CONNS must be an integer from 1 to 1000, not 0"},
		{"a bad LOG_LEVEL", map[string]string{"LOG_LEVEL": "loud"}, []string{"migrate"}, 1, `LOG_LEVEL must be debug, info, warn or error, not "loud"`},
		{"a bad LOG_FORMAT", map[string]string{"LOG_FORMAT": "xml"}, []string{"migrate"}, 1, `LOG_FORMAT must be text, json or auto`},
		{"a negative RELAY_LINGER", map[string]string{"RELAY_LINGER": "-2ms"}, []string{"relay"}, 1, "RELAY_LINGER must be a duration from 0 to 1s"},
		{"a RELAY_LINGER without a unit", map[string]string{"RELAY_LINGER": "2"}, []string{"relay"}, 1, `RELAY_LINGER="2": not a duration`},
		{"a CONSUMER_BATCH of zero", map[string]string{"CONSUMER_BATCH": "0"}, []string{"consume", "orders"}, 1, "CONSUMER_BATCH must be an integer from 1 to 256, not 0"},
		{"a CONSUMER_BATCH that is not a number", map[string]string{"CONSUMER_BATCH": "many"}, []string{"consume", "orders"}, 1, `CONSUMER_BATCH="many": not an integer`},
		{"a negative CONSUMER_MAX_RETRIES", map[string]string{"CONSUMER_MAX_RETRIES": "-1"}, []string{"run"}, 1, "CONSUMER_MAX_RETRIES must be an integer from 0 to 100"},
		{"a negative RATE_LIMIT", map[string]string{"RATE_LIMIT": "-1"}, []string{"api"}, 1, "RATE_LIMIT must be a number"},
		{"a RATE_LIMIT_BURST that is not a number", map[string]string{"RATE_LIMIT_BURST": "lots"}, []string{"api"}, 1, `RATE_LIMIT_BURST="lots": not an integer`},
		{"every bad value at once", map[string]string{"RELAY_WORKERS": "99", "CONSUMER_BATCH": "0"}, []string{"run"}, 1,
			"RELAY_WORKERS must be an integer from 1 to 16, not 99\nCONSUMER_BATCH must be an integer from 1 to 256, not 0"},
		{"no command", nil, nil, 2, "no command given"},
		{"an unknown command", nil, []string{"fly"}, 2, `unknown command "fly"`},
		{"user without add", nil, []string{"user"}, 2, "shop user add"},
		{"dead without list or replay", nil, []string{"dead"}, 2, "shop dead list GROUP [N] | shop dead replay GROUP [N]"},
		{"user add with an invalid email", nil, []string{"user", "add", "--email", "nope", "--password", "longenough"}, 1, "email"},
		{"consume without a group", nil, []string{"consume"}, 2, "shop consume GROUP..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, stderr, code := shop(t, tt.env, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			if !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stderr does not say %q:\n%s", tt.wantErr, stderr)
			}
		})
	}
}

// TestHelpRunsNothing: shop help lists every command and every variable
// with its default; every command answers -h and --help with its usage,
// exits 0 and does nothing else (here, with every dependency unreachable:
// a command that ran would fail or hang).
func TestHelpRunsNothing(t *testing.T) {
	t.Parallel()
	stdout, _, code := shop(t, nil, "help")
	if code != 0 {
		t.Fatalf("help exit code = %d", code)
	}
	for _, want := range []string{"run", "migrate", "api", "relay", "consume GROUP...", "user add", "projections rebuild",
		"outbox status", "dead list GROUP [N]", "dead replay GROUP [N]",
		"DATABASE_URL=postgres://", "RELAY_LINGER=2ms", "CONSUMER_MAX_RETRIES=5", "JWT_SECRET (unset)", "LOG_FORMAT=auto"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("shop help does not say %q", want)
		}
	}
	nowhere := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/nowhere", "AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
		"REDIS_URL": "redis://127.0.0.1:1/0", "HTTP_ADDR": "127.0.0.1:1", "METRICS_ADDR": "127.0.0.1:1"}
	for _, args := range [][]string{{"run"}, {"migrate"}, {"api"}, {"relay"}, {"consume", "orders"}, {"consume"},
		{"user", "add"}, {"projections", "rebuild"}, {"outbox", "status"}, {"dead", "list", "orders"}, {"dead", "replay", "orders"}} {
		for _, flag := range []string{"--help", "-h"} {
			stdout, stderr, code := shop(t, nowhere, append(slices.Clone(args), flag)...)
			if code != 0 || !strings.HasPrefix(stdout, "usage: shop "+args[0]) || !strings.Contains(stdout, "environment:") || stderr != "" {
				t.Errorf("shop %s %s: exit %d, stdout %q, stderr %q; want its usage and nothing else",
					strings.Join(args, " "), flag, code, firstLine(stdout), stderr)
			}
		}
	}
	if stdout, _, _ := shop(t, nil, "consume", "--help"); !strings.Contains(stdout, "orders       confirms or rejects") {
		t.Errorf("shop consume --help does not say what each group does:\n%s", stdout)
	}
	if stdout, _, _ := shop(t, nil, "user", "add", "--help"); !strings.Contains(stdout, "-email") {
		t.Errorf("shop user add --help does not list its flags:\n%s", stdout)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
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

// startServing starts a long-running shop command and returns it with the

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

// address its HTTP server listens on (the API's, for api and run; the ops
// server's otherwise), read from its "listening" log line.
func startServing(t *testing.T, env map[string]string, args ...string) (*exec.Cmd, string) {
	t.Helper()
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
	server := "ops"
	if args[0] == "api" || args[0] == "run" {
		server = "api"
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct{ Msg, Addr, Server string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" && line.Server == server {
				addrc <- line.Addr
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case addr := <-addrc:
		return cmd, addr
	case <-time.After(30 * time.Second):
		t.Fatalf("shop %v did not log its listening address within 30 s", args)
		return nil, ""
	}
}

func postJSON(t *testing.T, url, token, body string, wantStatus int) map[string]any {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	testenv.Must(t, err, "new request")
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

// startLimitedAPI migrates a fresh database and starts `shop api` on it
// with a rate limit of 2 requests per client and a token per 100 s after
// them: within a test, only the first two of a client go through.
func startLimitedAPI(t *testing.T) (*exec.Cmd, string) {
	t.Helper()
	env := map[string]string{
		"DATABASE_URL": freshDatabaseURL(t), "HTTP_ADDR": "127.0.0.1:0", "JWT_SECRET": strings.Repeat("s", 32),
		"RATE_LIMIT": "0.01", "RATE_LIMIT_BURST": "2",
	}
	if _, stderr, code := shop(t, env, "migrate"); code != 0 {
		t.Fatalf("migrate: %s", stderr)
	}
	return startAPI(t, env)
}

// TestAPILimitsEachClient: RATE_LIMIT and RATE_LIMIT_BURST reach `shop
// api`: past the burst a client gets 429 with Retry-After, while the health
// check still answers.
func TestAPILimitsEachClient(t *testing.T) {
	t.Parallel()
	api, addr := startLimitedAPI(t)
	unknown := "http://" + addr + "/v1/products/" + uuid.NewString()
	var statuses []int
	for range 4 {
		res, err := http.Get(unknown)
		testenv.Must(t, err, "GET a product")
		res.Body.Close()
		statuses = append(statuses, res.StatusCode)
		if res.StatusCode == http.StatusTooManyRequests && res.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if want := []int{404, 404, 429, 429}; !slices.Equal(statuses, want) {
		t.Errorf("statuses = %v, want %v", statuses, want)
	}
	res, err := http.Get("http://" + addr + "/healthz")
	testenv.Must(t, err, "GET /healthz")
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("/healthz = %d past the limit, want 200", res.StatusCode)
	}
	stop(t, api)
}
