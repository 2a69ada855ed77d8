package neigh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The tests below run against the real kernel, inside two network namespaces they create:
//
//	A: va 198.18.3.1/24  <—veth—>  B: vb 198.18.3.2/24
//
// They need root (CAP_NET_ADMIN, and CAP_SYS_ADMIN for `ip netns add`) and iproute2; as root
// a missing piece fails the test.

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: CAP_SYS_ADMIN to create network namespaces, CAP_NET_ADMIN to configure them")
	}
}

// netnsDir is where `ip netns add` puts its namespaces (iproute2's NETNS_RUN_DIR).
const netnsDir = "/run/netns/"

type pair struct {
	a, b   string    // namespace names
	ra, rb *Resolver // Resolvers inside A and B
	va, vb Link
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newPair(t *testing.T) *pair {
	t.Helper()
	requireRoot(t)
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(rnd[:])
	p := &pair{a: "l4t-nb-" + id + "-a", b: "l4t-nb-" + id + "-b"}
	for _, ns := range []string{p.a, p.b} {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
	}
	ipCmd(t, "-n", p.a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", p.b)
	ipCmd(t, "-n", p.a, "addr", "add", "198.18.3.1/24", "dev", "va")
	ipCmd(t, "-n", p.b, "addr", "add", "198.18.3.2/24", "dev", "vb")
	for _, x := range [][2]string{{p.a, "va"}, {p.b, "vb"}} {
		ipCmd(t, "-n", x[0], "link", "set", "lo", "up")
		ipCmd(t, "-n", x[0], "link", "set", x[1], "up")
	}
	var err error
	if p.ra, err = New(testLogger(t).With("ns", "A"), WithNetNS(netnsDir+p.a)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.ra.Close() })
	if p.rb, err = New(testLogger(t).With("ns", "B"), WithNetNS(netnsDir+p.b)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.rb.Close() })
	if p.va, err = p.ra.LinkByName("va"); err != nil {
		t.Fatal(err)
	}
	if p.vb, err = p.rb.LinkByName("vb"); err != nil {
		t.Fatal(err)
	}
	// Carrier on a fresh veth pair comes up asynchronously.
	deadline := time.Now().Add(2 * time.Second)
	for !p.va.Up && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		if p.va, err = p.ra.LinkByName("va"); err != nil {
			t.Fatal(err)
		}
	}
	if !p.va.Up {
		t.Fatalf("va has no carrier 2 s after both ends went up: %+v", p.va)
	}
	return p
}

func (p *pair) neighboursA(t *testing.T) []neighEntry {
	t.Helper()
	es, err := p.ra.k.neighList(p.va.Index, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func TestNetNSResolveOnLink(t *testing.T) {
	p := newPair(t)
	if es := p.neighboursA(t); len(es) != 0 {
		t.Fatalf("A's neighbour table is not empty at start: %+v", es)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	nh, err := p.ra.Resolve(ctx, netip.MustParseAddr("198.18.3.2"))
	el := time.Since(start)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	t.Logf("resolved 198.18.3.2 to %s in %v", macString(nh.DstMAC), el)
	if nh.DstMAC != p.vb.MAC {
		t.Errorf("DstMAC = %s, want vb's %s", macString(nh.DstMAC), macString(p.vb.MAC))
	}
	if nh.Link != p.va || nh.Gateway.IsValid() || nh.Local || nh.Src != netip.MustParseAddr("198.18.3.1") {
		t.Errorf("NextHop = %+v, want on-link via va (%+v) from 198.18.3.1", nh, p.va)
	}
	// Known now: answered from the table without a new request.
	start = time.Now()
	if nh2, err := p.ra.Resolve(ctx, netip.MustParseAddr("198.18.3.2")); err != nil || nh2 != nh {
		t.Errorf("second Resolve = %+v, %v", nh2, err)
	}
	t.Logf("second Resolve (entry REACHABLE) took %v", time.Since(start))
}

func TestNetNSResolveMissingHost(t *testing.T) {
	p := newPair(t)
	missing := netip.MustParseAddr("198.18.3.99")
	t.Run("deadline", func(t *testing.T) {
		const timeout = 500 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		start := time.Now()
		_, err := p.ra.Resolve(ctx, missing)
		el := time.Since(start)
		t.Logf("error after %v: %v", el, err)
		if !errors.Is(err, ErrUnresolved) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Resolve error = %v, want ErrUnresolved and DeadlineExceeded", err)
		}
		if want := "neigh: resolve 198.18.3.99 on va: neighbour not resolved (state INCOMPLETE)"; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("error %q, want prefix %q", err, want)
		}
		if el > timeout+time.Second {
			t.Errorf("Resolve returned %v after a %v deadline", el, timeout)
		}
	})
	t.Run("kernel gives up", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		defer cancel()
		start := time.Now()
		_, err := p.ra.Resolve(ctx, missing)
		el := time.Since(start)
		t.Logf("error after %v: %v", el, err)
		if !errors.Is(err, ErrUnresolved) || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "state FAILED") {
			t.Fatalf("Resolve error = %v, want ErrUnresolved with state FAILED", err)
		}
	})
}

