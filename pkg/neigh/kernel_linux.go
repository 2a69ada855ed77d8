package neigh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	mnl "github.com/mdlayher/netlink"
	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	// socketTimeout bounds every netlink request: the kernel answers in microseconds, so a
	// request still unanswered after this means a wedged socket, not a slow kernel.
	socketTimeout = 5 * time.Second
	// dumpRetries bounds the retries of a dump the kernel marked interrupted (NLM_F_DUMP_INTR:
	// the table changed while it was being read).
	dumpRetries = 5
	// subscriptionBuffer is the channel depth between the netlink readers and the Tracker; a
	// neighbour flush on a large LAN emits one message per entry.
	subscriptionBuffer = 256
)

// sysKernel is rtnetlink: vishvananda/netlink for queries and subscriptions, and one
// mdlayher/netlink connection for the NTF_USE request that vishvananda/netlink cannot build.
type sysKernel struct {
	ns netns.NsHandle // netns.None() for the caller's namespace
	h  *vnl.Handle

	mu sync.Mutex // one request at a time on c, so its deadline is ours
	c  *mnl.Conn
}

func dialKernel(netnsPath string) (*sysKernel, error) {
	k := &sysKernel{ns: netns.None()}
	var err error
	if netnsPath != "" {
		if k.ns, err = netns.GetFromPath(netnsPath); err != nil {
			return nil, fmt.Errorf("neigh: open network namespace %s: %w", netnsPath, err)
		}
		k.h, err = vnl.NewHandleAt(k.ns, unix.NETLINK_ROUTE)
	} else {
		k.h, err = vnl.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		k.close()
		return nil, fmt.Errorf("neigh: open rtnetlink socket: %w", err)
	}
	if err := k.h.SetSocketTimeout(socketTimeout); err != nil {
		k.close()
		return nil, fmt.Errorf("neigh: set rtnetlink socket timeout: %w", err)
	}
	cfg := &mnl.Config{}
	if k.ns.IsOpen() {
		cfg.NetNS = int(k.ns)
	}
	if k.c, err = mnl.Dial(unix.NETLINK_ROUTE, cfg); err != nil {
		k.close()
		return nil, fmt.Errorf("neigh: open rtnetlink socket: %w", err)
	}
	// Extended acks carry the kernel's reason for a rejected request (for example "Invalid
	// ifindex"); without them only the errno arrives. Failure only costs that detail.
	_ = k.c.SetOption(mnl.ExtendedAcknowledge, true)
	return k, nil
}

func (k *sysKernel) close() error {
	var err error
	if k.c != nil {
		err = k.c.Close()
	}
	if k.h != nil {
		k.h.Close()
	}
	if k.ns.IsOpen() {
		err = errors.Join(err, k.ns.Close())
	}
	return err
}

// dump runs a table dump, retrying while the kernel reports it interrupted.
func dump[T any](f func() ([]T, error)) ([]T, error) {
	var (
		res []T
		err error
	)
	for range dumpRetries {
		res, err = f()
		if !errors.Is(err, vnl.ErrDumpInterrupted) {
			return res, err
		}
	}
	return nil, err
}

func (k *sysKernel) linkList() ([]Link, error) {
	ls, err := dump(k.h.LinkList)
	if err != nil {
		return nil, err
	}
	out := make([]Link, 0, len(ls))
	for _, l := range ls {
		out = append(out, linkFrom(l))
	}
	return out, nil
}

func (k *sysKernel) linkByIndex(index int) (Link, error) {
	l, err := k.h.LinkByIndex(index)
	if err != nil {
		return Link{}, linkErr(err)
	}
	return linkFrom(l), nil
}

func (k *sysKernel) linkByName(name string) (Link, error) {
	l, err := k.h.LinkByName(name)
	if err != nil {
		return Link{}, linkErr(err)
	}
	return linkFrom(l), nil
}

// linkErr turns vishvananda/netlink's "Link not found" into ENODEV, what callers test for.
func linkErr(err error) error {
	var nf vnl.LinkNotFoundError
	if errors.As(err, &nf) {
		return unix.ENODEV
	}
	return err
}

func linkFrom(l vnl.Link) Link {
	a := l.Attrs()
	out := Link{
		Index:    a.Index,
		Name:     a.Name,
		MTU:      a.MTU,
		Up:       a.RawFlags&unix.IFF_UP != 0 && a.RawFlags&unix.IFF_RUNNING != 0,
		Loopback: a.RawFlags&unix.IFF_LOOPBACK != 0,
	}
	if len(a.HardwareAddr) == 6 {
		copy(out.MAC[:], a.HardwareAddr)
	}
	return out
}

func (k *sysKernel) addrList() ([]ifAddr, error) {
	as, err := dump(func() ([]vnl.Addr, error) { return k.h.AddrList(nil, vnl.FAMILY_ALL) })
	if err != nil {
		return nil, err
	}
	out := make([]ifAddr, 0, len(as))
	for _, a := range as {
		p, ok := prefixFrom(a.IPNet)
		if !ok {
			continue
		}
		ia := ifAddr{linkIndex: a.LinkIndex, prefix: p}
		if peer, ok := prefixFrom(a.Peer); ok && peer.Addr() != p.Addr() {
			ia.peer = peer
		}
		out = append(out, ia)
	}
	return out, nil
}

