package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Failover is a Redis master, one replica of it and three Sentinels that
// watch them (quorum 2), each a redis-server process of one test's own on
// loopback, without persistence, each in a directory of its own; they are
// killed when the test ends. The Sentinels see the master down after
// a second and may fail it over again after a few.
type Failover struct {
	// Name is the master's name, as the Sentinels know it.
	Name string
	// Addrs are the Sentinels' host:port.
	Addrs []string

	mu      sync.Mutex
	servers map[string]func() // kills the master or the replica, by host:port
}

// Sentinels starts a Failover for t and returns it once every Sentinel
// knows the master, its replica and the two other Sentinels, and the
// replica has synchronised. t is skipped when redis-server is not
// installed.
func Sentinels(t testing.TB) *Failover {
	t.Helper()
	NeedServices(t)
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed (apt-get install redis-server): no Redis Sentinel to test against")
	}
	f := &Failover{Name: "shop-" + strings.ReplaceAll(uuid.NewString(), "-", "")[:8], servers: map[string]func(){}}
	data := []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"}
	master, kill := startRedis(t, "master", nil, data...)
	f.servers[master] = kill
	host, port, _ := net.SplitHostPort(master)
	replica, kill := startRedis(t, "replica", nil, append(data, "--replicaof", host, port)...)
	f.servers[replica] = kill
	for i := range 3 {
		conf := fmt.Sprintf("bind 127.0.0.1\nsentinel monitor %[1]s %[2]s %[3]s 2\nsentinel down-after-milliseconds %[1]s 1000\n"+
			"sentinel failover-timeout %[1]s 3000\nsentinel parallel-syncs %[1]s 1\n", f.Name, host, port)
		addr, _ := startRedis(t, fmt.Sprintf("sentinel%d", i+1), []byte(conf), "--sentinel")
		f.Addrs = append(f.Addrs, addr)
	}
	Eventually(t, 30*time.Second, func() error {
		if role := f.role(replica); !strings.Contains(role, "master_link_status:up") {
			return fmt.Errorf("the replica %s has not synchronised: %s", replica, role)
		}
		for _, addr := range f.Addrs {
			if err := f.sentinelReady(addr, replica); err != nil {
				return err
			}
		}
		return nil
	})
	return f
}

// URL is a redis-sentinel URL of the Sentinels, naming the master and
// database 0.
func (f *Failover) URL() string {
	return "redis-sentinel://" + strings.Join(f.Addrs, ",") + "/0?master=" + f.Name
}

// MasterAddr returns the master's host:port as the first Sentinel that
// answers knows it.
func (f *Failover) MasterAddr(t testing.TB) string {
	t.Helper()
	var addr string
	Eventually(t, 10*time.Second, func() error {
		var err error
		addr, err = f.masterAddr()
		return err
	})
	return addr
}

func (f *Failover) masterAddr() (string, error) {
	var errs []string
	for _, s := range f.Addrs {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s, MaxRetries: -1})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		got, err := sc.GetMasterAddrByName(ctx, f.Name).Result()
		cancel()
		_ = sc.Close()
		if err == nil && len(got) == 2 {
			return net.JoinHostPort(got[0], got[1]), nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v", s, err))
	}
	return "", fmt.Errorf("no Sentinel names the master: %s", strings.Join(errs, "; "))
}

// ReplicaAddr returns the host:port of the server that is not the master.
func (f *Failover) ReplicaAddr(t testing.TB) string {
	t.Helper()
	master := f.MasterAddr(t)
	f.mu.Lock()
	defer f.mu.Unlock()
	for addr := range f.servers {
		if addr != master {
			return addr
		}
	}
	t.Fatal("no replica: the old master was killed")
	return ""
}

// Client returns a client of the Redis server at addr itself, the master or
// the replica (replicas serve reads), closed when the test ends.
func (f *Failover) Client(t testing.TB, addr string) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// KillMaster SIGKILLs the master's process, as a crash of its machine
// would, and returns its address. The Sentinels promote the replica once
// they agree the master is down; see WaitFailover.
func (f *Failover) KillMaster(t testing.TB) string {
	t.Helper()
	master := f.MasterAddr(t)
	f.mu.Lock()
	kill := f.servers[master]
	delete(f.servers, master)
	f.mu.Unlock()
	if kill == nil {
		t.Fatalf("the master %s is not a server of this test", master)
	}
	kill()
	return master
}

// WaitFailover waits until every Sentinel names a master other than old,
// and that server says it is the master, and returns its address.
func (f *Failover) WaitFailover(t testing.TB, old string, timeout time.Duration) string {
	t.Helper()
	var master string
	Eventually(t, timeout, func() error {
		var got []string
		for _, s := range f.Addrs {
			sc := redis.NewSentinelClient(&redis.Options{Addr: s, MaxRetries: -1})
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			addr, err := sc.GetMasterAddrByName(ctx, f.Name).Result()
			cancel()
			_ = sc.Close()
			if err != nil || len(addr) != 2 {
				return fmt.Errorf("sentinel %s: %v", s, err)
			}
			got = append(got, net.JoinHostPort(addr[0], addr[1]))
		}
		if slices.Contains(got, old) || len(slices.Compact(slices.Clone(got))) != 1 {
			return fmt.Errorf("the Sentinels name the masters %v (the old one is %s)", got, old)
		}
		if role := f.role(got[0]); !strings.Contains(role, "role:master") {
			return fmt.Errorf("%s, the Sentinels' new master, says %q", got[0], role)
		}
		master = got[0]
		return nil
	})
	return master
}

