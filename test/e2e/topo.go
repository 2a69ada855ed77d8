//go:build e2e

package e2e

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Topology is what LAN and Router have in common: a client, a balancer
// host, backends, and the switch namespace that joins them.
type Topology struct {
	Switch     *NS // holds the bridges; capture there to see the wire
	Client     *NS
	LB         *NS
	Backends   []*NS
	ClientIP   netip.Addr
	VIP        netip.Addr // not configured anywhere: the test decides
	BackendIPs []netip.Addr
}

// LAN is one 198.18.0.0/24 segment: client .10, lb .2, backends .21, .22, ...
// all on one bridge; the VIP is 198.18.0.100.
type LAN struct {
	Topology
	LBIP   netip.Addr
	Ifname string // the lb's interface, toward everyone
}

// Router puts the lb between two segments: the client net 198.18.1.0/24
// (client .10, default route via the lb's .1) and the backend net
// 198.18.2.0/24 (backends .21, .22, ..., default route via the lb's .1).
// The lb forwards (ip_forward=1); the VIP is 198.18.1.100.
type Router struct {
	Topology
	LBClientIP    netip.Addr // 198.18.1.1
	LBBackendIP   netip.Addr // 198.18.2.1
	ClientIfname  string     // the lb's interface on the client net
	BackendIfname string     // the lb's interface on the backend net
}

// Addresses of the topologies, all in 198.18.0.0/15 (RFC 2544).
const (
	firstBackendHost = 21 // backends are .21, .22, ...
	maxBackends      = 50 // keeps backend hosts below the VIP's .100
	lanPrefix        = "198.18.0."
	routerClientNet  = "198.18.1."
	routerBackendNet = "198.18.2."
	nsIfname         = "eth0" // every host's interface toward the switch
	lbBackendIfname  = "eth1" // the router lb's second arm
)

func addr(net string, host int) netip.Addr { return netip.MustParseAddr(net + strconv.Itoa(host)) }

// macFor gives a host interface a fixed, locally administered MAC derived
// from its IPv4 address (02:00:c6:12:x:y for 198.18.x.y), so captures read
// easily; switch-side ends keep random MACs.
func macFor(a netip.Addr) string {
	b := a.As4()
	return fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}

// link describes a veth pair from a host into the switch.
type link struct {
	host   *NS
	ifname string      // inside host
	port   string      // inside the switch
	bridge string      // the bridge port joins
	ip     netip.Addr  // host address, /24
	gw     *netip.Addr // default route, if any
}

// wire creates veth pairs host↔switch, enslaves the switch ends to their
// bridges, and configures the host ends. Offloads keep the veth defaults.
func wire(t testing.TB, sw *NS, bridges []string, links []link) {
	t.Helper()
	var swCmds []string
	for _, br := range bridges {
		swCmds = append(swCmds, "link add "+br+" type bridge", "link set "+br+" up")
	}
	if err := ipBatch(sw.Name, swCmds); err != nil {
		t.Fatal(err)
	}
	// The switch must only switch: without this, br_netfilter passes bridged
	// frames through the switch namespace's netfilter hooks and conntrack.
	if err := nsSysctl(sw.Name, "net.bridge.bridge-nf-call-iptables=0", "net.bridge.bridge-nf-call-ip6tables=0",
		"net.bridge.bridge-nf-call-arptables=0"); err != nil {
		t.Fatal(err)
	}
	perHost := map[*NS][]string{}
	var hosts []*NS
	swCmds = swCmds[:0]
	for _, l := range links {
		if _, ok := perHost[l.host]; !ok {
			hosts = append(hosts, l.host)
		}
		cmds := []string{
			fmt.Sprintf("link add %s address %s type veth peer name %s netns %s", l.ifname, macFor(l.ip), l.port, sw.Name),
			fmt.Sprintf("addr add %s/24 dev %s", l.ip, l.ifname),
			fmt.Sprintf("link set %s up", l.ifname),
		}
		if l.gw != nil {
			cmds = append(cmds, fmt.Sprintf("route add default via %s dev %s", *l.gw, l.ifname))
		}
		perHost[l.host] = append(perHost[l.host], cmds...)
		swCmds = append(swCmds, fmt.Sprintf("link set %s master %s up", l.port, l.bridge))
	}
	for _, h := range hosts {
		if err := ipBatch(h.Name, perHost[h]); err != nil {
			t.Fatal(err)
		}
	}
	if err := ipBatch(sw.Name, swCmds); err != nil {
		t.Fatal(err)
	}
}

