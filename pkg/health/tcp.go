package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"
)

// TCPProber checks that a backend accepts TCP connections: a probe succeeds
// when the three-way handshake completes. The backend's kernel completes it
// for a listening socket whether or not the application calls accept, so a
// process that listens but has stopped accepting still passes (as with
// HAProxy's and keepalived's plain TCP checks); only a higher-level check can
// tell.
//
// A probe ends with a FIN, never a RST: the balancer host must send no RSTs
// of its own. It half-closes, reads and discards whatever the backend sent
// (closing with unread data makes the kernel send a RST, RFC 2525 §2.17, see
// tcp_close in net/ipv4/tcp.c) until the backend closes too or the probe's
// deadline passes, and only then closes. So a probe of a backend that
// neither closes nor sends takes the whole timeout, and still succeeds.
type TCPProber struct {
	// Dialer sets the source address or socket options (LocalAddr,
	// Control). The zero value lets the route choose. Its Timeout is
	// redundant: the probe's context bounds the probe.
	Dialer net.Dialer
}

var _ Prober = (*TCPProber)(nil)

// drainLimit bounds the wait for the backend's FIN when the context has no
// deadline (the Checker always sets one).
const drainLimit = time.Second

// Probe connects to addr and closes the connection. Errors read
// "connect: connection refused"; a deadline shows as context.DeadlineExceeded.
func (p *TCPProber) Probe(ctx context.Context, addr netip.AddrPort) error {
	conn, err := p.Dialer.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return connectError(ctx, err)
	}
	closeGracefully(ctx, conn)
	return nil
}

// connectError strips the "dial tcp A->B:" decoration: the Event already
// carries the address.
func connectError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("connect: %w", ctx.Err())
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		return fmt.Errorf("connect: %w", se.Err)
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return fmt.Errorf("connect: %w", oe.Err)
	}
	return fmt.Errorf("connect: %w", err)
}

func closeGracefully(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return
	}
	if tc.CloseWrite() != nil {
		return
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(drainLimit)
	}
	if tc.SetReadDeadline(deadline) != nil {
		return
	}
	// A cancelled probe (target removed, shutdown) stops waiting at once.
	stop := context.AfterFunc(ctx, func() { _ = tc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	_, _ = io.Copy(io.Discard, tc)
}
