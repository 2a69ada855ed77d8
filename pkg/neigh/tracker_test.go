package neigh

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type change struct {
	dst netip.Addr
	nh  NextHop
	err error
}

type trackerHarness struct {
	k       *fakeKernel
	r       *Resolver
	tr      *Tracker
	changes chan change
	events  chan event
	done    chan error
}

// startTracker runs a Tracker over the fake topology with short timings. Its first
// subscription delivers h.events.
func startTracker(t *testing.T, setup func(k *fakeKernel), tune func(tr *Tracker), dsts ...netip.Addr) *trackerHarness {
	t.Helper()
	k, r := fakeTopology(t)
	if setup != nil {
		setup(k)
	}
	h := &trackerHarness{k: k, r: r, changes: make(chan change, 256), events: make(chan event, 16), done: make(chan error, 1)}
	k.subs <- h.events
	h.tr = r.NewTracker(func(dst netip.Addr, nh NextHop, err error) {
		h.changes <- change{dst, nh, err}
	})
	h.tr.retry = 20 * time.Millisecond
	h.tr.refresh = time.Hour
	h.tr.settle = time.Millisecond
	h.tr.kickGap = 0
	h.tr.resubscribe = 10 * time.Millisecond
	if tune != nil {
		tune(h.tr)
	}
	h.tr.SetTargets(dsts)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.done <- h.tr.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return h
}

func (h *trackerHarness) wait(t *testing.T, what string) change {
	t.Helper()
	select {
	case c := <-h.changes:
		return c
	case <-time.After(5 * time.Second):
		t.Fatalf("no onChange for %s within 5 s", what)
		return change{}
	}
}

// quiet fails if onChange is called within d (d = 0: if a call is pending).
func (h *trackerHarness) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	var timeout <-chan time.Time
	if d > 0 {
		timeout = time.After(d)
	}
	select {
	case c := <-h.changes:
		t.Fatalf("unexpected onChange(%s, %+v, %v)", c.dst, c.nh, c.err)
	case <-timeout:
	default:
		if d > 0 {
			select {
			case c := <-h.changes:
				t.Fatalf("unexpected onChange(%s, %+v, %v)", c.dst, c.nh, c.err)
			case <-timeout:
			}
		}
	}
}

// requested waits until the Tracker asked the kernel to resolve ip on link ifindex.
func (h *trackerHarness) requested(t *testing.T, ifindex int, ip netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.k.mu.Lock()
		found := slices.Contains(h.k.requests, hopKey{ifindex, ip})
		h.k.mu.Unlock()
		if found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no resolution request for %s within 5 s", ip)
		}
		time.Sleep(time.Millisecond)
	}
}

// moreRequests waits until the Tracker sent n more resolution requests. Bounded by 5 s
// rather than by the expected rate, so a loaded machine slows the test instead of failing it.
func (h *trackerHarness) moreRequests(t *testing.T, n int) {
	t.Helper()
	want := h.k.requestCount() + n
	deadline := time.Now().Add(5 * time.Second)
	for h.k.requestCount() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests after 5 s, want %d", h.k.requestCount(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func (h *trackerHarness) neighEvent(ifindex int, ip netip.Addr) {
	h.events <- event{kind: eventNeigh, ifindex: ifindex, ip: ip}
}

func TestTrackerResolvesAndFollowsNeighbours(t *testing.T) {
	h := startTracker(t, func(k *fakeKernel) {
		k.setNeigh(2, ipOnLink, unix.NUD_REACHABLE, macB)
	}, nil, ipOnLink, ipBehind)

	c := h.wait(t, "on-link destination")
	if c.dst != ipOnLink || c.err != nil || c.nh.DstMAC != macB || c.nh.Link.Name != "eth0" {
		t.Fatalf("first change = %+v", c)
	}
	// The gateway was absent: the Tracker asked for it and waits for the kernel.
	h.requested(t, 2, ipGateway)
	h.quiet(t, 50*time.Millisecond)
	h.k.setNeigh(2, ipGateway, unix.NUD_REACHABLE, macGW)
	h.neighEvent(2, ipGateway)
	c = h.wait(t, "destination behind the gateway")
	if c.dst != ipBehind || c.err != nil || c.nh.DstMAC != macGW || c.nh.Gateway != ipGateway {
		t.Fatalf("gateway change = %+v", c)
	}

	// An unrelated neighbour changes: nothing to report.
	h.neighEvent(2, netip.MustParseAddr("198.18.3.77"))
	h.quiet(t, 50*time.Millisecond)

	// The backend moved to another MAC (a gratuitous ARP updated the entry).
	newMAC := mac(0x02, 0, 0, 0, 0, 0x22)
	h.k.setNeigh(2, ipOnLink, unix.NUD_STALE, newMAC)
	h.neighEvent(2, ipOnLink)
	c = h.wait(t, "MAC change")
	if c.dst != ipOnLink || c.err != nil || c.nh.DstMAC != newMAC {
		t.Fatalf("MAC change = %+v", c)
	}
	// Re-verification in progress keeps the answer: no report.
	h.k.setNeigh(2, ipOnLink, unix.NUD_PROBE, newMAC)
	h.neighEvent(2, ipOnLink)
	h.quiet(t, 50*time.Millisecond)
}