func prefixFrom(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := n.Mask.Size()
	if bits != a.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}

func addrFrom(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

func (k *sysKernel) routeGet(dst netip.Addr) (kernelRoute, error) {
	rs, err := k.h.RouteGet(net.IP(dst.AsSlice()))
	if err != nil {
		return kernelRoute{}, err
	}
	if len(rs) == 0 {
		return kernelRoute{}, unix.ENETUNREACH
	}
	r := rs[0]
	kr := kernelRoute{linkIndex: r.LinkIndex, typ: r.Type, gw: addrFrom(r.Gw), src: addrFrom(r.Src)}
	if !kr.gw.IsValid() && r.Via != nil {
		// An IPv4 route via an IPv6 next hop (RTA_VIA, RFC 5549): the neighbour is IPv6.
		if v, ok := r.Via.(*vnl.Via); ok {
			kr.gw = addrFrom(v.Addr)
		}
	}
	return kr, nil
}

func (k *sysKernel) neighList(ifindex, family int) ([]neighEntry, error) {
	ns, err := dump(func() ([]vnl.Neigh, error) { return k.h.NeighList(ifindex, family) })
	if err != nil {
		return nil, err
	}
	out := make([]neighEntry, 0, len(ns))
	for _, n := range ns {
		if n.Flags&unix.NTF_PROXY != 0 {
			continue
		}
		e := neighEntry{ip: addrFrom(n.IP), state: uint16(n.State)}
		if len(n.HardwareAddr) == 6 {
			copy(e.mac[:], n.HardwareAddr)
			e.hasMAC = true
		}
		out = append(out, e)
	}
	return out, nil
}

func (k *sysKernel) requestResolve(ifindex int, ip netip.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.c.SetDeadline(time.Now().Add(socketTimeout)); err != nil {
		return err
	}
	return sendUse(k.c, ifindex, ip)
}

// subscribe merges vishvananda/netlink's neighbour, link and route subscriptions. When one of
// them breaks, all are closed and the merged channel with them, so the caller sees one loss
// and resubscribes.
func (k *sysKernel) subscribe(ctx context.Context) (<-chan event, error) {
	ctx, cancel := context.WithCancel(ctx)
	var ns *netns.NsHandle
	if k.ns.IsOpen() {
		ns = &k.ns
	}
	// A receive error ends a subscription and closes its channel, which forward notices; the
	// callback has nothing to add (and after cancel it only reports the closed socket).
	ignore := func(error) {}
	out := make(chan event, subscriptionBuffer)
	var wg sync.WaitGroup

	nch := make(chan vnl.NeighUpdate, subscriptionBuffer)
	if err := vnl.NeighSubscribeWithOptions(nch, ctx.Done(), vnl.NeighSubscribeOptions{Namespace: ns, ErrorCallback: ignore}); err != nil {
		cancel()
		return nil, fmt.Errorf("neigh: subscribe to neighbour updates: %w", err)
	}
	wg.Add(1)
	go forward(ctx, cancel, &wg, nch, out, func(u vnl.NeighUpdate) event {
		return event{kind: eventNeigh, ifindex: u.LinkIndex, ip: addrFrom(u.IP)}
	})

	lch := make(chan vnl.LinkUpdate, subscriptionBuffer)
	if err := vnl.LinkSubscribeWithOptions(lch, ctx.Done(), vnl.LinkSubscribeOptions{Namespace: ns, ErrorCallback: ignore}); err != nil {
		cancel()
		return nil, fmt.Errorf("neigh: subscribe to link updates: %w", err)
	}
	wg.Add(1)
	go forward(ctx, cancel, &wg, lch, out, func(u vnl.LinkUpdate) event {
		return event{kind: eventLink, ifindex: int(u.Index)}
	})

	rch := make(chan vnl.RouteUpdate, subscriptionBuffer)
	if err := vnl.RouteSubscribeWithOptions(rch, ctx.Done(), vnl.RouteSubscribeOptions{Namespace: ns, ErrorCallback: ignore}); err != nil {
		cancel()
		return nil, fmt.Errorf("neigh: subscribe to route updates: %w", err)
	}
	wg.Add(1)
	go forward(ctx, cancel, &wg, rch, out, func(vnl.RouteUpdate) event { return event{kind: eventRoute} })

	go func() { wg.Wait(); close(out) }()
	return out, nil
}

// forward copies one library subscription into out until it closes, then cancels the others.
// After ctx ends it keeps draining in without forwarding: the library's reader goroutine exits
// only once it is not blocked sending to in.
func forward[T any](ctx context.Context, cancel context.CancelFunc, wg *sync.WaitGroup, in <-chan T, out chan<- event, f func(T) event) {
	defer wg.Done()
	defer cancel()
	for u := range in {
		select {
		case out <- f(u):
		case <-ctx.Done():
		}
	}
}