func TestNetNSResolveViaGateway(t *testing.T) {
	p := newPair(t)
	ipCmd(t, "-n", p.a, "route", "add", "198.18.4.0/24", "via", "198.18.3.2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	nh, err := p.ra.Resolve(ctx, netip.MustParseAddr("198.18.4.7"))
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if nh.Gateway != netip.MustParseAddr("198.18.3.2") || nh.DstMAC != p.vb.MAC || nh.Link.Name != "va" {
		t.Errorf("NextHop = %+v, want via 198.18.3.2 with vb's MAC %s", nh, macString(p.vb.MAC))
	}
	if nh.Hop() != nh.Gateway {
		t.Errorf("Hop() = %s, want the gateway", nh.Hop())
	}
}

func TestNetNSLocal(t *testing.T) {
	p := newPair(t)
	for _, dst := range []string{"198.18.3.1", "127.0.0.1"} {
		rt, err := p.ra.Route(netip.MustParseAddr(dst))
		if err != nil {
			t.Fatalf("Route(%s): %v", dst, err)
		}
		if !rt.Local || !rt.Link.Loopback || rt.Link.Name != "lo" || rt.Gateway.IsValid() {
			t.Errorf("Route(%s) = %+v, want Local via lo", dst, rt)
		}
		nh, err := p.ra.Resolve(context.Background(), netip.MustParseAddr(dst))
		if err != nil || !nh.Local || nh.DstMAC != [6]byte{} {
			t.Errorf("Resolve(%s) = %+v, %v; want Local with zero MAC", dst, nh, err)
		}
	}
	if _, err := p.ra.Route(netip.MustParseAddr("198.18.9.9")); !errors.Is(err, unix.ENETUNREACH) {
		t.Errorf("Route(198.18.9.9) error = %v, want ENETUNREACH", err)
	}
	if _, err := p.ra.Route(netip.MustParseAddr("198.18.3.255")); err == nil || !strings.Contains(err.Error(), "broadcast") {
		t.Errorf("Route(broadcast) error = %v", err)
	}
}

func TestNetNSLinksAndAddresses(t *testing.T) {
	p := newPair(t)
	ipCmd(t, "-n", p.a, "addr", "add", "198.18.5.5/32", "dev", "lo")

	ls, err := p.ra.Links()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]Link{}
	for _, l := range ls {
		names[l.Name] = l
	}
	if lo := names["lo"]; !lo.Loopback || !lo.Up {
		t.Errorf("lo = %+v, want loopback and up", lo)
	}
	if va := names["va"]; va != p.va || va.MTU != 1500 || va.MAC == [6]byte{} || va.Loopback {
		t.Errorf("va = %+v", va)
	}
	if l, err := p.ra.LinkByIndex(p.va.Index); err != nil || l != p.va {
		t.Errorf("LinkByIndex(%d) = %+v, %v", p.va.Index, l, err)
	}
	if _, err := p.ra.LinkByName("nope0"); !errors.Is(err, unix.ENODEV) {
		t.Errorf("LinkByName(nope0) error = %v, want ENODEV", err)
	}

	owners := []struct{ ip, link string }{
		{"198.18.3.1", "va"},
		{"198.18.5.5", "lo"},
		{"198.18.3.2", ""}, // B's, not ours
	}
	for _, tt := range owners {
		l, ok, err := p.ra.AddrOwner(netip.MustParseAddr(tt.ip))
		if err != nil || ok != (tt.link != "") || l.Name != tt.link {
			t.Errorf("AddrOwner(%s) = %q, %v, %v; want %q", tt.ip, l.Name, ok, err, tt.link)
		}
	}
	connected := []struct{ ip, link, prefix string }{
		{"198.18.3.200", "va", "198.18.3.0/24"},
		{"198.18.3.2", "va", "198.18.3.0/24"},
		{"198.18.5.5", "", ""},
		{"198.18.9.1", "", ""},
	}
	for _, tt := range connected {
		l, pfx, ok, err := p.ra.ConnectedLink(netip.MustParseAddr(tt.ip))
		if err != nil || ok != (tt.link != "") || l.Name != tt.link || (ok && pfx != netip.MustParsePrefix(tt.prefix)) {
			t.Errorf("ConnectedLink(%s) = %q, %s, %v, %v; want %q %s", tt.ip, l.Name, pfx, ok, err, tt.link, tt.prefix)
		}
	}
}

