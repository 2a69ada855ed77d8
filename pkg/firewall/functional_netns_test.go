package firewall

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// dropTimeout is how long a dial that should be dropped waits for a SYN-ACK. Over
// veth the answer comes in well under a millisecond, so 1 s tells a drop apart.
// A dial that should connect or be refused gets passTimeout, so that a loaded
// test machine does not turn a slow answer into a false "dropped".
const (
	dropTimeout = time.Second
	passTimeout = 10 * time.Second
)

type dialResult int

const (
	connected dialResult = iota
	refused              // the kernel answered with RST
	timedOut             // nothing came back: the SYN was dropped
)

func (r dialResult) String() string {
	return [...]string{"connected", "refused", "timed out"}[r]
}

// dial connects from inside ns to dst, from local (may be invalid: any), with
// SO_REUSEADDR so a test can reuse a source port, and closes with RST so no
// TIME_WAIT is left behind.
func dial(t *testing.T, ns *netNS, local, dst netip.AddrPort, timeout time.Duration) dialResult {
	t.Helper()
	var res dialResult
	err := ns.do(func() error {
		d := net.Dialer{Timeout: timeout, Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) })
			return errors.Join(err, serr)
		}}
		if local.IsValid() {
			d.LocalAddr = net.TCPAddrFromAddrPort(local)
		}
		c, err := d.Dial("tcp4", dst.String())
		var ne net.Error
		switch {
		case err == nil:
			_ = c.(*net.TCPConn).SetLinger(0)
			_ = c.Close()
			res = connected
		case errors.Is(err, unix.ECONNREFUSED):
			res = refused
		case errors.As(err, &ne) && ne.Timeout():
			res = timedOut
		default:
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("dial %s from %s: %v", dst, local, err)
	}
	return res
}

// listen accepts and closes connections on addr inside ns until the test ends.
func listen(t *testing.T, ns *netNS, addr netip.AddrPort) {
	t.Helper()
	var ln net.Listener
	if err := ns.do(func() (err error) {
		ln, err = net.Listen("tcp4", addr.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
}

func expectDial(t *testing.T, ns *netNS, local, dst netip.AddrPort, want dialResult) {
	t.Helper()
	timeout := passTimeout
	if want == timedOut {
		timeout = dropTimeout
	}
	if got := dial(t, ns, local, dst, timeout); got != want {
		t.Errorf("dial %s from %s: %s, want %s", dst, local, got, want)
	}
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// sniffSYN opens an AF_PACKET socket on ifname inside ns and reports, on the
// returned channel, whether a SYN to dst arrived within the deadline. It shows
// that l4raw's socket still sees what the guard hides from the kernel.
func sniffSYN(t *testing.T, ns *netNS, ifname string, dst netip.AddrPort, deadline time.Duration) <-chan bool {
	t.Helper()
	var fd int
	if err := ns.do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
		if err != nil {
			return err
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index})
	}); err != nil {
		t.Fatalf("AF_PACKET socket on %s: %v", ifname, err)
	}
	seen := make(chan bool, 1)
	go func() {
		defer unix.Close(fd)
		buf := make([]byte, 65536+14) // a GRO frame is at most 64 KiB plus the Ethernet header
		end := time.Now().Add(deadline)
		for i := 0; i < 100000 && time.Now().Before(end); i++ {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue // EAGAIN after SO_RCVTIMEO: check the deadline
			}
			if isSYNTo(buf[:n], dst) {
				seen <- true
				return
			}
		}
		seen <- false
	}()
	return seen
}

// isSYNTo parses Ethernet + IPv4 + TCP (RFC 791, RFC 9293) just enough to spot a SYN.
func isSYNTo(f []byte, dst netip.AddrPort) bool {
	const eth = 14
	if len(f) < eth+20 || f[eth]>>4 != 4 || f[eth+9] != unix.IPPROTO_TCP {
		return false
	}
	ihl := int(f[eth]&0x0f) * 4
	tcp := f[eth+ihl:]
	if len(tcp) < 20 || netip.AddrFrom4([4]byte(f[eth+16:eth+20])) != dst.Addr() {
		return false
	}
	const syn, ack = 0x02, 0x10
	return binary.BigEndian.Uint16(tcp[2:4]) == dst.Port() && tcp[13]&(syn|ack) == syn
}