// Detach makes the replica miss every write from now on, as a replica
// that lags its master does: its link to the master is cut, and every try
// to re-establish it fails (it offers a password the master does not
// have). The Sentinels still see it and may promote it. The returned
// function lets it reconnect.
func (f *Failover) Detach(t testing.TB) (reattach func()) {
	t.Helper()
	replica := f.ReplicaAddr(t)
	rdb := f.Client(t, replica)
	ctx := context.Background()
	Must(t, rdb.ConfigSet(ctx, "masterauth", "not-the-masters-"+uuid.NewString()).Err(), "set a wrong masterauth on the replica")
	Must(t, rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "master").Err(), "cut the replica's link")
	Eventually(t, 10*time.Second, func() error {
		if role := f.role(replica); !strings.Contains(role, "master_link_status:down") {
			return fmt.Errorf("the replica is still linked: %s", role)
		}
		return nil
	})
	return func() {
		Must(t, rdb.ConfigSet(ctx, "masterauth", "").Err(), "clear the replica's masterauth")
	}
}

// role returns what INFO replication says of the server at addr, or the
// error.
func (f *Failover) role(addr string) string {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	info, err := rdb.Info(ctx, "replication").Result()
	if err != nil {
		return err.Error()
	}
	return info
}

// sentinelReady says why the Sentinel at addr could not fail the master
// over yet: it does not know the replica as a healthy one, or does not know
// both other Sentinels.
func (f *Failover) sentinelReady(addr, replica string) error {
	sc := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	replicas, err := sc.Replicas(ctx, f.Name).Result()
	if err != nil {
		return fmt.Errorf("sentinel %s: replicas: %w", addr, err)
	}
	if len(replicas) != 1 || net.JoinHostPort(replicas[0]["ip"], replicas[0]["port"]) != replica ||
		replicas[0]["flags"] != "slave" || replicas[0]["master-link-status"] != "ok" {
		return fmt.Errorf("sentinel %s knows the replicas %v, want %s linked", addr, replicas, replica)
	}
	sentinels, err := sc.Sentinels(ctx, f.Name).Result()
	if err != nil {
		return fmt.Errorf("sentinel %s: sentinels: %w", addr, err)
	}
	if len(sentinels) != 2 {
		return fmt.Errorf("sentinel %s knows %d other sentinels, want 2", addr, len(sentinels))
	}
	return nil
}

// startRedis starts redis-server on a free loopback port, in a directory of
// its own, with conf as its configuration file when not nil (a Sentinel's
// must be one it can rewrite) and args after it, and returns its address
// once it answers, and a function that SIGKILLs it and waits for its end.
// Its output goes to the test's log if the test fails; it is killed when
// the test ends.
func startRedis(t testing.TB, name string, conf []byte, args ...string) (addr string, kill func()) {
	t.Helper()
	dir := t.TempDir()
	for attempt := 1; ; attempt++ {
		port := freePort(t)
		argv := []string{"--port", strconv.Itoa(port), "--dir", dir}
		if conf != nil {
			file := filepath.Join(dir, "sentinel.conf")
			Must(t, os.WriteFile(file, conf, 0o600), "write "+file)
			argv = append([]string{file}, argv...)
		}
		cmd := exec.Command("redis-server", append(argv, args...)...)
		out := &Logs{}
		cmd.Stdout, cmd.Stderr = out, out
		Must(t, cmd.Start(), "start redis-server "+name)
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		kill := func() {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-exited
		}
		t.Cleanup(func() {
			kill()
			if t.Failed() {
				t.Logf("redis-server %s (%s):\n%s", name, dir, out)
			}
		})
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if err := waitPing(addr, cmd.Process.Pid, exited); err == nil {
			return addr, kill
		} else if attempt == 5 {
			t.Fatalf("redis-server %s did not start: %v\n%s", name, err, out)
		}
	}
}

// waitPing waits until the server at addr answers as the process pid (not
// another test's that took the port first), or exited is closed, or 10 s
// pass.
func waitPing(addr string, pid int, exited <-chan struct{}) error {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		info, err := rdb.Info(ctx, "server").Result()
		cancel()
		if err == nil && strings.Contains(info, fmt.Sprintf("process_id:%d\r\n", pid)) {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("%s is another process", addr)
		}
		select {
		case <-exited:
			return fmt.Errorf("it exited (%v)", err)
		default:
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Must(t, err, "find a free port")
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
