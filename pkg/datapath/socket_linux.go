//go:build linux

package datapath

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

const (
	// FrameBufSize holds the largest frame AF_PACKET delivers with the
	// default GSO/GRO limit: a 65,535-byte IP datagram, its Ethernet header
	// and the virtio-net header (65,559 bytes; 65,226 were seen on veth),
	// rounded up to a multiple of 64.
	FrameBufSize = 65600
	// DefaultBatch is the batch size for recvmmsg/sendmmsg (measured best
	// trade-off: 2.8 times the per-frame bulk rate).
	DefaultBatch = 32
	// rcvBuf and sndBuf are the socket buffer sizes. The default 208 KiB
	// holds only three 64 KiB GSO frames, far too few for a burst.
	rcvBuf = 16 << 20
	sndBuf = 4 << 20
)

// ErrNotSupported is returned when the kernel lacks a required feature.
var ErrNotSupported = errors.New("not supported")

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Options tune a receive socket.
type Options struct {
	// FanoutID, if non-zero, joins the socket to a PACKET_FANOUT hash group
	// with this identifier: the kernel spreads flows over the group's
	// sockets.
	FanoutID uint16
}

// RxSocket receives the frames its filter accepts on one interface.
type RxSocket struct {
	f       *os.File
	rc      syscall.RawConn
	ifindex int
	hdrs    []unix.Mmsghdr
	iovs    []unix.Iovec
	bound   [][]byte // the buffers the headers point at
	closed  atomic.Bool

	Truncated atomic.Uint64 // frames larger than the buffer: dropped
	kernel    struct{ packets, drops atomic.Uint64 }
}

func opErr(op string, ifindex int, err error) error {
	return &net.OpError{Op: op, Net: fmt.Sprintf("packet/if%d", ifindex), Err: err}
}

func newFD() (int, error) {
	// Protocol 0: the socket receives nothing until bind names one, after
	// the filter is in place.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.ENOPROTOOPT) || errors.Is(err, unix.EINVAL) {
			return -1, fmt.Errorf("PACKET_VNET_HDR: %w", ErrNotSupported)
		}
		return -1, fmt.Errorf("PACKET_VNET_HDR: %w", err)
	}
	return fd, nil
}

// ListenRx opens a receive socket on interface ifindex with filter prog.
func ListenRx(ifindex int, prog []bpf.Instruction, opt Options) (*RxSocket, error) {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, opErr("listen", ifindex, fmt.Errorf("assemble filter: %w", err))
	}
	fd, err := newFD()
	if err != nil {
		return nil, opErr("listen", ifindex, err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if err := attachFilter(fd, raw); err != nil {
		return nil, opErr("attach filter", ifindex, err)
	}
	// Our own transmissions are not input.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return nil, opErr("PACKET_IGNORE_OUTGOING", ifindex, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex}); err != nil {
		return nil, opErr("bind", ifindex, err)
	}
	if opt.FanoutID != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, int(opt.FanoutID)|unix.PACKET_FANOUT_HASH<<16); err != nil {
			return nil, opErr("PACKET_FANOUT", ifindex, err)
		}
	}
	f := os.NewFile(uintptr(fd), fmt.Sprintf("packet-rx-if%d", ifindex))
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		ok = true
		return nil, opErr("listen", ifindex, err)
	}
	ok = true
	return &RxSocket{f: f, rc: rc, ifindex: ifindex}, nil
}

func attachFilter(fd int, raw []bpf.RawInstruction) error {
	filt := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filt[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(filt)), Filter: &filt[0]})
}

// SetFilter replaces the socket's filter. The kernel swaps it atomically:
// every frame meets the old program or the new one, none goes unfiltered.
func (s *RxSocket) SetFilter(prog []bpf.Instruction) error {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return opErr("set filter", s.ifindex, fmt.Errorf("assemble filter: %w", err))
	}
	var serr error
	if err := s.rc.Control(func(fd uintptr) { serr = attachFilter(int(fd), raw) }); err != nil {
		return opErr("set filter", s.ifindex, err)
	}
	if serr != nil {
		return opErr("set filter", s.ifindex, serr)
	}
	return nil
}

// Ifindex returns the interface the socket receives on.
func (s *RxSocket) Ifindex() int { return s.ifindex }

// Close closes the socket; a RecvBatch waiting on it returns net.ErrClosed.
func (s *RxSocket) Close() error {
	s.closed.Store(true)
	return s.f.Close()
}

func (s *RxSocket) setup(bufs [][]byte) {
	if len(s.hdrs) == len(bufs) && len(bufs) > 0 && &s.bound[0][0] == &bufs[0][0] {
		return
	}
	s.hdrs = make([]unix.Mmsghdr, len(bufs))
	s.iovs = make([]unix.Iovec, len(bufs))
	s.bound = bufs
	for i := range bufs {
		s.iovs[i].Base = &bufs[i][0]
		s.iovs[i].SetLen(len(bufs[i]))
		s.hdrs[i].Hdr.Iov = &s.iovs[i]
		s.hdrs[i].Hdr.SetIovlen(1)
	}
}

