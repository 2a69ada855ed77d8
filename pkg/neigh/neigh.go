// Package neigh answers, for a destination address, where an Ethernet frame toward it must go: the
// egress interface, our source MAC on it and the MAC of the next hop (the destination itself when it
// is on-link, otherwise the gateway). l4raw writes whole frames on AF_PACKET, so the kernel's own
// neighbour resolution never runs for its traffic; this package asks the kernel to resolve (the
// NTF_USE request of `ip neigh replace ADDR dev IF use`) and reads the result back from the
// neighbour table, and a Tracker keeps the answers fresh.
package neigh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// ErrUnresolved reports that a next hop did not answer neighbour resolution: the kernel gave up
// probing (entry FAILED) or the caller's context ended first. Callers treat it as "backend
// unreachable" rather than as a configuration error.
var ErrUnresolved = errors.New("neighbour not resolved")

// Link is what the data path needs to know about one interface.
type Link struct {
	Index int
	Name  string
	// MAC is the interface's Ethernet address; zero when the link has no 6-byte hardware
	// address (tun, wireguard, ppp): frames cannot be sent there.
	MAC [6]byte
	MTU int
	// Up is administratively up (IFF_UP) and with carrier (IFF_RUNNING): a veth whose peer is
	// down is not Up, frames written to it are lost.
	Up       bool
	Loopback bool
}

// Route is the kernel's routing decision for one destination (`ip route get DST`).
type Route struct {
	Dst  netip.Addr
	Link Link
	// Gateway is the next hop; invalid when Dst is on-link.
	Gateway netip.Addr
	// Src is the preferred source address the kernel would use toward Dst.
	Src netip.Addr
	// Local is set when Dst is an address of this host (route type local, via lo).
	Local bool
}

// NextHop is a Route plus the Ethernet destination for frames toward Route.Dst.
type NextHop struct {
	Route
	// DstMAC is the MAC of Gateway, or of Dst when on-link; zero when Local.
	DstMAC [6]byte
}

// Hop is the address whose MAC the frames carry: the gateway if there is one, else Dst.
func (r Route) Hop() netip.Addr {
	if r.Gateway.IsValid() {
		return r.Gateway
	}
	return r.Dst
}

// Option configures New.
type Option func(*options)

type options struct {
	netnsPath string
	kernel    kernel
}

// WithNetNS makes the Resolver operate in the network namespace at path (for example
// /run/netns/NAME, as made by `ip netns add NAME`) instead of the caller's.
func WithNetNS(path string) Option {
	return func(o *options) { o.netnsPath = path }
}

// withKernel replaces rtnetlink with a fake (unit tests).
func withKernel(k kernel) Option {
	return func(o *options) { o.kernel = k }
}

// Resolver answers route, link and neighbour questions. It is safe for concurrent use.
type Resolver struct {
	k   kernel
	log *slog.Logger
}

// New opens the netlink sockets the Resolver needs.
func New(log *slog.Logger, opts ...Option) (*Resolver, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := o.kernel
	if k == nil {
		var err error
		k, err = dialKernel(o.netnsPath)
		if err != nil {
			return nil, err
		}
	}
	return &Resolver{k: k, log: log}, nil
}

// Close releases the netlink sockets. Trackers of this Resolver must have stopped.
func (r *Resolver) Close() error {
	return r.k.close()
}

// Links lists every interface.
func (r *Resolver) Links() ([]Link, error) {
	ls, err := r.k.linkList()
	if err != nil {
		return nil, fmt.Errorf("neigh: list links: %w", err)
	}
	return ls, nil
}

// LinkByName looks an interface up by name; a missing one gives an error wrapping unix.ENODEV.
func (r *Resolver) LinkByName(name string) (Link, error) {
	l, err := r.k.linkByName(name)
	if err != nil {
		return Link{}, fmt.Errorf("neigh: link %q: %w", name, err)
	}
	return l, nil
}

// LinkByIndex looks an interface up by index; a missing one gives an error wrapping unix.ENODEV.
func (r *Resolver) LinkByIndex(i int) (Link, error) {
	l, err := r.k.linkByIndex(i)
	if err != nil {
		return Link{}, fmt.Errorf("neigh: link index %d: %w", i, err)
	}
	return l, nil
}

