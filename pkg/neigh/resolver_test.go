package neigh

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	ipOnLink  = netip.MustParseAddr("198.18.3.2")
	ipBehind  = netip.MustParseAddr("198.18.4.7")
	ipGateway = netip.MustParseAddr("198.18.3.254")
	ipLocal   = netip.MustParseAddr("198.18.3.1")
	macB      = mac(0x02, 0, 0, 0, 0, 0x02)
	macGW     = mac(0x02, 0, 0, 0, 0, 0xfe)
)

// fakeTopology: eth0 (2) on 198.18.3.0/24 with a gateway to 198.18.4.0/24, a down eth1 (3), a
// tun0 without MAC (4).
func fakeTopology(t *testing.T) (*fakeKernel, *Resolver) {
	t.Helper()
	k := newFakeKernel()
	k.links[3] = Link{Index: 3, Name: "eth1", MAC: mac(2, 0, 0, 0, 1, 1), MTU: 1500}
	k.links[4] = Link{Index: 4, Name: "tun0", MTU: 1420, Up: true}
	src := ipLocal
	k.routes[ipOnLink] = kernelRoute{linkIndex: 2, typ: unix.RTN_UNICAST, src: src}
	k.routes[netip.MustParseAddr("198.18.3.99")] = kernelRoute{linkIndex: 2, typ: unix.RTN_UNICAST, src: src}
	k.routes[ipGateway] = kernelRoute{linkIndex: 2, typ: unix.RTN_UNICAST, src: src}
	k.routes[ipBehind] = kernelRoute{linkIndex: 2, typ: unix.RTN_UNICAST, gw: ipGateway, src: src}
	k.routes[ipLocal] = kernelRoute{linkIndex: 1, typ: unix.RTN_LOCAL, src: src}
	k.routes[netip.MustParseAddr("198.18.3.255")] = kernelRoute{linkIndex: 2, typ: unix.RTN_BROADCAST, src: src}
	k.routes[netip.MustParseAddr("198.18.6.2")] = kernelRoute{linkIndex: 3, typ: unix.RTN_UNICAST}
	k.routes[netip.MustParseAddr("198.18.7.2")] = kernelRoute{linkIndex: 4, typ: unix.RTN_UNICAST}
	r, err := New(nil, withKernel(k))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return k, r
}

