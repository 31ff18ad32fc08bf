package testenv

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"
)

// FreePort returns a TCP port of 127.0.0.1 that nothing listened on a
// moment ago, for a test server.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitListening waits until something accepts connections on port of
// 127.0.0.1, or done is closed (the server exited), or a minute passes.
func WaitListening(port int, done <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("server exited before listening on %s", addr)
		case <-ctx.Done():
			return fmt.Errorf("nothing listens on %s after a minute: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
