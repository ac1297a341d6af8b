package testenv

import (
	"fmt"
	"syscall"
	"testing"
)

// RefusedAddr returns a loopback address where every connection is
// refused, for as long as t runs: its port is bound by a socket that never
// listens, so no other test can be handed it (a port found free and
// released can be, and then something answers there).
func RefusedAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	Must(t, err, "socket")
	t.Cleanup(func() { _ = syscall.Close(fd) })
	Must(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}), "bind a port")
	sa, err := syscall.Getsockname(fd)
	Must(t, err, "the bound port")
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}