// RecvBatch waits for frames and receives up to len(bufs) of them with one
// recvmmsg. sizes[i] is the length of the frame in bufs[i] (virtio-net
// header included); a frame that did not fit is counted in Truncated and
// has size 0. The caller must pass the same buffers every time: the
// message headers are built once.
func (s *RxSocket) RecvBatch(bufs [][]byte, sizes []int) (int, error) {
	s.setup(bufs)
	var n int
	var errno syscall.Errno
	err := s.rc.Read(func(fd uintptr) bool {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(len(s.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN || e == unix.EINTR {
			return false
		}
		n, errno = int(r), e
		return true
	})
	if err != nil {
		// RawConn.Read reports a closed file as "use of closed file",
		// which is neither os.ErrClosed nor net.ErrClosed.
		if s.closed.Load() {
			return 0, net.ErrClosed
		}
		return 0, opErr("recvmmsg", s.ifindex, err)
	}
	if errno != 0 {
		return 0, opErr("recvmmsg", s.ifindex, errno)
	}
	for i := 0; i < n; i++ {
		sizes[i] = int(s.hdrs[i].Len)
		if s.hdrs[i].Hdr.Flags&unix.MSG_TRUNC != 0 {
			sizes[i] = 0
			s.Truncated.Add(1)
		}
	}
	return n, nil
}

// KernelStats returns the frames the kernel queued to the socket and those
// it dropped because the socket's buffer was full, since it was opened.
// PACKET_STATISTICS resets on every read, so the socket accumulates.
func (s *RxSocket) KernelStats() (packets, drops uint64, err error) {
	var st *unix.TpacketStats
	cerr := s.rc.Control(func(fd uintptr) {
		st, err = unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS)
	})
	if cerr != nil {
		return 0, 0, cerr
	}
	if err != nil {
		return 0, 0, opErr("PACKET_STATISTICS", s.ifindex, err)
	}
	return s.kernel.packets.Add(uint64(st.Packets)), s.kernel.drops.Add(uint64(st.Drops)), nil
}

// TxSocket sends frames on any interface: it is never bound, each message
// names its interface.
type TxSocket struct {
	f      *os.File
	rc     syscall.RawConn
	hdrs   []unix.Mmsghdr
	iovs   []unix.Iovec
	names  []unix.RawSockaddrLinklayer
	closed atomic.Bool

	Errors atomic.Uint64 // frames the kernel refused (counted, dropped)
}

// ListenTx opens a send socket.
func ListenTx() (*TxSocket, error) {
	fd, err := newFD()
	if err != nil {
		return nil, opErr("listen", 0, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndBuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sndBuf)
	}
	f := os.NewFile(uintptr(fd), "packet-tx")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, opErr("listen", 0, err)
	}
	return &TxSocket{f: f, rc: rc}, nil
}

// Close closes the socket; a SendBatch on it returns net.ErrClosed.
func (s *TxSocket) Close() error {
	s.closed.Store(true)
	return s.f.Close()
}

// SendBatch sends bufs[i][:sizes[i]] on interface ifs[i] for every i with
// sizes[i] > 0, in as few sendmmsg calls as it can, waiting while the socket
// buffer is full. Frames the kernel refuses (an interface gone down, a
// frame too large for it) are counted in Errors and skipped. It returns the
// number of frames sent.
func (s *TxSocket) SendBatch(bufs [][]byte, sizes []int, ifs []int) (int, error) {
	if len(s.hdrs) < len(bufs) {
		s.hdrs = make([]unix.Mmsghdr, len(bufs))
		s.iovs = make([]unix.Iovec, len(bufs))
		s.names = make([]unix.RawSockaddrLinklayer, len(bufs))
	}
	m := 0
	for i := range bufs {
		if sizes[i] <= 0 {
			continue
		}
		s.iovs[m].Base = &bufs[i][0]
		s.iovs[m].SetLen(sizes[i])
		s.names[m] = unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Protocol: htons(unix.ETH_P_IP), Ifindex: int32(ifs[i]), Halen: 6}
		h := &s.hdrs[m].Hdr
		h.Iov = &s.iovs[m]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&s.names[m]))
		h.Namelen = unix.SizeofSockaddrLinklayer
		m++
	}
	sent, refused := 0, 0
	for sent < m {
		var n int
		var errno syscall.Errno
		err := s.rc.Write(func(fd uintptr) bool {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[sent])), uintptr(m-sent), unix.MSG_DONTWAIT, 0, 0)
			if e == unix.EAGAIN || e == unix.EINTR {
				return false
			}
			n, errno = int(r), e
			return true
		})
		if err != nil {
			if s.closed.Load() {
				return sent - refused, net.ErrClosed
			}
			return sent - refused, opErr("sendmmsg", 0, err)
		}
		if errno != 0 {
			// The first remaining frame was refused: count it, go on.
			s.Errors.Add(1)
			sent++
			refused++
			continue
		}
		sent += n
	}
	return sent - refused, nil
}