func TestTrackerFailsOnceAndRecovers(t *testing.T) {
	dead := netip.MustParseAddr("198.18.3.99")
	h := startTracker(t, nil, nil, dead)
	h.quiet(t, 50*time.Millisecond) // INCOMPLETE: no verdict yet

	h.k.setNeigh(2, dead, unix.NUD_FAILED, [6]byte{})
	h.neighEvent(2, dead)
	c := h.wait(t, "failure")
	if c.dst != dead || !errors.Is(c.err, ErrUnresolved) || c.nh != (NextHop{}) {
		t.Fatalf("failure change = %+v", c)
	}
	if !strings.Contains(c.err.Error(), "198.18.3.99 on eth0") {
		t.Errorf("error %q does not name destination and interface", c.err)
	}
	// Retries (every 20 ms here) ask again but report nothing new.
	h.moreRequests(t, 3)
	h.quiet(t, 0)

	h.k.setNeigh(2, dead, unix.NUD_REACHABLE, macB)
	h.neighEvent(2, dead)
	c = h.wait(t, "recovery")
	if c.dst != dead || c.err != nil || c.nh.DstMAC != macB {
		t.Fatalf("recovery change = %+v", c)
	}
}

func TestTrackerRouteAndLinkChanges(t *testing.T) {
	otherGW := netip.MustParseAddr("198.18.3.253")
	otherMAC := mac(0x02, 0, 0, 0, 0, 0xfd)
	h := startTracker(t, func(k *fakeKernel) {
		k.setNeigh(2, ipGateway, unix.NUD_REACHABLE, macGW)
		k.setNeigh(2, otherGW, unix.NUD_REACHABLE, otherMAC)
	}, nil, ipBehind)
	if c := h.wait(t, "first answer"); c.nh.DstMAC != macGW {
		t.Fatalf("first change = %+v", c)
	}

	h.k.mu.Lock()
	h.k.routes[ipBehind] = kernelRoute{linkIndex: 2, typ: unix.RTN_UNICAST, gw: otherGW, src: ipLocal}
	h.k.mu.Unlock()
	h.events <- event{kind: eventRoute}
	if c := h.wait(t, "new gateway"); c.err != nil || c.nh.Gateway != otherGW || c.nh.DstMAC != otherMAC {
		t.Fatalf("route change = %+v", c)
	}

	// Our own interface got a new MAC: the source address of every frame changes.
	h.k.mu.Lock()
	l := h.k.links[2]
	l.MAC = mac(0x02, 0, 0, 0, 0, 0x99)
	h.k.links[2] = l
	h.k.mu.Unlock()
	h.events <- event{kind: eventLink, ifindex: 2}
	if c := h.wait(t, "interface MAC"); c.err != nil || c.nh.Link.MAC != l.MAC {
		t.Fatalf("link MAC change = %+v", c)
	}

	// Carrier lost, then back.
	h.k.mu.Lock()
	l.Up = false
	h.k.links[2] = l
	h.k.mu.Unlock()
	h.events <- event{kind: eventLink, ifindex: 2}
	if c := h.wait(t, "link down"); c.err == nil || !strings.Contains(c.err.Error(), "interface eth0 is down") {
		t.Fatalf("link down change = %+v", c)
	}
	h.k.mu.Lock()
	l.Up = true
	h.k.links[2] = l
	h.k.mu.Unlock()
	h.events <- event{kind: eventLink, ifindex: 2}
	if c := h.wait(t, "link up"); c.err != nil || c.nh.DstMAC != otherMAC {
		t.Fatalf("link up change = %+v", c)
	}

	// No route any more.
	h.k.mu.Lock()
	h.k.routeErr[ipBehind] = unix.ENETUNREACH
	h.k.mu.Unlock()
	h.events <- event{kind: eventRoute}
	if c := h.wait(t, "route gone"); !errors.Is(c.err, unix.ENETUNREACH) {
		t.Fatalf("route removal change = %+v", c)
	}
}

