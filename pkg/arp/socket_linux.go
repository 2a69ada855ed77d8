//go:build linux

package arp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Socket is an AF_PACKET socket that receives the ARP frames Filter passes
// for one address on one interface and sends whole Ethernet frames there.
// It satisfies Conn and net.PacketConn; it waits on the Go runtime's poller,
// so deadlines work and Close ends a blocked ReadFrom.
type Socket struct {
	f       *os.File
	rc      syscall.RawConn
	ifindex int
	local   *Addr
	closed  atomic.Bool
}

var (
	_ Conn           = (*Socket)(nil)
	_ net.PacketConn = (*Socket)(nil)
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (s *Socket) opErr(op string, err error) error {
	if s.closed.Load() {
		err = net.ErrClosed
	}
	return &net.OpError{Op: op, Net: fmt.Sprintf("packet/if%d", s.ifindex), Err: err}
}

// Listen opens a Socket on interface ifindex for the ARP traffic about ip.
// It needs CAP_NET_RAW, and nothing more.
//
// The order matters: socket(2) gets protocol 0 so that nothing is queued
// until bind(2) names ETH_P_ARP and the interface, and the filter is
// attached before that bind; otherwise unfiltered frames from every
// interface would queue up in between.
func Listen(ifindex int, ip netip.Addr) (*Socket, error) {
	if ifindex <= 0 {
		// Index 0 would bind to every interface.
		return nil, fmt.Errorf("arp: listen on interface index %d: invalid index", ifindex)
	}
	prog, err := Filter(ip)
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("arp: listen on if%d: assemble filter: %w", ifindex, err)
	}
	filt := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filt[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("arp: listen on if%d: socket: %w", ifindex, err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(filt)), Filter: &filt[0]}); err != nil {
		return nil, fmt.Errorf("arp: listen on if%d: attach filter: %w", ifindex, err)
	}
	// Saves cloning every frame this host sends on the interface only to
	// have the filter drop it; kernels before 4.20 lack the option and
	// the filter alone does the job there.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil && !errors.Is(err, unix.ENOPROTOOPT) {
		return nil, fmt.Errorf("arp: listen on if%d: PACKET_IGNORE_OUTGOING: %w", ifindex, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifindex}); err != nil {
		return nil, fmt.Errorf("arp: listen on if%d: bind: %w", ifindex, err)
	}
	s := &Socket{ifindex: ifindex, local: &Addr{}}
	// getsockname(2) on a bound packet socket reports the interface's
	// hardware address.
	if sa, err := unix.Getsockname(fd); err == nil {
		if ll, isLL := sa.(*unix.SockaddrLinklayer); isLL {
			s.local.HardwareAddr = net.HardwareAddr(append([]byte(nil), ll.Addr[:min(int(ll.Halen), len(ll.Addr))]...))
		}
	}
	s.f = os.NewFile(uintptr(fd), fmt.Sprintf("packet-arp-if%d", ifindex))
	ok = true // the file owns fd now
	if s.rc, err = s.f.SyscallConn(); err != nil {
		s.f.Close()
		return nil, fmt.Errorf("arp: listen on if%d: %w", ifindex, err)
	}
	return s, nil
}

// ReadFrom reads one frame into b; a frame longer than b is cut to len(b).
// from is the frame's source MAC as an *Addr.
func (s *Socket) ReadFrom(b []byte) (int, net.Addr, error) {
	var (
		n    int
		from unix.Sockaddr
		rerr error
	)
	err := s.rc.Read(func(fd uintptr) bool {
		n, from, rerr = unix.Recvfrom(int(fd), b, 0)
		return rerr != unix.EAGAIN && rerr != unix.EINTR
	})
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, nil, err
		}
		return 0, nil, s.opErr("read", err)
	}
	if rerr != nil {
		return 0, nil, s.opErr("recvfrom", rerr)
	}
	a := &Addr{}
	if ll, isLL := from.(*unix.SockaddrLinklayer); isLL {
		a.HardwareAddr = net.HardwareAddr(append([]byte(nil), ll.Addr[:min(int(ll.Halen), len(ll.Addr))]...))
	}
	return n, a, nil
}

// WriteTo sends b, a whole Ethernet frame, on the socket's interface. to
// may be nil or an *Addr naming the destination MAC; the frame's own
// header decides where it goes.
func (s *Socket) WriteTo(b []byte, to net.Addr) (int, error) {
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: s.ifindex}
	switch a := to.(type) {
	case nil:
	case *Addr:
		if len(a.HardwareAddr) > len(sa.Addr) {
			return 0, s.opErr("write", fmt.Errorf("address %v: too long", a.HardwareAddr))
		}
		sa.Halen = uint8(copy(sa.Addr[:], a.HardwareAddr))
	default:
		return 0, s.opErr("write", fmt.Errorf("address %v (%T): not a packet address", to, to))
	}
	var werr error
	err := s.rc.Write(func(fd uintptr) bool {
		werr = unix.Sendto(int(fd), b, 0, sa)
		return werr != unix.EAGAIN && werr != unix.EINTR
	})
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, err
		}
		return 0, s.opErr("write", err)
	}
	if werr != nil {
		return 0, s.opErr("sendto", werr)
	}
	return len(b), nil
}

// Close closes the socket; a ReadFrom waiting on it returns an error
// matching net.ErrClosed.
func (s *Socket) Close() error {
	if s.closed.Swap(true) {
		return s.opErr("close", net.ErrClosed)
	}
	return s.f.Close()
}

// LocalAddr returns the interface's MAC as an *Addr.
func (s *Socket) LocalAddr() net.Addr { return s.local }

// SetDeadline sets both the read and the write deadline.
func (s *Socket) SetDeadline(t time.Time) error { return s.f.SetDeadline(t) }

// SetReadDeadline makes a waiting or later ReadFrom return an error
// matching os.ErrDeadlineExceeded once t has passed.
func (s *Socket) SetReadDeadline(t time.Time) error { return s.f.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline for WriteTo.
func (s *Socket) SetWriteDeadline(t time.Time) error { return s.f.SetWriteDeadline(t) }
