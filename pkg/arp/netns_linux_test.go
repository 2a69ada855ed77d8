//go:build linux

package arp_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/l4raw/l4raw/pkg/arp"
	"github.com/l4raw/l4raw/pkg/neigh"
)

// The tests below run against the real kernel on a LAN they build from
// network namespaces: a switch namespace holding a bridge (so that no host
// namespace's netfilter sees bridged frames), and one namespace per host,
// each with an eth0 plugged into the bridge:
//
//	a: eth0 198.18.5.1/24 ─┐
//	b: eth0 198.18.5.2/24 ─┼─ sw: br0
//	c: eth0 198.18.5.3/24 ─┘   (c also holds 198.18.5.100 where a test says so)
//
// Host a claims 198.18.5.100 without the address on any interface. They
// need root (CAP_SYS_ADMIN for `ip netns add` and setns, CAP_NET_ADMIN and
// CAP_NET_RAW) and iproute2; as root, a missing piece fails the test.

const netnsDir = "/run/netns/" // where `ip netns add` puts namespaces (iproute2's NETNS_RUN_DIR)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: CAP_SYS_ADMIN to create network namespaces, CAP_NET_ADMIN and CAP_NET_RAW for packet sockets in them")
	}
}

func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

type host struct {
	ns   string
	link neigh.Link
}

// newLAN builds the switch and one host per entry of addrs (name → its
// address with prefix), and removes them all when the test ends.
func newLAN(t *testing.T, addrs map[string]string) map[string]*host {
	t.Helper()
	requireRoot(t)
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	prefix := "l4t-arp-" + hex.EncodeToString(rnd[:]) + "-"
	addNS := func(name string) string {
		ns := prefix + name
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
		return ns
	}
	sw := addNS("sw")
	ipCmd(t, "-n", sw, "link", "add", "br0", "type", "bridge")
	ipCmd(t, "-n", sw, "link", "set", "br0", "up")
	hosts := make(map[string]*host)
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range addrs {
			if !yield(k) {
				return
			}
		}
	}) {
		ns := addNS(name)
		port := "p-" + name
		ipCmd(t, "-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		ipCmd(t, "-n", sw, "link", "set", port, "master", "br0")
		ipCmd(t, "-n", sw, "link", "set", port, "up")
		ipCmd(t, "-n", ns, "addr", "add", addrs[name], "dev", "eth0")
		ipCmd(t, "-n", ns, "link", "set", "eth0", "up")
		hosts[name] = &host{ns: ns, link: linkOf(t, ns, "eth0")}
	}
	for _, h := range hosts {
		waitCarrier(t, h)
	}
	return hosts
}