func TestNetNSTracker(t *testing.T) {
	p := newPair(t)
	ipCmd(t, "-n", p.a, "route", "add", "198.18.4.0/24", "via", "198.18.3.2")
	onLink, behind := netip.MustParseAddr("198.18.3.2"), netip.MustParseAddr("198.18.4.7")

	changes := make(chan change, 64)
	tr := p.ra.NewTracker(func(dst netip.Addr, nh NextHop, err error) {
		changes <- change{dst, nh, err}
	})
	tr.SetTargets([]netip.Addr{onLink, behind})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return 5 s after cancel")
		}
	})

	// waitBoth waits until both destinations reported and ok(change) held for the last report
	// of each.
	waitBoth := func(what string, ok func(c change) bool) time.Duration {
		t.Helper()
		start := time.Now()
		timeout := time.After(5 * time.Second)
		good := map[netip.Addr]bool{}
		for !good[onLink] || !good[behind] {
			select {
			case c := <-changes:
				good[c.dst] = ok(c)
				t.Logf("%s: onChange(%s, mac %s, %v)", what, c.dst, macString(c.nh.DstMAC), c.err)
			case <-timeout:
				t.Fatalf("%s: not reported for both destinations within 5 s", what)
			}
		}
		return time.Since(start)
	}
	hasMAC := func(m [6]byte) func(change) bool {
		return func(c change) bool { return c.err == nil && c.nh.DstMAC == m && c.nh.Link.Name == "va" }
	}

	el := waitBoth("start", hasMAC(p.vb.MAC))
	t.Logf("both resolved %v after Run", el)

	t.Run("gratuitous ARP", func(t *testing.T) {
		// arp_notify makes B announce its new MAC; A's kernel updates the entry it has.
		ipCmd(t, "netns", "exec", p.b, "sysctl", "-qw", "net.ipv4.conf.vb.arp_notify=1")
		newMAC := [6]byte{0x02, 0x4c, 0x34, 0, 0, 0x01}
		ipCmd(t, "-n", p.b, "link", "set", "dev", "vb", "address", macString(newMAC))
		el := waitBoth("gratuitous ARP", hasMAC(newMAC))
		t.Logf("MAC change seen %v after the announcement", el)
	})

	t.Run("entry deleted and kicked", func(t *testing.T) {
		// Without an announcement A keeps the old MAC; deleting the entry (as a flush would)
		// and kicking must bring the new one.
		ipCmd(t, "netns", "exec", p.b, "sysctl", "-qw", "net.ipv4.conf.vb.arp_notify=0")
		newMAC := [6]byte{0x02, 0x4c, 0x34, 0, 0, 0x02}
		ipCmd(t, "-n", p.b, "link", "set", "dev", "vb", "address", macString(newMAC))
		ipCmd(t, "-n", p.a, "neigh", "del", "198.18.3.2", "dev", "va")
		tr.Kick(onLink)
		tr.Kick(behind)
		el := waitBoth("delete and kick", hasMAC(newMAC))
		t.Logf("new MAC resolved %v after the delete", el)
	})

	t.Run("carrier lost and back", func(t *testing.T) {
		ipCmd(t, "-n", p.b, "link", "set", "vb", "down")
		waitBoth("carrier lost", func(c change) bool {
			return c.err != nil && strings.Contains(c.err.Error(), "interface va is down or has no carrier")
		})
		ipCmd(t, "-n", p.b, "link", "set", "vb", "up")
		waitBoth("carrier back", hasMAC([6]byte{0x02, 0x4c, 0x34, 0, 0, 0x02}))
	})

	t.Run("targets replaced", func(t *testing.T) {
		tr.SetTargets([]netip.Addr{behind})
		time.Sleep(50 * time.Millisecond)
		ipCmd(t, "-n", p.a, "neigh", "replace", "198.18.3.2", "dev", "va", "lladdr", "02:4c:34:00:00:03", "nud", "permanent")
		select {
		case c := <-changes:
			if c.dst != behind || c.nh.DstMAC != [6]byte{0x02, 0x4c, 0x34, 0, 0, 0x03} {
				t.Fatalf("onChange(%s, %+v, %v), want only %s with the static MAC", c.dst, c.nh, c.err, behind)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("static entry not reported within 5 s")
		}
		select {
		case c := <-changes:
			t.Fatalf("unexpected onChange(%s, %+v, %v)", c.dst, c.nh, c.err)
		case <-time.After(200 * time.Millisecond):
		}
	})
}
