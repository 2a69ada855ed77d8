package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"
)

// noDeadlineLimit bounds a probe whose context has no deadline (the Checker
// always sets one): its exchange and its wait for the backend's FIN. It is
// DefaultTimeout, the limit the Checker would have set.
const noDeadlineLimit = DefaultTimeout

// probeConn is one probe's connection. Its deadline is the probe's, and the
// end of the probe's context moves it into the past, so every read and
// write returns once the probe is over.
type probeConn struct {
	*net.TCPConn
	stop func() bool
}

// dial connects to addr with d (nil: the zero Dialer, so the kernel picks
// the source address and port) and arms the connection's deadline from ctx.
// Errors read "connect: connection refused"; a context that ends first
// shows as "connect: context deadline exceeded".
func dial(ctx context.Context, d *net.Dialer, addr netip.AddrPort) (*probeConn, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, connectError(ctx, err)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		// A Dialer only returns something else for a network other than
		// tcp; close what we got rather than guess how.
		c.Close()
		return nil, fmt.Errorf("connect: %T is not a TCP connection", c)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(noDeadlineLimit)
	}
	if err := tc.SetDeadline(deadline); err != nil {
		tc.Close()
		return nil, fmt.Errorf("connect: set deadline: %w", err)
	}
	// A cancelled probe (target removed, shutdown) stops at once.
	stop := context.AfterFunc(ctx, func() { _ = tc.SetDeadline(time.Unix(1, 0)) })
	return &probeConn{TCPConn: tc, stop: stop}, nil
}

// closeGracefully ends the connection with a FIN: it half-closes, reads and
// discards what the backend still sends until the backend's FIN or the
// probe's deadline, and only then closes, so that no unread data makes the
// kernel send a RST (see the package comment).
func (c *probeConn) closeGracefully() {
	defer c.stop()
	defer c.Close()
	if c.CloseWrite() != nil {
		return
	}
	_, _ = io.Copy(io.Discard, c.TCPConn)
}

// connectError strips the "dial tcp A->B:" decoration: the Event already
// carries the address.
func connectError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("connect: %w", ctx.Err())
	}
	return fmt.Errorf("connect: %w", bareError(err))
}

// bareError strips *net.OpError and *os.SyscallError from err, keeping what
// the kernel or the runtime said ("connection reset by peer", "i/o
// timeout"). Timeouts stay timeouts: the Checker turns them into "timeout
// after 1s".
func bareError(err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// maxShown bounds how much of a backend's reply an error repeats: enough to
// recognise a protocol ("SSH-2.0-OpenSSH_9.2p1", an HTML error page's first
// line), short enough for one log line.
const maxShown = 64

// shown quotes b for an error message, cut to maxShown bytes.
func shown(b []byte) string {
	if len(b) > maxShown {
		return strconv.Quote(string(b[:maxShown])) + "..."
	}
	return strconv.Quote(string(b))
}
