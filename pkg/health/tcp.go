package health

import (
	"context"
	"net"
	"net/netip"
)

// TCPProber checks that a backend accepts TCP connections: a probe succeeds
// when the three-way handshake completes. The backend's kernel completes it
// for a listening socket whether or not the application calls accept, so a
// process that listens but has stopped accepting still passes (as with
// HAProxy's and keepalived's plain TCP checks); only a higher-level check
// (HTTPProber, SendExpectProber) can tell.
//
// A probe ends with a FIN, never a RST (see the package comment): it
// half-closes and discards whatever the backend sent until the backend
// closes too or the probe's deadline passes, and only then closes. So a
// probe of a backend that neither closes nor sends takes the whole timeout,
// and still succeeds.
type TCPProber struct {
	// Dialer sets the source address or socket options (LocalAddr,
	// Control). The zero value lets the route choose. Its Timeout is
	// redundant: the probe's context bounds the probe.
	Dialer net.Dialer
}

var _ Prober = (*TCPProber)(nil)

// Probe connects to addr and closes the connection. Errors read
// "connect: connection refused"; a deadline shows as context.DeadlineExceeded.
func (p *TCPProber) Probe(ctx context.Context, addr netip.AddrPort) error {
	conn, err := dial(ctx, &p.Dialer, addr)
	if err != nil {
		return err
	}
	conn.closeGracefully()
	return nil
}
