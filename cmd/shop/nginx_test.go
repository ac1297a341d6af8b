package main_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopdev/shop/internal/testenv"
)

// startNginx runs nginx with deploy/nginx/default.conf.template rendered
// the way the official image renders it (SHOP_API the address of api,
// NGINX_RESOLVER loopback: the API's address needs no lookup), listening
// on a free port of loopback instead of 8080. It
// returns nginx's address and its access log. Without nginx installed the
// test is skipped, unless SHOP_TEST_REQUIRE_NGINX is set (CI sets it).
func startNginx(t *testing.T, api string) (string, *testenv.Logs) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if os.Getenv("SHOP_TEST_REQUIRE_NGINX") != "" {
			t.Fatal("nginx is not installed (apt-get install nginx-light)")
		}
		t.Skip("nginx is not installed")
	}
	raw, err := os.ReadFile("../../deploy/nginx/default.conf.template")
	testenv.Must(t, err, "read the nginx template")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.Must(t, err, "find a free port")
	addr := l.Addr().String()
	testenv.Must(t, l.Close(), "free the port")
	site := strings.NewReplacer("${SHOP_API}", api, "${NGINX_RESOLVER}", "127.0.0.1").Replace(string(raw))
	if !strings.Contains(site, "listen 8080;") {
		t.Fatal("the template does not listen on 8080, the port Compose publishes")
	}
	site = strings.Replace(site, "listen 8080;", "listen "+addr+";", 1)
	if strings.Contains(site, "${") {
		t.Fatalf("the template uses a variable this test does not render:\n%s", site)
	}
	dir := t.TempDir()
	testenv.Must(t, os.Chmod(dir, 0o755), "let nginx's workers read the directory")
	testenv.Must(t, os.WriteFile(filepath.Join(dir, "default.conf"), []byte(site), 0o644), "write the site")
	main := fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr;
events {}
http {
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/default.conf;
}
`, dir)
	testenv.Must(t, os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644), "write nginx.conf")
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", "stderr", "-g", "daemon off;")
	access := &testenv.Logs{}
	cmd.Stdout, cmd.Stderr = access, access
	// Its workers outlive a killed master: stop the whole process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	testenv.Must(t, cmd.Start(), "start nginx")
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	testenv.Eventually(t, 10*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return fmt.Errorf("nginx does not listen yet: %w; its output:\n%s", err, access)
		}
		return c.Close()
	})
	return addr, access
}

// TestNginxFrontsTheAPI runs the nginx of Docker Compose in front of a
// real `shop api`: requests go through with a request id (the caller's, or
// nginx's), the API rate-limits the clients nginx names in
// X-Forwarded-For rather than nginx itself, and bodies over the API's
// limit stop at nginx.
func TestNginxFrontsTheAPI(t *testing.T) {
	t.Parallel()
	api, apiAddr := startLimitedAPI(t)
	addr, access := startNginx(t, apiAddr)
	base := "http://" + addr

	// from returns a client whose connections come from ip, one of
	// loopback's many addresses: nginx sees it as the client's address.
	from := func(ip string) *http.Client {
		dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		return &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}, Timeout: 30 * time.Second}
	}
	get := func(client *http.Client, path string, hdr map[string]string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		testenv.Must(t, err, "request")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := client.Do(req)
		testenv.Must(t, err, "GET "+path)
		res.Body.Close()
		return res
	}

	t.Run("the caller's request id goes through", func(t *testing.T) {
		res := get(http.DefaultClient, "/healthz", map[string]string{"X-Request-Id": "caller-id-1"})
		if res.StatusCode != http.StatusOK || res.Header.Get("X-Request-Id") != "caller-id-1" {
			t.Fatalf("GET /healthz: %d, X-Request-Id %q; want 200 and caller-id-1", res.StatusCode, res.Header.Get("X-Request-Id"))
		}
		testenv.Eventually(t, 5*time.Second, func() error {
			if !strings.Contains(access.String(), "request_id=caller-id-1") {
				return fmt.Errorf("nginx's access log lacks request_id=caller-id-1:\n%s", access)
			}
			return nil
		})
	})
	t.Run("nginx names a request that came without an id", func(t *testing.T) {
		res := get(http.DefaultClient, "/healthz", nil)
		if id := res.Header.Get("X-Request-Id"); !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
			t.Fatalf("X-Request-Id %q; want nginx's $request_id (32 hex digits)", id)
		}
	})
	t.Run("the API limits each client nginx names", func(t *testing.T) {
		// Both clients reach the API through nginx, from nginx's address:
		// only X-Forwarded-For tells them apart.
		unknown := "/v1/products/" + uuid.NewString()
		first, second := from("127.0.0.2"), from("127.0.0.3")
		var statuses []int
		for range 3 {
			statuses = append(statuses, get(first, unknown, nil).StatusCode)
		}
		if want := []int{404, 404, 429}; !slices.Equal(statuses, want) {
			t.Errorf("client 127.0.0.2: statuses %v, want %v", statuses, want)
		}
		if s := get(second, unknown, nil).StatusCode; s != http.StatusNotFound {
			t.Errorf("client 127.0.0.3: status %d, want 404: the limit counted nginx, not the client", s)
		}
	})
	t.Run("a body over the API's limit stops at nginx", func(t *testing.T) {
		res, err := http.Post(base+"/v1/users", "application/json", bytes.NewReader(make([]byte, 2<<20)))
		testenv.Must(t, err, "POST a large body")
		res.Body.Close()
		if res.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("POST of 2 MiB: %d, want 413", res.StatusCode)
		}
	})
	stop(t, api)
}