func TestRoute(t *testing.T) {
	_, r := fakeTopology(t)
	tests := []struct {
		name    string
		dst     string
		want    Route
		wantErr string
	}{
		{name: "on-link", dst: "198.18.3.2", want: Route{Dst: ipOnLink, Src: ipLocal}},
		{name: "mapped", dst: "::ffff:198.18.3.2", want: Route{Dst: ipOnLink, Src: ipLocal}},
		{name: "gateway", dst: "198.18.4.7", want: Route{Dst: ipBehind, Gateway: ipGateway, Src: ipLocal}},
		{name: "local", dst: "198.18.3.1", want: Route{Dst: ipLocal, Src: ipLocal, Local: true}},
		{name: "broadcast", dst: "198.18.3.255", wantErr: "neigh: route to 198.18.3.255: route type broadcast, want unicast or local"},
		{name: "unreachable", dst: "198.18.9.9", wantErr: "neigh: route to 198.18.9.9: network is unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Route(netip.MustParseAddr(tt.dst))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Route error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Route: %v", err)
			}
			wantLink := "eth0"
			if tt.want.Local {
				wantLink = "lo"
			}
			if got.Link.Name != wantLink {
				t.Errorf("Route link = %q, want %q", got.Link.Name, wantLink)
			}
			got.Link = Link{}
			if got != tt.want {
				t.Errorf("Route = %+v, want %+v", got, tt.want)
			}
		})
	}
	if _, err := r.Route(netip.Addr{}); err == nil {
		t.Error("Route(invalid) succeeded")
	}
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name    string
		dst     netip.Addr
		setup   func(k *fakeKernel)
		timeout time.Duration
		wantMAC [6]byte
		wantReq int
		// wantErr lists substrings of the error; wantIs the errors it must wrap.
		wantErr []string
		wantIs  []error
	}{
		{
			name:    "reachable, no request",
			dst:     ipOnLink,
			setup:   func(k *fakeKernel) { k.setNeigh(2, ipOnLink, unix.NUD_REACHABLE, macB) },
			wantMAC: macB,
		},
		{
			name:    "stale is usable",
			dst:     ipOnLink,
			setup:   func(k *fakeKernel) { k.setNeigh(2, ipOnLink, unix.NUD_STALE, macB) },
			wantMAC: macB,
		},
		{
			name:    "gateway's MAC",
			dst:     ipBehind,
			setup:   func(k *fakeKernel) { k.setNeigh(2, ipGateway, unix.NUD_REACHABLE, macGW) },
			wantMAC: macGW,
		},
		{
			name: "absent, resolved after the request",
			dst:  ipOnLink,
			setup: func(k *fakeKernel) {
				lists := 0
				k.onList = func(k *fakeKernel) {
					if lists++; lists == 3 {
						k.neigh[hopKey{2, ipOnLink}] = neighEntry{ip: ipOnLink, state: unix.NUD_REACHABLE, mac: macB, hasMAC: true}
					}
				}
			},
			wantMAC: macB,
			wantReq: 1,
		},
		{
			name: "failed entry is re-requested",
			dst:  ipOnLink,
			setup: func(k *fakeKernel) {
				k.setNeigh(2, ipOnLink, unix.NUD_FAILED, [6]byte{})
				lists := 0
				k.onList = func(k *fakeKernel) {
					if lists++; lists == 2 {
						k.neigh[hopKey{2, ipOnLink}] = neighEntry{ip: ipOnLink, state: unix.NUD_REACHABLE, mac: macB, hasMAC: true}
					}
				}
			},
			wantMAC: macB,
			wantReq: 1,
		},
		{
			name: "deleted while waiting: asked again",
			dst:  ipOnLink,
			setup: func(k *fakeKernel) {
				lists := 0
				k.onList = func(k *fakeKernel) {
					switch lists++; lists {
					case 2:
						delete(k.neigh, hopKey{2, ipOnLink})
					case 4:
						k.neigh[hopKey{2, ipOnLink}] = neighEntry{ip: ipOnLink, state: unix.NUD_REACHABLE, mac: macB, hasMAC: true}
					}
				}
			},
			wantMAC: macB,
			wantReq: 2,
		},
		{
			name: "kernel gives up",
			dst:  netip.MustParseAddr("198.18.3.99"),
			setup: func(k *fakeKernel) {
				lists := 0
				k.onList = func(k *fakeKernel) {
					if lists++; lists == 3 {
						ip := netip.MustParseAddr("198.18.3.99")
						k.neigh[hopKey{2, ip}] = neighEntry{ip: ip, state: unix.NUD_FAILED}
					}
				}
			},
			wantReq: 1,
			wantErr: []string{"neigh: resolve 198.18.3.99 on eth0: neighbour not resolved (state FAILED"},
			wantIs:  []error{ErrUnresolved},
		},
		{
			name:    "deadline while incomplete",
			dst:     ipBehind,
			timeout: 30 * time.Millisecond,
			wantReq: 1,
			wantErr: []string{"neigh: resolve 198.18.4.7 via 198.18.3.254 on eth0: neighbour not resolved (state INCOMPLETE): context deadline exceeded"},
			wantIs:  []error{ErrUnresolved, context.DeadlineExceeded},
		},
		{
			name:    "request rejected",
			dst:     ipOnLink,
			setup:   func(k *fakeKernel) { k.reqErr = unix.EINVAL },
			wantErr: []string{"neigh: resolve 198.18.3.2 on eth0: request resolution: invalid argument"},
			wantIs:  []error{unix.EINVAL},
		},
		{
			name:    "interface down",
			dst:     netip.MustParseAddr("198.18.6.2"),
			wantErr: []string{"interface eth1 is down"},
		},
		{
			name:    "interface without MAC",
			dst:     netip.MustParseAddr("198.18.7.2"),
			wantErr: []string{"interface tun0 has no ethernet address"},
		},
		{
			name:    "no route",
			dst:     netip.MustParseAddr("198.18.9.9"),
			wantErr: []string{"route to 198.18.9.9"},
			wantIs:  []error{unix.ENETUNREACH},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, r := fakeTopology(t)
			if tt.setup != nil {
				tt.setup(k)
			}
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 2 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			start := time.Now()
			nh, err := r.Resolve(ctx, tt.dst)
			if el := time.Since(start); el > timeout+time.Second {
				t.Errorf("Resolve took %v with a %v deadline", el, timeout)
			}
			if got := k.requestCount(); got != tt.wantReq {
				t.Errorf("requests = %d, want %d", got, tt.wantReq)
			}
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("Resolve = %+v, want error", nh)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				for _, e := range tt.wantIs {
					if !errors.Is(err, e) {
						t.Errorf("error %q does not wrap %v", err, e)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if nh.DstMAC != tt.wantMAC || nh.Link.Name != "eth0" || nh.Dst != tt.dst {
				t.Errorf("Resolve = %+v, want MAC %s on eth0", nh, macString(tt.wantMAC))
			}
		})
	}
}