// installer puts a guard for spec into ns. drops reports the packets each rule
// dropped, in spec order; remove takes the guard away.
type installer func(t *testing.T, ns *netNS, spec Spec) (drops func() []uint64, remove func())

// installers are the two ways to guard a host: the Guard (nftables over netlink)
// and scripts/setup.sh (iptables). Both must behave the same.
var installers = []struct {
	name    string
	install installer
}{
	{"nftables", installGuard},
	{"setup.sh", installScript},
}

func installGuard(t *testing.T, ns *netNS, spec Spec) (func() []uint64, func()) {
	t.Helper()
	needNftNetlink(t)
	g, err := New(discard(), WithNetNS(ns.fd))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	if err := g.Apply(spec); err != nil {
		t.Fatal(err)
	}
	drops := func() []uint64 {
		c, err := g.Counters()
		if err != nil {
			t.Fatal(err)
		}
		var out []uint64
		for _, r := range c {
			out = append(out, r.Packets)
		}
		return out
	}
	return drops, func() {
		if err := g.Remove(); err != nil {
			t.Fatal(err)
		}
	}
}

func installScript(t *testing.T, ns *netNS, spec Spec) (func() []uint64, func()) {
	t.Helper()
	args := []string{"add"}
	for _, d := range spec.Dst {
		for _, p := range d.Ports {
			if p.Lo != p.Hi {
				t.Fatalf("setup.sh --vip takes single ports, not %v", p)
			}
			args = append(args, "--vip", netip.AddrPortFrom(d.Addr, p.Lo).String())
		}
	}
	for _, m := range spec.Src {
		args = append(args, "--dnat-backend", netip.AddrPortFrom(m.Addr, m.Port).String())
	}
	if code, out := runScript(t, ns, args...); code != 0 {
		t.Fatalf("setup.sh %v: exit %d\n%s", args, code, out)
	}
	counter := regexp.MustCompile(`^\[(\d+):\d+\] -A PREROUTING .*--comment l4raw `)
	drops := func() []uint64 {
		var out []uint64
		for _, l := range strings.Split(ns.exec(t, "iptables-save", "-c", "-t", "raw"), "\n") {
			if m := counter.FindStringSubmatch(l); m != nil {
				n, _ := strconv.ParseUint(m[1], 10, 64)
				out = append(out, n)
			}
		}
		return out
	}
	return drops, func() {
		if code, out := runScript(t, ns, "remove"); code != 0 {
			t.Fatalf("setup.sh remove: exit %d\n%s", code, out)
		}
	}
}