// AddrOwner returns the interface holding ip as an assigned address (`ip addr`), ok=false if
// none does. It is how l4raw tells the user "VIP X is not a local address: add it with
// ip addr add X/32 dev IF". Addresses that are local only through a `local` route (AnyIP) are
// not assigned: Route reports those as Local.
func (r *Resolver) AddrOwner(ip netip.Addr) (Link, bool, error) {
	ip = canon(ip)
	as, err := r.k.addrList()
	if err != nil {
		return Link{}, false, fmt.Errorf("neigh: owner of %s: list addresses: %w", ip, err)
	}
	for _, a := range as {
		if a.prefix.Addr() != ip {
			continue
		}
		l, err := r.k.linkByIndex(a.linkIndex)
		if err != nil {
			return Link{}, false, fmt.Errorf("neigh: owner of %s: link index %d: %w", ip, a.linkIndex, err)
		}
		return l, true, nil
	}
	return Link{}, false, nil
}

// ConnectedLink returns the non-loopback interface whose connected prefix (the prefix of an
// address assigned to it, or of its point-to-point peer) contains ip, and that prefix, masked.
// When several do, the longest prefix wins, as in the kernel's route lookup. Host prefixes
// (/32, /128) without a peer connect nothing but the address itself and are skipped. It serves claiming a free
// LAN address as the VIP: the address must be on a segment this host is attached to.
func (r *Resolver) ConnectedLink(ip netip.Addr) (Link, netip.Prefix, bool, error) {
	ip = canon(ip)
	as, err := r.k.addrList()
	if err != nil {
		return Link{}, netip.Prefix{}, false, fmt.Errorf("neigh: connected link for %s: list addresses: %w", ip, err)
	}
	best, bestIdx := netip.Prefix{}, 0
	for _, a := range as {
		p := a.prefix
		switch {
		case a.peer.IsValid():
			p = a.peer
		case p.IsSingleIP():
			continue
		}
		if !p.Masked().Contains(ip) {
			continue
		}
		if best.IsValid() && p.Bits() <= best.Bits() {
			continue
		}
		l, err := r.k.linkByIndex(a.linkIndex)
		if err != nil {
			return Link{}, netip.Prefix{}, false, fmt.Errorf("neigh: connected link for %s: link index %d: %w", ip, a.linkIndex, err)
		}
		if l.Loopback {
			continue
		}
		best, bestIdx = p.Masked(), a.linkIndex
	}
	if !best.IsValid() {
		return Link{}, netip.Prefix{}, false, nil
	}
	l, err := r.k.linkByIndex(bestIdx)
	if err != nil {
		return Link{}, netip.Prefix{}, false, fmt.Errorf("neigh: connected link for %s: link index %d: %w", ip, bestIdx, err)
	}
	return l, best, true, nil
}

// Route asks the kernel how it would route dst (RTM_GETROUTE, `ip route get DST`). Broadcast,
// multicast and other non-unicast answers are errors: a backend must be a unicast host.
func (r *Resolver) Route(dst netip.Addr) (Route, error) {
	dst = canon(dst)
	if !dst.IsValid() {
		return Route{}, fmt.Errorf("neigh: route to %v: invalid address", dst)
	}
	kr, err := r.k.routeGet(dst)
	if err != nil {
		return Route{}, fmt.Errorf("neigh: route to %s: %w", dst, err)
	}
	switch kr.typ {
	case unix.RTN_UNICAST, unix.RTN_LOCAL:
	default:
		return Route{}, fmt.Errorf("neigh: route to %s: route type %s, want unicast or local", dst, routeTypeName(kr.typ))
	}
	l, err := r.k.linkByIndex(kr.linkIndex)
	if err != nil {
		return Route{}, fmt.Errorf("neigh: route to %s: link index %d: %w", dst, kr.linkIndex, err)
	}
	rt := Route{Dst: dst, Link: l, Src: kr.src, Local: kr.typ == unix.RTN_LOCAL}
	if !rt.Local {
		rt.Gateway = kr.gw
	}
	return rt, nil
}