func TestResolveLocal(t *testing.T) {
	k, r := fakeTopology(t)
	nh, err := r.Resolve(context.Background(), ipLocal)
	if err != nil {
		t.Fatal(err)
	}
	if !nh.Local || !nh.Link.Loopback || nh.DstMAC != [6]byte{} {
		t.Errorf("Resolve(local) = %+v, want Local on lo with zero MAC", nh)
	}
	if k.requestCount() != 0 {
		t.Errorf("Resolve(local) sent %d requests", k.requestCount())
	}
}

func TestResolveDefaultTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("waits DefaultResolveTimeout")
	}
	_, r := fakeTopology(t)
	start := time.Now()
	_, err := r.Resolve(context.Background(), ipOnLink) // stays INCOMPLETE
	el := time.Since(start)
	if !errors.Is(err, ErrUnresolved) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want ErrUnresolved and DeadlineExceeded", err)
	}
	if el < DefaultResolveTimeout || el > DefaultResolveTimeout+time.Second {
		t.Errorf("Resolve without deadline took %v, want about %v", el, DefaultResolveTimeout)
	}
}

func TestLinks(t *testing.T) {
	_, r := fakeTopology(t)
	ls, err := r.Links()
	if err != nil || len(ls) != 4 {
		t.Fatalf("Links = %v, %v; want 4 links", ls, err)
	}
	if l, err := r.LinkByName("eth0"); err != nil || l.Index != 2 {
		t.Errorf("LinkByName(eth0) = %+v, %v", l, err)
	}
	if l, err := r.LinkByIndex(1); err != nil || l.Name != "lo" {
		t.Errorf("LinkByIndex(1) = %+v, %v", l, err)
	}
	if _, err := r.LinkByName("eth9"); !errors.Is(err, unix.ENODEV) || err.Error() != `neigh: link "eth9": no such device` {
		t.Errorf("LinkByName(eth9) error = %v", err)
	}
	if _, err := r.LinkByIndex(42); !errors.Is(err, unix.ENODEV) {
		t.Errorf("LinkByIndex(42) error = %v", err)
	}
}

func TestAddrOwnerConnectedLink(t *testing.T) {
	k, r := fakeTopology(t)
	k.links[5] = Link{Index: 5, Name: "ppp0", MTU: 1492, Up: true}
	pfx := netip.MustParsePrefix
	k.addrs = []ifAddr{
		{linkIndex: 1, prefix: pfx("127.0.0.1/8")},
		{linkIndex: 1, prefix: pfx("198.18.5.5/32")},
		{linkIndex: 2, prefix: pfx("198.18.0.10/16")},
		{linkIndex: 2, prefix: pfx("198.18.3.1/24")},
		{linkIndex: 3, prefix: pfx("198.18.6.1/24")},
		{linkIndex: 5, prefix: pfx("198.18.8.1/32"), peer: pfx("198.18.8.2/32")},
	}
	owners := []struct {
		ip, link string
	}{
		{"198.18.3.1", "eth0"},
		{"198.18.5.5", "lo"},
		{"::ffff:198.18.5.5", "lo"},
		{"198.18.8.1", "ppp0"},
		{"198.18.3.2", ""},
		{"198.18.8.2", ""},
	}
	for _, tt := range owners {
		l, ok, err := r.AddrOwner(netip.MustParseAddr(tt.ip))
		if err != nil || ok != (tt.link != "") || l.Name != tt.link {
			t.Errorf("AddrOwner(%s) = %q, %v, %v; want %q", tt.ip, l.Name, ok, err, tt.link)
		}
	}
	connected := []struct {
		ip, link, prefix string
	}{
		{"198.18.3.200", "eth0", "198.18.3.0/24"}, // /24 beats /16
		{"198.18.200.1", "eth0", "198.18.0.0/16"},
		{"198.18.6.9", "eth1", "198.18.6.0/24"}, // down links still have their prefixes
		{"198.18.8.2", "ppp0", "198.18.8.2/32"}, // the point-to-point peer
		{"127.0.0.5", "", ""},                   // loopback is not a LAN
		{"198.18.5.5", "eth0", "198.18.0.0/16"}, // its /32 on lo connects nothing
		{"198.19.0.1", "", ""},
	}
	for _, tt := range connected {
		l, p, ok, err := r.ConnectedLink(netip.MustParseAddr(tt.ip))
		if err != nil || ok != (tt.link != "") || l.Name != tt.link {
			t.Errorf("ConnectedLink(%s) = %q, %v, %v; want %q", tt.ip, l.Name, ok, err, tt.link)
			continue
		}
		if ok && p != netip.MustParsePrefix(tt.prefix) {
			t.Errorf("ConnectedLink(%s) prefix = %s, want %s", tt.ip, p, tt.prefix)
		}
	}
}