// waitCarrier waits for h's eth0 to have carrier, which a veth gets
// asynchronously after going up.
func waitCarrier(t *testing.T, h *host) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(ipCmd(t, "-n", h.ns, "link", "show", "dev", "eth0"), "LOWER_UP") {
		if time.Now().After(deadline) {
			t.Fatalf("%s: eth0 has no carrier 3 s after going up", h.ns)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func linkOf(t *testing.T, ns, dev string) neigh.Link {
	t.Helper()
	var links []struct {
		Ifindex int    `json:"ifindex"`
		Ifname  string `json:"ifname"`
		Address string `json:"address"`
		MTU     int    `json:"mtu"`
	}
	out := ipCmd(t, "-n", ns, "-j", "link", "show", "dev", dev)
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j link show dev %s in %s: %v: %s", dev, ns, err, out)
	}
	hw, err := net.ParseMAC(links[0].Address)
	if err != nil || len(hw) != 6 {
		t.Fatalf("%s in %s: address %q: %v", dev, ns, links[0].Address, err)
	}
	return neigh.Link{Index: links[0].Ifindex, Name: links[0].Ifname, MAC: [6]byte(hw), MTU: links[0].MTU, Up: true}
}

// inNetNS runs fn on an OS thread switched into namespace ns. Sockets
// opened there stay in ns for life, whichever thread uses them later.
func inNetNS(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// On failure the thread stays locked: it ends with this goroutine
		// and never runs other code in the wrong namespace.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(netnsDir + ns)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back from %s: %w", ns, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func listenIn(t *testing.T, h *host, ip netip.Addr) *arp.Socket {
	t.Helper()
	var s *arp.Socket
	if err := inNetNS(h.ns, func() (err error) {
		s, err = arp.Listen(h.link.Index, ip)
		return err
	}); err != nil {
		t.Fatalf("%s: %v", h.ns, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func claimOn(t *testing.T, h *host, ip netip.Addr, name string) *arp.Claim {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})).With("host", name)
	c, err := arp.NewClaim(listenIn(t, h, ip), h.link, ip, log, arp.WithTiming(fast()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type neighEntry struct {
	Dst    string   `json:"dst"`
	Lladdr string   `json:"lladdr"`
	State  []string `json:"state"`
}

func neighbour(t *testing.T, h *host, ip netip.Addr) (neighEntry, bool) {
	t.Helper()
	var es []neighEntry
	out := ipCmd(t, "-n", h.ns, "-j", "neigh", "show", ip.String(), "dev", "eth0")
	if err := json.Unmarshal([]byte(out), &es); err != nil {
		t.Fatalf("ip -j neigh show in %s: %v: %s", h.ns, err, out)
	}
	if len(es) == 0 {
		return neighEntry{}, false
	}
	return es[0], true
}

// resolve makes h's kernel ARP for ip (the NTF_USE request of `ip neigh
// replace ADDR dev IF use`) and waits up to wait for an entry with lladdr
// mac in state REACHABLE. It returns the last entry seen and how long it
// took.
func resolve(t *testing.T, h *host, ip netip.Addr, mac [6]byte, wait time.Duration) (neighEntry, time.Duration, bool) {
	t.Helper()
	start := time.Now()
	ipCmd(t, "-n", h.ns, "neigh", "replace", ip.String(), "dev", "eth0", "use")
	var e neighEntry
	for time.Since(start) < wait {
		var ok bool
		if e, ok = neighbour(t, h, ip); ok && e.Lladdr == macStr(mac) && slices.Contains(e.State, "REACHABLE") {
			return e, time.Since(start), true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return e, time.Since(start), false
}

func macStr(m [6]byte) string { return net.HardwareAddr(m[:]).String() }

func TestNetNSListenErrors(t *testing.T) {
	if _, err := arp.Listen(0, vip); err == nil || !strings.Contains(err.Error(), "interface index 0") {
		t.Errorf("Listen(0) = %v, want an invalid index error", err)
	}
	if _, err := arp.Listen(1, netip.MustParseAddr("2001:db8::1")); err == nil {
		t.Errorf("Listen(IPv6) succeeded")
	}
	lan := newLAN(t, map[string]string{"a": "198.18.5.1/24"})
	err := inNetNS(lan["a"].ns, func() error {
		s, err := arp.Listen(4242, vip) // no such interface in a fresh namespace
		if err == nil {
			s.Close()
		}
		return err
	})
	if !errors.Is(err, unix.ENODEV) || !strings.HasPrefix(err.Error(), "arp: listen on if4242: bind: ") {
		t.Errorf("Listen(4242) = %v, want ENODEV from bind", err)
	}
}

// TestNetNSClaim is the daemon's sequence on a real LAN: a probes (nobody
// has the address), serves and announces; b's kernel resolves the address
// to a's MAC; b probing for it hears a; b announcing it is a conflict a
// defends against; after a stops, nobody answers.
func TestNetNSClaim(t *testing.T) {
	lan := newLAN(t, map[string]string{"a": "198.18.5.1/24", "b": "198.18.5.2/24"})
	a, b := lan["a"], lan["b"]
	ca := claimOn(t, a, vip, "a")
	ctx := ctxT(t, 30*time.Second)

	if err := ca.Probe(ctx); err != nil {
		t.Fatalf("Probe on a free address = %v", err)
	}
	serveCtx, stopServe := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- ca.Serve(serveCtx) }()
	if err := ca.Announce(ctx); err != nil {
		t.Fatal(err)
	}
	if out := ipCmd(t, "-n", a.ns, "addr", "show"); strings.Contains(out, vip.String()) {
		t.Fatalf("a's kernel holds the VIP:\n%s", out)
	}

	e, took, ok := resolve(t, b, vip, a.link.MAC, 3*time.Second)
	if !ok {
		t.Fatalf("b's neighbour entry for %v: %+v after %v, want %s REACHABLE", vip, e, took, macStr(a.link.MAC))
	}
	t.Logf("b's kernel resolved %v to a's %s in %v (including the ip commands)", vip, e.Lladdr, took)

	// Reply latency as b sees it, through a's socket and back, bypassing
	// b's neighbour table: b sends requests on a packet socket of its own.
	measureReplies(t, b, a.link.MAC)

	// b probing for the address hears a's answer.
	cb := claimOn(t, b, vip, "b")
	var ce *arp.ConflictError
	if err := cb.Probe(ctx); !errors.As(err, &ce) || ce.MAC != a.link.MAC {
		t.Fatalf("b's Probe = %v, want a conflict with a (%s)", err, macStr(a.link.MAC))
	}
	// b announcing the address is a conflict for a, which defends once.
	if err := cb.Announce(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for ca.Stats.Conflicts.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if cf, d := ca.Stats.Conflicts.Load(), ca.Stats.Defences.Load(); cf != 2 || d != 1 {
		t.Errorf("a saw %d conflicts and defended %d times; want 2 (b's announcements) and 1", cf, d)
	}
	// a's defence put a back in b's neighbour table.
	if e, ok := neighbour(t, b, vip); !ok || e.Lladdr != macStr(a.link.MAC) {
		t.Errorf("b's entry after a's defence: %+v, want lladdr %s", e, macStr(a.link.MAC))
	}

	// The interface going down and up again does not end Serve.
	ipCmd(t, "-n", a.ns, "link", "set", "eth0", "down")
	ipCmd(t, "-n", a.ns, "link", "set", "eth0", "up")
	waitCarrier(t, a)
	ipCmd(t, "-n", b.ns, "neigh", "flush", "dev", "eth0")
	if e, took, ok := resolve(t, b, vip, a.link.MAC, 3*time.Second); !ok {
		t.Fatalf("after a's eth0 went down and up, b's entry: %+v after %v", e, took)
	}
	select {
	case err := <-served:
		t.Fatalf("Serve ended when the interface went down: %v", err)
	default:
	}

	// Once a stops serving, nobody answers for the address.
	stopServe()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve = %v, want nil after its context ended", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still running 5 s after its context ended")
	}
	replies := ca.Stats.Replies.Load()
	ipCmd(t, "-n", b.ns, "neigh", "flush", "dev", "eth0")
	// The kernel's replies come within milliseconds; 1 s of silence is
	// an absence (b retries its broadcast every second, mcast_solicit 3).
	if e, took, ok := resolve(t, b, vip, a.link.MAC, time.Second); ok {
		t.Fatalf("after Serve ended, b resolved %v to %+v in %v", vip, e, took)
	}
	if r := ca.Stats.Replies.Load(); r != replies {
		t.Errorf("a replied %d times after Serve ended", r-replies)
	}
}

// measureReplies sends requests for the VIP from b's own packet socket and
// logs how long a takes to answer.
func measureReplies(t *testing.T, b *host, aMAC [6]byte) {
	t.Helper()
	const n = 200
	s := listenIn(t, b, vip)
	req, err := (&arp.Packet{EthDst: bcast, EthSrc: b.link.MAC, Op: arp.OpRequest, SenderMAC: b.link.MAC,
		SenderIP: netip.MustParseAddr("198.18.5.2"), TargetIP: vip}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	rtts := make([]time.Duration, 0, n)
	buf := make([]byte, 128)
	for range n {
		start := time.Now()
		if _, err := s.WriteTo(req, &arp.Addr{HardwareAddr: net.HardwareAddr(bcast[:])}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetReadDeadline(start.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		for {
			k, from, err := s.ReadFrom(buf)
			if err != nil {
				t.Fatalf("no reply within 1 s: %v", err)
			}
			p, err := arp.Parse(buf[:k])
			if err == nil && p.Op == arp.OpReply && p.SenderIP == vip && p.SenderMAC == aMAC && p.TargetMAC == b.link.MAC {
				if fa, ok := from.(*arp.Addr); !ok || !slices.Equal(fa.HardwareAddr, aMAC[:]) {
					t.Fatalf("reply from %v, want %s", from, macStr(aMAC))
				}
				break
			}
		}
		rtts = append(rtts, time.Since(start))
	}
	slices.Sort(rtts)
	t.Logf("ARP request → reply through the bridge, %d requests: median %v, p99 %v, max %v",
		n, rtts[n/2], rtts[n*99/100], rtts[n-1])
}

// TestNetNSAnnounceUpdatesNeighbours: a host that remembers another MAC for
// the address (an old owner, a previous l4raw host) switches to ours on the
// gratuitous ARP alone, without asking.
func TestNetNSAnnounceUpdatesNeighbours(t *testing.T) {
	lan := newLAN(t, map[string]string{"a": "198.18.5.1/24", "b": "198.18.5.2/24"})
	a, b := lan["a"], lan["b"]
	const oldOwner = "02:00:00:00:00:99"
	ipCmd(t, "-n", b.ns, "neigh", "add", vip.String(), "lladdr", oldOwner, "dev", "eth0", "nud", "stale")
	if e, ok := neighbour(t, b, vip); !ok || e.Lladdr != oldOwner {
		t.Fatalf("b's entry before: %+v", e)
	}
	ca := claimOn(t, a, vip, "a")
	if err := ca.Announce(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		e, ok := neighbour(t, b, vip)
		if ok && e.Lladdr == macStr(a.link.MAC) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b's entry 2 s after a's announcement: %+v, want lladdr %s", e, macStr(a.link.MAC))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestNetNSProbeConflict: c already uses the address; a's probe is answered
// by c's kernel and a must not claim it.
func TestNetNSProbeConflict(t *testing.T) {
	lan := newLAN(t, map[string]string{"a": "198.18.5.1/24", "b": "198.18.5.2/24", "c": "198.18.5.3/24"})
	a, c := lan["a"], lan["c"]
	ipCmd(t, "-n", c.ns, "addr", "add", vip.String()+"/24", "dev", "eth0")
	ca := claimOn(t, a, vip, "a")
	start := time.Now()
	err := ca.Probe(ctxT(t, 10*time.Second))
	var ce *arp.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("Probe = %v, want a *ConflictError", err)
	}
	if ce.MAC != c.link.MAC || ce.Probing || ce.IP != vip || ce.Interface != "eth0" {
		t.Fatalf("ConflictError = %+v, want c's MAC %s", ce, macStr(c.link.MAC))
	}
	t.Logf("conflict found in %v: %v", time.Since(start), err)
}

// TestNetNSSocket checks the promises Conn makes on a real socket: read
// deadlines time out, Close wakes a blocked reader with net.ErrClosed, and
// LocalAddr is the interface's MAC.
func TestNetNSSocket(t *testing.T) {
	lan := newLAN(t, map[string]string{"a": "198.18.5.1/24"})
	a := lan["a"]
	s := listenIn(t, a, vip)
	if la, ok := s.LocalAddr().(*arp.Addr); !ok || !slices.Equal(la.HardwareAddr, a.link.MAC[:]) || la.Network() != "packet" {
		t.Errorf("LocalAddr = %v, want %s", s.LocalAddr(), macStr(a.link.MAC))
	}
	if _, err := s.WriteTo(make([]byte, 60), &net.UDPAddr{}); err == nil || !strings.Contains(err.Error(), "not a packet address") {
		t.Errorf("WriteTo a UDP address = %v, want an error", err)
	}
	buf := make([]byte, 128)
	if err := s.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadFrom past its deadline = %v, want os.ErrDeadlineExceeded", err)
	}
	if err := s.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, _, err := s.ReadFrom(buf)
		read <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-read:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadFrom on a closed socket = %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not wake ReadFrom within 2 s")
	}
	if _, err := s.WriteTo(make([]byte, 60), nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteTo on a closed socket = %v, want net.ErrClosed", err)
	}
	if err := s.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v, want net.ErrClosed", err)
	}
}