// TestGuardDropsSYN: a client namespace reaches a VIP in the guarded namespace
// over a veth pair. The guard must drop SYNs to guarded ports without a RST, leave
// other ports alone, and still show the SYNs to an AF_PACKET socket.
func TestGuardDropsSYN(t *testing.T) {
	needRoot(t, "iptables", "iptables-save", "bash")
	for _, in := range installers {
		t.Run(in.name, func(t *testing.T) {
			lb, cl := newNetNS(t), newNetNS(t)
			vethPair(t, lb, "l4lb", "198.18.5.1/24", cl, "l4cl", "198.18.5.2/24")
			lb.ip(t, "addr", "add", "198.18.5.100/24", "dev", "l4lb") // the VIP, local to lb

			vip := netip.MustParseAddr("198.18.5.100")
			guarded := netip.AddrPortFrom(vip, 8080)
			open := netip.AddrPortFrom(vip, 9090)
			closed := netip.AddrPortFrom(vip, 7005) // nobody listens: the kernel would RST
			listen(t, lb, guarded)
			listen(t, lb, open)

			var any netip.AddrPort
			expectDial(t, cl, any, guarded, connected)
			expectDial(t, cl, any, open, connected)
			expectDial(t, cl, any, closed, refused)

			drops, remove := in.install(t, lb, Spec{Dst: []DstMatch{{Addr: vip, Ports: []PortRange{{Lo: 8080, Hi: 8080}, {Lo: 7005, Hi: 7005}}}}})
			sniffed := sniffSYN(t, lb, "l4lb", guarded, 3*time.Second)
			expectDial(t, cl, any, guarded, timedOut)
			if !<-sniffed {
				t.Error("AF_PACKET did not see the SYN the guard dropped")
			}
			expectDial(t, cl, any, closed, timedOut) // no RST from the kernel
			expectDial(t, cl, any, open, connected)
			if d := drops(); len(d) != 2 || d[0] == 0 || d[1] == 0 {
				t.Errorf("dropped packets per rule %v: want drops on both rules", d)
			}

			remove()
			expectDial(t, cl, any, guarded, connected)
			expectDial(t, cl, any, closed, refused)
		})
	}
}

// TestGuardSrcMatch: a backend namespace sends TCP from its service port through
// the guarded namespace, which routes between backend and client. Segments from
// the backend's service port to a non-local address (an un-NATed DNAT reply) must
// be dropped; to the guarded host's own address (a health-check reply) and from
// other ports they must pass.
func TestGuardSrcMatch(t *testing.T) {
	needRoot(t, "iptables", "iptables-save", "bash", "sysctl")
	for _, in := range installers {
		t.Run(in.name, func(t *testing.T) {
			lb, be, cl := newNetNS(t), newNetNS(t), newNetNS(t)
			vethPair(t, lb, "l4be", "198.18.6.1/24", be, "l4lb", "198.18.6.2/24")
			vethPair(t, lb, "l4cl", "198.18.7.1/24", cl, "l4lb", "198.18.7.9/24")
			be.ip(t, "route", "add", "default", "via", "198.18.6.1")
			cl.ip(t, "route", "add", "default", "via", "198.18.7.1")
			lb.exec(t, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")

			client := netip.MustParseAddrPort("198.18.7.9:80")
			host := netip.MustParseAddrPort("198.18.6.1:81")
			listen(t, cl, client)
			listen(t, lb, host)
			fromService := netip.MustParseAddrPort("198.18.6.2:8080")
			fromOther := netip.MustParseAddrPort("198.18.6.2:8081")

			expectDial(t, be, fromService, client, connected)
			expectDial(t, be, fromService, host, connected)

			drops, remove := in.install(t, lb, Spec{Src: []SrcMatch{{Addr: fromService.Addr(), Port: fromService.Port()}}})
			expectDial(t, be, fromService, client, timedOut)
			expectDial(t, be, fromService, host, connected)
			expectDial(t, be, fromOther, client, connected)
			if d := drops(); len(d) != 1 || d[0] == 0 {
				t.Errorf("dropped packets per rule %v: want drops", d)
			}

			remove()
			expectDial(t, be, fromService, client, connected)
		})
	}
}

// The namespace helper itself must leave the test's thread where it was.
func TestDoKeepsCallerNamespace(t *testing.T) {
	needRoot(t)
	ns := newNetNS(t)
	before, err := netnsID()
	if err != nil {
		t.Fatal(err)
	}
	var inside string
	if err := ns.do(func() (err error) { inside, err = netnsID(); return err }); err != nil {
		t.Fatal(err)
	}
	after, err := netnsID()
	if err != nil {
		t.Fatal(err)
	}
	if inside == before || after != before {
		t.Fatalf("netns before %s, inside %s, after %s", before, inside, after)
	}
}

func netnsID() (string, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return "", err
	}
	return strconv.FormatUint(st.Ino, 10), nil
}