func TestTrackerSetTargets(t *testing.T) {
	other := netip.MustParseAddr("198.18.3.3")
	macO := mac(0x02, 0, 0, 0, 0, 0x03)
	h := startTracker(t, func(k *fakeKernel) {
		k.setNeigh(2, ipOnLink, unix.NUD_REACHABLE, macB)
		k.setNeigh(2, other, unix.NUD_REACHABLE, macO)
		k.routes[other] = kernelRoute{linkIndex: 2, typ: unix.RTN_UNICAST, src: ipLocal}
	}, nil, ipOnLink)
	if c := h.wait(t, "first target"); c.dst != ipOnLink {
		t.Fatalf("change = %+v", c)
	}
	h.tr.SetTargets([]netip.Addr{ipOnLink, netip.MustParseAddr("::ffff:198.18.3.3"), other})
	if c := h.wait(t, "added target"); c.dst != other || c.nh.DstMAC != macO {
		t.Fatalf("change = %+v", c)
	}
	h.quiet(t, 30*time.Millisecond) // the duplicate was folded, ipOnLink not re-reported

	// SetTargets takes effect before any notification that follows it.
	h.tr.SetTargets([]netip.Addr{other})
	h.k.setNeigh(2, ipOnLink, unix.NUD_REACHABLE, mac(0x02, 0, 0, 0, 0, 0x44))
	h.neighEvent(2, ipOnLink)
	h.quiet(t, 50*time.Millisecond)
}

func TestTrackerKick(t *testing.T) {
	h := startTracker(t, func(k *fakeKernel) {
		k.setNeigh(2, ipOnLink, unix.NUD_STALE, macB)
	}, func(tr *Tracker) { tr.kickGap = time.Hour }, ipOnLink)
	h.wait(t, "first answer")
	before := h.k.requestCount()
	h.tr.Kick(ipOnLink)
	h.tr.Kick(ipOnLink) // within kickGap: coalesced
	h.tr.Kick(netip.MustParseAddr("198.18.3.50"))
	deadline := time.Now().Add(5 * time.Second)
	for h.k.requestCount() == before && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(30 * time.Millisecond)
	if n := h.k.requestCount() - before; n != 1 {
		t.Errorf("kicks sent %d requests, want 1 (a use hint for the stale entry)", n)
	}
}

func TestKickNeverBlocks(t *testing.T) {
	_, r := fakeTopology(t)
	tr := r.NewTracker(nil)
	done := make(chan struct{})
	go func() {
		for range 10 * kickQueue {
			tr.Kick(ipOnLink)
		}
		tr.SetTargets([]netip.Addr{ipOnLink})
		tr.SetTargets(nil)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Kick or SetTargets blocked without a running Tracker")
	}
}

func TestTrackerRefreshSendsUseHints(t *testing.T) {
	h := startTracker(t, func(k *fakeKernel) {
		k.setNeigh(2, ipOnLink, unix.NUD_REACHABLE, macB)
	}, func(tr *Tracker) { tr.refresh = 20 * time.Millisecond }, ipOnLink)
	h.wait(t, "first answer")
	h.moreRequests(t, 3)
	h.quiet(t, 0) // refreshing an unchanged answer reports nothing
}

func TestTrackerResubscribes(t *testing.T) {
	h := startTracker(t, func(k *fakeKernel) {
		k.setNeigh(2, ipOnLink, unix.NUD_REACHABLE, macB)
	}, nil, ipOnLink)
	h.wait(t, "first answer")

	second := make(chan event, 16)
	h.k.subs <- second
	// The MAC changes while notifications are lost.
	newMAC := mac(0x02, 0, 0, 0, 0, 0x55)
	h.k.setNeigh(2, ipOnLink, unix.NUD_REACHABLE, newMAC)
	close(h.events)
	if c := h.wait(t, "change found by the pass after resubscribing"); c.nh.DstMAC != newMAC {
		t.Fatalf("change = %+v", c)
	}
	// The new subscription is live.
	h.k.setNeigh(2, ipOnLink, unix.NUD_REACHABLE, macB)
	second <- event{kind: eventNeigh, ifindex: 2, ip: ipOnLink}
	if c := h.wait(t, "event on the new subscription"); c.nh.DstMAC != macB {
		t.Fatalf("change = %+v", c)
	}
}

func TestTrackerRun(t *testing.T) {
	k, r := fakeTopology(t)
	k.subErr = errors.New("neigh: subscribe to neighbour updates: operation not permitted")
	tr := r.NewTracker(nil)
	if err := tr.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "subscribe") {
		t.Errorf("Run with failing subscription = %v", err)
	}

	k.subErr = nil
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	deadline := time.Now().Add(time.Second)
	for !tr.running.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := tr.Run(ctx); err == nil {
		t.Error("second concurrent Run succeeded")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
