package outbox

import (
	"net"
	"sync"
)

// heldConn is the network connection under an amqp091 connection whose
// writes can be held back and sent together: amqp091 flushes every
// message it publishes in a write system call of its own, and a relay
// round publishes many. Between hold and release, writes (those of every
// channel of the connection, heartbeats included) only grow a buffer;
// release sends it in one write. A failed write closes the connection, so
// that amqp091 sees it lost and nothing waits for confirms of messages
// that never left.
type heldConn struct {
	net.Conn

	mu    sync.Mutex
	holds int
	buf   []byte
}

func (c *heldConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holds > 0 {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// hold makes the writes wait until release.
func (c *heldConn) hold() {
	c.mu.Lock()
	c.holds++
	c.mu.Unlock()
}

// release sends what waits, in one write. Writes are held again until
// every hold is released; what waits is sent at each release all the same,
// so that no round waits for another's.
func (c *heldConn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holds--
	if len(c.buf) == 0 {
		return
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	if err != nil {
		_ = c.Conn.Close()
	}
}
