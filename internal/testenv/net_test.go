package testenv_test

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/shopdev/shop/internal/testenv"
)

// TestRefusedAddrRefuses: a connection to RefusedAddr is refused, and no
// listener can take its port while the test runs.
func TestRefusedAddrRefuses(t *testing.T) {
	t.Parallel()
	addr := testenv.RefusedAddr(t)
	if _, err := net.DialTimeout("tcp", addr, time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s = %v, want connection refused", addr, err)
	}
	if l, err := net.Listen("tcp", addr); err == nil {
		_ = l.Close()
		t.Fatalf("a listener took %s", addr)
	}
}