// Resolve returns the route and next-hop MAC toward dst. When the neighbour entry is not usable
// (absent, INCOMPLETE, FAILED, NONE) it asks the kernel to resolve it and polls the neighbour
// table until the entry is usable, the kernel gives up (FAILED: by default 3 probes 1 s apart,
// net.ipv4.neigh.*.mcast_solicit and retrans_time_ms) or ctx ends; the latter two give an error
// wrapping ErrUnresolved that names dst, the gateway and the interface. A ctx without deadline
// is bounded by DefaultResolveTimeout. Local destinations return Route.Local with the loopback
// link and a zero DstMAC.
func (r *Resolver) Resolve(ctx context.Context, dst netip.Addr) (NextHop, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultResolveTimeout)
		defer cancel()
	}
	rt, err := r.Route(dst)
	if err != nil {
		return NextHop{}, err
	}
	if rt.Local {
		return NextHop{Route: rt}, nil
	}
	if err := sendable(rt); err != nil {
		return NextHop{}, err
	}
	hop := rt.Hop()
	if e, ok, err := r.neighbour(rt.Link.Index, hop); err != nil {
		return NextHop{}, resolveErr(rt, err)
	} else if ok && e.usable() {
		return NextHop{Route: rt, DstMAC: e.mac}, nil
	}
	// Asking unconditionally is harmless (the kernel ignores it for an entry already being
	// probed) and makes a FAILED seen afterwards the outcome of this request.
	if err := r.k.requestResolve(rt.Link.Index, hop); err != nil {
		return NextHop{}, resolveErr(rt, fmt.Errorf("request resolution: %w", err))
	}
	wait := pollFirst
	last := "absent"
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return NextHop{}, resolveErr(rt, fmt.Errorf("%w (state %s): %w", ErrUnresolved, last, ctx.Err()))
		case <-t.C:
		}
		wait = min(2*wait, pollMax)
		e, ok, err := r.neighbour(rt.Link.Index, hop)
		if err != nil {
			return NextHop{}, resolveErr(rt, err)
		}
		switch {
		case !ok:
			// Deleted under us (a flush, or GC of an old FAILED entry): ask again.
			last = "absent"
			if err := r.k.requestResolve(rt.Link.Index, hop); err != nil {
				return NextHop{}, resolveErr(rt, fmt.Errorf("request resolution: %w", err))
			}
		case e.usable():
			return NextHop{Route: rt, DstMAC: e.mac}, nil
		case e.state&unix.NUD_FAILED != 0:
			return NextHop{}, resolveErr(rt, fmt.Errorf("%w (state FAILED: no answer to the kernel's probes)", ErrUnresolved))
		default:
			last = stateString(e.state)
		}
	}
}

const (
	// DefaultResolveTimeout bounds Resolve when ctx has no deadline: the kernel's default time
	// to give up on an address (mcast_solicit 3 × retrans_time 1 s) plus a margin.
	DefaultResolveTimeout = 3500 * time.Millisecond
	// pollFirst and pollMax shape Resolve's back-off: an answering on-link host is REACHABLE
	// ~20 ms after the request (measured on veth), found by the 4th poll (2+4+8+16 ms); the cap
	// keeps a slow host's extra wait under 50 ms.
	pollFirst = 2 * time.Millisecond
	pollMax   = 50 * time.Millisecond
)

// sendable reports why frames toward rt cannot be written, if they cannot.
func sendable(rt Route) error {
	switch {
	case !rt.Link.Up:
		return fmt.Errorf("neigh: resolve %s%s: interface %s is down or has no carrier", rt.Dst, via(rt), rt.Link.Name)
	case rt.Link.MAC == [6]byte{}:
		return fmt.Errorf("neigh: resolve %s%s: interface %s has no ethernet address", rt.Dst, via(rt), rt.Link.Name)
	}
	return nil
}

func resolveErr(rt Route, err error) error {
	return fmt.Errorf("neigh: resolve %s%s on %s: %w", rt.Dst, via(rt), rt.Link.Name, err)
}

func via(rt Route) string {
	if rt.Gateway.IsValid() {
		return " via " + rt.Gateway.String()
	}
	return ""
}

// neighbour reads the kernel's entry for ip on link ifindex.
func (r *Resolver) neighbour(ifindex int, ip netip.Addr) (neighEntry, bool, error) {
	es, err := r.k.neighList(ifindex, family(ip))
	if err != nil {
		return neighEntry{}, false, fmt.Errorf("list neighbours: %w", err)
	}
	e, ok := findNeigh(es, ip)
	return e, ok, nil
}

func findNeigh(es []neighEntry, ip netip.Addr) (neighEntry, bool) {
	for _, e := range es {
		if e.ip == ip {
			return e, true
		}
	}
	return neighEntry{}, false
}

// canon strips what would make equal addresses compare unequal: the IPv4-mapped IPv6 form and
// zones (the interface comes from the route, not from the zone).
func canon(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}

func family(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func routeTypeName(t int) string {
	switch t {
	case unix.RTN_UNSPEC:
		return "unspec"
	case unix.RTN_UNICAST:
		return "unicast"
	case unix.RTN_LOCAL:
		return "local"
	case unix.RTN_BROADCAST:
		return "broadcast"
	case unix.RTN_ANYCAST:
		return "anycast"
	case unix.RTN_MULTICAST:
		return "multicast"
	case unix.RTN_BLACKHOLE:
		return "blackhole"
	case unix.RTN_UNREACHABLE:
		return "unreachable"
	case unix.RTN_PROHIBIT:
		return "prohibit"
	case unix.RTN_THROW:
		return "throw"
	case unix.RTN_NAT:
		return "nat"
	}
	return fmt.Sprintf("%d", t)
}
