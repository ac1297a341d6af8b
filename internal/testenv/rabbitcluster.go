package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

// RabbitCluster is a RabbitMQ cluster of its own for one test: nodes
// beside the machine's RabbitMQ, each with its own name, AMQP and
// distribution ports and data directory, sharing the rabbitmq user's
// Erlang cookie, joined with rabbitmqctl join_cluster.
type RabbitCluster struct {
	Nodes []*RabbitNode
	VHost string // created on the cluster, the guest user allowed

	base string
}

// RabbitNode is one node of a RabbitCluster.
type RabbitNode struct {
	Name string // shoptestXXXX@localhost
	Port int    // AMQP, on 127.0.0.1
	dir  string
	env  []string

	mu      sync.Mutex
	running bool
}

// StartRabbitCluster starts a cluster of n nodes and a vhost on it, and
// stops and removes every node when t ends. It skips t when
// rabbitmq-server is not installed.
func StartRabbitCluster(t testing.TB, n int) *RabbitCluster {
	t.Helper()
	if _, err := exec.LookPath("rabbitmq-server"); err != nil {
		t.Skip("rabbitmq-server is not installed: no RabbitMQ cluster to test against")
	}
	// Not t.TempDir(): the nodes run as the rabbitmq user, which must
	// reach their directories.
	base, err := os.MkdirTemp("", "shop-rabbit-cluster-")
	Must(t, err, "cluster directory")
	Must(t, os.Chmod(base, 0o755), "chmod cluster directory")
	c := &RabbitCluster{base: base, VHost: "shop"}
	t.Cleanup(func() {
		for _, node := range c.Nodes {
			node.stop(t)
		}
		_ = os.RemoveAll(base)
	})
	id := strings.ReplaceAll(uuid.NewString(), "-", "")[:8]
	for i := range n {
		node := &RabbitNode{Name: fmt.Sprintf("shoptest%s%d@localhost", id, i+1), Port: freePort(t), dir: filepath.Join(base, strconv.Itoa(i+1))}
		dist := freePort(t)
		for _, d := range []string{"mnesia", "log"} {
			Must(t, os.MkdirAll(filepath.Join(node.dir, d), 0o755), "node directory")
		}
		Must(t, os.WriteFile(filepath.Join(node.dir, "rabbitmq.conf"), fmt.Appendf(nil, "listeners.tcp.local = 127.0.0.1:%d\n", node.Port), 0o644), "node config")
		// No plugins: the machine's enables the management UI, whose port
		// its own node holds.
		Must(t, os.WriteFile(filepath.Join(node.dir, "enabled_plugins"), []byte("[].\n"), 0o644), "node plugins")
		node.env = append(os.Environ(),
			"RABBITMQ_NODENAME="+node.Name,
			"RABBITMQ_NODE_PORT="+strconv.Itoa(node.Port),
			"RABBITMQ_DIST_PORT="+strconv.Itoa(dist),
			"RABBITMQ_CONFIG_FILE="+filepath.Join(node.dir, "rabbitmq.conf"),
			"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(node.dir, "enabled_plugins"),
			"RABBITMQ_MNESIA_BASE="+filepath.Join(node.dir, "mnesia"),
			"RABBITMQ_LOG_BASE="+filepath.Join(node.dir, "log"),
			"RABBITMQ_PID_FILE="+filepath.Join(node.dir, "pid"),
		)
		c.Nodes = append(c.Nodes, node)
	}
	if out, err := exec.Command("chown", "-R", "rabbitmq:rabbitmq", base).CombinedOutput(); err != nil {
		t.Fatalf("chown %s to rabbitmq: %v\n%s", base, err, out)
	}
	var wg sync.WaitGroup
	for _, node := range c.Nodes {
		wg.Go(func() { node.Start(t) })
	}
	wg.Wait()
	first := c.Nodes[0]
	for _, node := range c.Nodes[1:] {
		node.ctl(t, "stop_app")
		node.ctl(t, "join_cluster", first.Name)
		node.ctl(t, "start_app")
	}
	first.ctl(t, "add_vhost", c.VHost)
	first.ctl(t, "set_permissions", "-p", c.VHost, "guest", ".*", ".*", ".*")
	return c
}

// URLs are the AMQP URLs of the cluster's nodes, in order, comma-separated:
// an AMQP_URL for shop.
func (c *RabbitCluster) URLs() string {
	urls := make([]string, len(c.Nodes))
	for i, node := range c.Nodes {
		urls[i] = node.URL(c.VHost)
	}
	return strings.Join(urls, ",")
}