// ipBatch runs ip commands in a namespace with one exec (ip -n NS -batch -).
func ipBatch(ns string, cmds []string) error {
	_, stderr, code, err := executeInput(CommandTimeout, strings.Join(cmds, "\n")+"\n", "ip", "-n", ns, "-batch", "-")
	if err != nil {
		return fmt.Errorf("%s: ip -batch: %w", ns, err)
	}
	if code != 0 {
		return fmt.Errorf("%s: ip -batch: %s", ns, strings.TrimSpace(stderr))
	}
	return nil
}

func backendRoles(n int) []string {
	r := make([]string, n)
	for i := range r {
		r[i] = "be" + strconv.Itoa(i+1)
	}
	return r
}

func checkBackends(t testing.TB, n int) {
	t.Helper()
	if n < 0 || n > maxBackends {
		t.Fatalf("topology with %d backends: want 0 to %d", n, maxBackends)
	}
}

// NewLAN builds the one-segment topology (see LAN) with n backends.
func NewLAN(t testing.TB, n int) *LAN {
	t.Helper()
	checkBackends(t, n)
	ns := newNamespaces(t, append([]string{"sw", "cli", "lb"}, backendRoles(n)...)...)
	l := &LAN{
		Topology: Topology{Switch: ns[0], Client: ns[1], LB: ns[2], Backends: ns[3:],
			ClientIP: addr(lanPrefix, 10), VIP: addr(lanPrefix, 100)},
		LBIP:   addr(lanPrefix, 2),
		Ifname: nsIfname,
	}
	const br = "br0"
	links := []link{
		{host: l.Client, ifname: nsIfname, port: "cli", bridge: br, ip: l.ClientIP},
		{host: l.LB, ifname: nsIfname, port: "lb", bridge: br, ip: l.LBIP},
	}
	for i, b := range l.Backends {
		ip := addr(lanPrefix, firstBackendHost+i)
		l.BackendIPs = append(l.BackendIPs, ip)
		links = append(links, link{host: b, ifname: nsIfname, port: b.Role, bridge: br, ip: ip})
	}
	wire(t, l.Switch, []string{br}, links)
	return l
}

// NewRouter builds the two-segment topology (see Router) with n backends.
func NewRouter(t testing.TB, n int) *Router {
	t.Helper()
	checkBackends(t, n)
	ns := newNamespaces(t, append([]string{"sw", "cli", "lb"}, backendRoles(n)...)...)
	r := &Router{
		Topology: Topology{Switch: ns[0], Client: ns[1], LB: ns[2], Backends: ns[3:],
			ClientIP: addr(routerClientNet, 10), VIP: addr(routerClientNet, 100)},
		LBClientIP:    addr(routerClientNet, 1),
		LBBackendIP:   addr(routerBackendNet, 1),
		ClientIfname:  nsIfname,
		BackendIfname: lbBackendIfname,
	}
	const brClients, brBackends = "brc", "brb"
	links := []link{
		{host: r.Client, ifname: nsIfname, port: "cli", bridge: brClients, ip: r.ClientIP, gw: &r.LBClientIP},
		{host: r.LB, ifname: r.ClientIfname, port: "lbc", bridge: brClients, ip: r.LBClientIP},
		{host: r.LB, ifname: r.BackendIfname, port: "lbb", bridge: brBackends, ip: r.LBBackendIP},
	}
	for i, b := range r.Backends {
		ip := addr(routerBackendNet, firstBackendHost+i)
		r.BackendIPs = append(r.BackendIPs, ip)
		links = append(links, link{host: b, ifname: nsIfname, port: b.Role, bridge: brBackends, ip: ip, gw: &r.LBBackendIP})
	}
	if err := nsSysctl(r.LB.Name, "net.ipv4.ip_forward=1"); err != nil {
		t.Fatal(err)
	}
	wire(t, r.Switch, []string{brClients, brBackends}, links)
	return r
}

// BackendAddrs returns the backends' address:port pairs.
func (tp *Topology) BackendAddrs(port uint16) []netip.AddrPort {
	out := make([]netip.AddrPort, len(tp.BackendIPs))
	for i, ip := range tp.BackendIPs {
		out[i] = netip.AddrPortFrom(ip, port)
	}
	return out
}

// serveReady bounds the wait for "l4echo serve" to listen.
const serveReady = 5 * time.Second

// StartBackends runs "l4echo serve --name beN" on every backend, listening
// on its address and port, and returns once each listens.
func (tp *Topology) StartBackends(t testing.TB, port uint16) []*Proc {
	t.Helper()
	bin := L4echo(t)
	procs := make([]*Proc, len(tp.Backends))
	for i, b := range tp.Backends {
		procs[i] = b.Start(t, bin, "serve", "--listen", netip.AddrPortFrom(tp.BackendIPs[i], port).String(),
			"--name", b.Role, "--cc", congestionControl)
	}
	for _, p := range procs {
		p.WaitFor(t, "msg=serving", serveReady)
	}
	return procs
}
