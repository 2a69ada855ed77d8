package neigh

import (
	"context"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"
)

// fakeKernel is an in-memory rtnetlink: links, addresses, a route per destination and a
// neighbour table. onRequest, if set, plays the kernel's reaction to an NTF_USE request.
type fakeKernel struct {
	mu        sync.Mutex
	links     map[int]Link
	addrs     []ifAddr
	routes    map[netip.Addr]kernelRoute
	routeErr  map[netip.Addr]error
	neigh     map[hopKey]neighEntry
	requests  []hopKey
	lists     int                             // neighList calls
	onRequest func(k *fakeKernel, key hopKey) // called with mu held
	onList    func(k *fakeKernel)             // called with mu held, before the answer
	reqErr    error

	subs   chan chan event // each subscribe call takes its channel from here, if any
	subErr error
	closed bool
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{
		links: map[int]Link{
			1: {Index: 1, Name: "lo", MTU: 65536, Up: true, Loopback: true},
			2: {Index: 2, Name: "eth0", MAC: mac(0x02, 0, 0, 0, 0, 0x01), MTU: 1500, Up: true},
		},
		routes:   map[netip.Addr]kernelRoute{},
		routeErr: map[netip.Addr]error{},
		neigh:    map[hopKey]neighEntry{},
		subs:     make(chan chan event, 8),
	}
}

func mac(b ...byte) [6]byte {
	var m [6]byte
	copy(m[:], b)
	return m
}

func (k *fakeKernel) setNeigh(ifindex int, ip netip.Addr, state uint16, m [6]byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.neigh[hopKey{ifindex, ip}] = neighEntry{ip: ip, state: state, mac: m, hasMAC: m != [6]byte{}}
}

func (k *fakeKernel) requestCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.requests)
}

func (k *fakeKernel) linkList() ([]Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []Link
	for i := range 100 {
		if l, ok := k.links[i]; ok {
			out = append(out, l)
		}
	}
	return out, nil
}

func (k *fakeKernel) linkByIndex(i int) (Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l, ok := k.links[i]; ok {
		return l, nil
	}
	return Link{}, unix.ENODEV
}

func (k *fakeKernel) linkByName(name string) (Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, l := range k.links {
		if l.Name == name {
			return l, nil
		}
	}
	return Link{}, unix.ENODEV
}

func (k *fakeKernel) addrList() ([]ifAddr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]ifAddr(nil), k.addrs...), nil
}

func (k *fakeKernel) routeGet(dst netip.Addr) (kernelRoute, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.routeErr[dst]; err != nil {
		return kernelRoute{}, err
	}
	if r, ok := k.routes[dst]; ok {
		return r, nil
	}
	return kernelRoute{}, unix.ENETUNREACH
}

func (k *fakeKernel) neighList(ifindex, fam int) ([]neighEntry, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lists++
	if k.onList != nil {
		k.onList(k)
	}
	var out []neighEntry
	for key, e := range k.neigh {
		if key.ifindex == ifindex && family(key.ip) == fam {
			out = append(out, e)
		}
	}
	return out, nil
}

func (k *fakeKernel) requestResolve(ifindex int, ip netip.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.reqErr != nil {
		return k.reqErr
	}
	key := hopKey{ifindex, ip}
	k.requests = append(k.requests, key)
	if k.onRequest != nil {
		k.onRequest(k, key)
		return nil
	}
	// The kernel's default: an absent or FAILED entry becomes INCOMPLETE.
	if e, ok := k.neigh[key]; !ok || e.state&unix.NUD_FAILED != 0 || e.state == unix.NUD_NONE {
		k.neigh[key] = neighEntry{ip: ip, state: unix.NUD_INCOMPLETE}
	}
	return nil
}

// subscribe hands out the next channel queued in subs; the fake closes nothing itself, a
// test closes the channel to simulate a lost subscription.
func (k *fakeKernel) subscribe(ctx context.Context) (<-chan event, error) {
	k.mu.Lock()
	err := k.subErr
	k.mu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case ch := <-k.subs:
		return ch, nil
	default:
		return make(chan event), nil // never delivers
	}
}

func (k *fakeKernel) close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
	return nil
}

var _ kernel = (*fakeKernel)(nil)
var _ kernel = (*sysKernel)(nil)