// Queues returns, for each quorum queue of the cluster's vhost, its leader
// and the nodes that hold a replica, asking a node that runs.
func (c *RabbitCluster) Queues(t testing.TB) map[string]QueueReplicas {
	t.Helper()
	for _, node := range c.Nodes {
		if !node.Running() {
			continue
		}
		out := node.ctl(t, "list_queues", "-p", c.VHost, "-q", "--formatter", "json", "name", "leader", "members")
		var rows []struct {
			Name    string   `json:"name"`
			Leader  string   `json:"leader"`
			Members []string `json:"members"`
		}
		Must(t, json.Unmarshal([]byte(out), &rows), "parse list_queues")
		queues := map[string]QueueReplicas{}
		for _, r := range rows {
			queues[r.Name] = QueueReplicas{Leader: r.Leader, Members: r.Members}
		}
		return queues
	}
	t.Fatal("no node of the cluster is running")
	return nil
}

// Messages returns how many messages each queue of the cluster's vhost
// holds, ready and unacknowledged, asking a node that runs.
func (c *RabbitCluster) Messages(t testing.TB) map[string]int {
	t.Helper()
	for _, node := range c.Nodes {
		if !node.Running() {
			continue
		}
		out := node.ctl(t, "list_queues", "-p", c.VHost, "-q", "--formatter", "json", "name", "messages")
		var rows []struct {
			Name     string `json:"name"`
			Messages int    `json:"messages"`
		}
		Must(t, json.Unmarshal([]byte(out), &rows), "parse list_queues")
		counts := map[string]int{}
		for _, r := range rows {
			counts[r.Name] = r.Messages
		}
		return counts
	}
	t.Fatal("no node of the cluster is running")
	return nil
}

// QueueReplicas is where a quorum queue lives in a cluster.
type QueueReplicas struct {
	Leader  string
	Members []string
}

// Leaders counts, per node name, the quorum queues of the cluster's vhost
// whose leader it is.
func (c *RabbitCluster) Leaders(t testing.TB) map[string]int {
	t.Helper()
	leaders := map[string]int{}
	for _, q := range c.Queues(t) {
		leaders[q.Leader]++
	}
	return leaders
}

// Node returns the node called name.
func (c *RabbitCluster) Node(t testing.TB, name string) *RabbitNode {
	t.Helper()
	for _, node := range c.Nodes {
		if node.Name == name {
			return node
		}
	}
	t.Fatalf("no node %s in the cluster", name)
	return nil
}

// URL is the node's AMQP URL for vhost, as guest.
func (n *RabbitNode) URL(vhost string) string {
	return (&url.URL{Scheme: "amqp", User: url.UserPassword("guest", "guest"), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(n.Port)), Path: "/" + vhost}).String()
}

// Running reports whether the node was started and not killed since.
func (n *RabbitNode) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.running
}

// Start starts the node (again) and waits until it runs.
func (n *RabbitNode) Start(t testing.TB) {
	t.Helper()
	_ = os.Remove(filepath.Join(n.dir, "pid"))
	cmd := exec.Command("rabbitmq-server", "-detached")
	cmd.Env = n.env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("start %s: %v\n%s", n.Name, err, out)
	}
	n.ctl(t, "wait", filepath.Join(n.dir, "pid"), "--timeout", "120")
	n.mu.Lock()
	n.running = true
	n.mu.Unlock()
}

// Kill SIGKILLs the node's Erlang VM, as a crash or a lost machine would.
func (n *RabbitNode) Kill(t testing.TB) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(n.dir, "pid"))
	Must(t, err, "read "+n.Name+"'s pid file")
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	Must(t, err, "parse "+n.Name+"'s pid")
	Must(t, syscall.Kill(pid, syscall.SIGKILL), "kill "+n.Name)
	for deadline := time.Now().Add(5 * time.Second); syscall.Kill(pid, 0) == nil && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond) // gone, or a zombie nobody reaps yet: dead either way
	}
	n.mu.Lock()
	n.running = false
	n.mu.Unlock()
}

func (n *RabbitNode) stop(t testing.TB) {
	if !n.Running() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "rabbitmqctl", "-n", n.Name, "stop")
	cmd.Env = n.env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Logf("stop %s: %v\n%s", n.Name, err, out)
	}
}

// ctl runs rabbitmqctl against the node.
func (n *RabbitNode) ctl(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "rabbitmqctl", append([]string{"-n", n.Name}, args...)...)
	cmd.Env = n.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl -n %s %s: %v\n%s", n.Name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
