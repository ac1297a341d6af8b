package testenv

import (
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// AMQPServerURL is the RabbitMQ server the tests use: TEST_AMQP_URL, by
// default the local server as guest.
func AMQPServerURL() string { return envOr("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/") }

// AMQPURL creates a RabbitMQ virtual host of t's own (rabbitmqctl
// add_vhost), lets the test user use it, and returns its URL. The vhost and
// everything in it are deleted when t ends.
func AMQPURL(t testing.TB) string {
	t.Helper()
	vhost := VHost(t)
	u, err := url.Parse(AMQPServerURL())
	if err != nil {
		t.Fatalf("parse TEST_AMQP_URL: %v", err)
	}
	u.Path = "/" + vhost
	return u.String()
}

// VHost creates a RabbitMQ virtual host of t's own and returns its name; it
// is deleted when t ends.
func VHost(t testing.TB) string {
	t.Helper()
	vhost := NewVHostName()
	CreateVHost(t, vhost)
	return vhost
}

// NewVHostName returns a fresh virtual host name, not created yet.
func NewVHostName() string {
	return "shop_test_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:16]
}

// CreateVHost creates vhost, lets the test user use it, and deletes it when
// t ends.
func CreateVHost(t testing.TB, vhost string) {
	t.Helper()
	NeedServices(t)
	u, err := url.Parse(AMQPServerURL())
	if err != nil {
		t.Fatalf("parse TEST_AMQP_URL: %v", err)
	}
	rabbitmqctl(t, "add_vhost", vhost)
	rabbitmqctl(t, "set_permissions", "-p", vhost, u.User.Username(), ".*", ".*", ".*")
	t.Cleanup(func() { DeleteVHost(t, vhost) })
}

// DeleteVHost deletes vhost and everything in it, as an operator might
// while shop runs; a vhost already gone is no error.
//
// On a loaded machine, deleting a vhost's quorum queues while clients
// reconnect to it can outlast one rabbitmqctl call (a CI run's took over a
// minute); the broker goes on deleting after the call gives up, so a call
// that fails or times out is followed by a look at whether the vhost is
// still there, and another call if it is, for up to vhostDeletion.
func DeleteVHost(t testing.TB, vhost string) {
	t.Helper()
	deadline := time.Now().Add(vhostDeletion)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), min(time.Minute, time.Until(deadline)))
		out, err := exec.CommandContext(ctx, "rabbitmqctl", "delete_vhost", vhost).CombinedOutput()
		cancel()
		if err == nil || strings.Contains(string(out), "does not exist") || strings.Contains(string(out), "not found") {
			return
		}
		exists, lerr := vhostExists(vhost)
		if lerr == nil && !exists {
			return
		}
		if time.Now().Add(time.Second).After(deadline) {
			t.Fatalf("rabbitmqctl delete_vhost %s: %v\n%s (still listed: %v, %v)", vhost, err, out, exists, lerr)
		}
		time.Sleep(time.Second)
	}
}

// vhostDeletion is how long DeleteVHost tries.
const vhostDeletion = 4 * time.Minute

// vhostExists reports whether rabbitmqctl list_vhosts lists vhost.
func vhostExists(vhost string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", "list_vhosts", "-q", "--no-table-headers", "name").CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("rabbitmqctl list_vhosts: %w: %s", err, out)
	}
	for line := range strings.Lines(string(out)) {
		if strings.TrimSpace(line) == vhost {
			return true, nil
		}
	}
	return false, nil
}

// CloseConnections closes every client connection to vhost, as a broker
// restart or a network cut would.
func CloseConnections(t testing.TB, vhost string) int {
	t.Helper()
	out := rabbitmqctl(t, "list_connections", "-q", "--no-table-headers", "pid", "vhost")
	closed := 0
	for line := range strings.Lines(out) {
		fields := strings.Fields(line)
		if len(fields) == 2 && fields[1] == vhost {
			rabbitmqctl(t, "close_connection", fields[0], "test closes the connection")
			closed++
		}
	}
	return closed
}

// SetPolicy applies a policy to vhost (rabbitmqctl set_policy --apply-to
// queues): definition is its JSON, e.g. {"max-length":0}. It is cleared
// with ClearPolicy, or goes with the vhost.
func SetPolicy(t testing.TB, vhost, name, pattern, definition string) {
	t.Helper()
	rabbitmqctl(t, "set_policy", "-p", vhost, "--apply-to", "queues", name, pattern, definition)
}

// ClearPolicy removes a policy SetPolicy applied.
func ClearPolicy(t testing.TB, vhost, name string) {
	t.Helper()
	rabbitmqctl(t, "clear_policy", "-p", vhost, name)
}

func rabbitmqctl(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Eventually retries check every 50 ms until it returns nil or timeout
// passes, then fails t with check's last error.
func Eventually(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(fmt.Errorf("not within %s: %w", timeout, err))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
