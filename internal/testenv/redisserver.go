package testenv

import (
	"fmt"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// RedisServer is a redis-server of one test's own, on its own port,
// keeping nothing on disk: a restart brings it back empty, as a Redis
// without persistence would after a crash.
type RedisServer struct {
	Addr string
	port int
	dir  string

	mu   sync.Mutex
	stop func() // SIGKILLs the running server and waits for its end
}

// StartRedisServer starts a redis-server for t; it is killed when t ends.
// It skips t when redis-server is not installed.
func StartRedisServer(t testing.TB) *RedisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	r := &RedisServer{port: freePort(t), dir: t.TempDir()}
	r.Addr = fmt.Sprintf("127.0.0.1:%d", r.port)
	r.start(t)
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.stop()
	})
	return r
}

// Restart SIGKILLs the server and starts it again on its port, empty.
func (r *RedisServer) Restart(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	r.stop()
	r.mu.Unlock()
	r.start(t)
}

func (r *RedisServer) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--save", "", "--appendonly", "no")
	out := &Logs{}
	cmd.Stdout, cmd.Stderr = out, out
	Must(t, cmd.Start(), "start redis-server")
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	if err := waitPing(r.Addr, cmd.Process.Pid, exited); err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("redis-server on %s did not start: %v\n%s", r.Addr, err, out)
	}
	r.mu.Lock()
	r.stop = func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
	r.mu.Unlock()
}
