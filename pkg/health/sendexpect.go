package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
)

// SendExpectProber checks that a backend answers a fixed request with a
// reply that starts with Expect, like HAProxy's `tcp-check send` / `expect
// string` pair and keepalived's MISC_CHECK scripts that do the same. With
// Send empty it only reads, which covers services that speak first (an
// SMTP or FTP "220" banner, an SSH "SSH-2.0-" greeting).
//
// The reply is whatever the backend sends first after the connection is
// up: a backend that greets before reading a request sends its greeting as
// the reply. The probe needs only the first len(Expect) bytes; it then
// closes as every prober does (FIN, drain until the backend's FIN or the
// deadline, close). A backend that never replies fails with a timeout.
//
// SendExpectProber is a comparable value: SetTargets keeps a target's loop
// when given an equal one.
type SendExpectProber struct {
	// Send is written once connected, as is (a line protocol wants its
	// "\r\n"); "" = send nothing and wait for the backend to speak.
	Send string
	// Expect is the prefix the reply must start with, compared byte for
	// byte. "" accepts any outcome once Send is written, so a probe with
	// neither is a TCPProber.
	Expect string
	// Dialer sets the source address or socket options; nil lets the route
	// choose.
	Dialer *net.Dialer
}

var _ Prober = SendExpectProber{}

// Probe connects to addr, writes Send and reads the reply. Errors read
// "send-expect: reply \"ERR\\r\\n\", want \"OK\"", "send-expect: connection
// closed before a reply", or "connect: connection refused"; no reply within
// the deadline shows as a timeout.
func (p SendExpectProber) Probe(ctx context.Context, addr netip.AddrPort) error {
	conn, err := dial(ctx, p.Dialer, addr)
	if err != nil {
		return err
	}
	defer conn.closeGracefully()
	if p.Send != "" {
		if _, err := io.WriteString(conn, p.Send); err != nil {
			return fmt.Errorf("send-expect: send: %w", bareError(err))
		}
	}
	return expectReply(conn, p.Expect)
}

// expectReply reads until the reply has shown whether it starts with want.
// It fails as soon as a byte differs, without waiting for the rest.
func expectReply(r io.Reader, want string) error {
	if want == "" {
		return nil
	}
	// Room for more than want, so that a wrong reply is shown with some
	// context.
	buf := make([]byte, max(len(want), maxShown))
	n := 0
	for n < len(want) {
		m, err := r.Read(buf[n:])
		n += m
		if k := min(n, len(want)); !bytes.Equal(buf[:k], []byte(want[:k])) {
			return fmt.Errorf("send-expect: reply %s, want %s", shown(buf[:n]), shown([]byte(want)))
		}
		if n >= len(want) {
			break
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF) && n == 0:
			return errors.New("send-expect: connection closed before a reply")
		case errors.Is(err, io.EOF):
			return fmt.Errorf("send-expect: reply %s ends early, want %s", shown(buf[:n]), shown([]byte(want)))
		case n == 0:
			return fmt.Errorf("send-expect: no reply: %w", bareError(err))
		default:
			return fmt.Errorf("send-expect: reply %s cut short: %w", shown(buf[:n]), bareError(err))
		}
	}
	return nil
}
