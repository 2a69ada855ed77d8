package neigh

import (
	"context"
	"net/netip"
)

// kernel is the narrow view of rtnetlink the Resolver and Tracker use. The real one
// (sysKernel) wraps vishvananda/netlink and a mdlayher/netlink connection; unit tests use a
// fake. Every method is safe for concurrent use.
type kernel interface {
	linkList() ([]Link, error)
	linkByIndex(index int) (Link, error)
	linkByName(name string) (Link, error)
	addrList() ([]ifAddr, error)
	routeGet(dst netip.Addr) (kernelRoute, error)
	// neighList lists the entries of one family on one link.
	neighList(ifindex, family int) ([]neighEntry, error)
	// requestResolve sends the NTF_USE request for ip on link ifindex.
	requestResolve(ifindex int, ip netip.Addr) error
	// subscribe delivers neighbour, link and route changes until ctx ends or the subscription
	// breaks (a receive error such as ENOBUFS); then the channel is closed.
	subscribe(ctx context.Context) (<-chan event, error)
	close() error
}

// ifAddr is an assigned address.
type ifAddr struct {
	linkIndex int
	prefix    netip.Prefix // the address with its prefix length, unmasked
	peer      netip.Prefix // point-to-point peer prefix; invalid if none
}

// kernelRoute is the part of an RTM_GETROUTE answer Route needs.
type kernelRoute struct {
	linkIndex int
	typ       int // RTN_*
	gw        netip.Addr
	src       netip.Addr
}

type eventKind uint8

const (
	eventNeigh eventKind = iota + 1 // a neighbour entry changed: ifindex, ip
	eventLink                       // an interface changed: ifindex
	eventRoute                      // any route changed
)

type event struct {
	kind    eventKind
	ifindex int
	ip      netip.Addr
}
