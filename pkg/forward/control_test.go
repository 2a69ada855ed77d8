package forward

import (
	"net/netip"
	"testing"
	"time"

	"github.com/l4raw/l4raw/pkg/conntrack"
	"github.com/l4raw/l4raw/pkg/nat"
	"github.com/l4raw/l4raw/pkg/packet"
)

func setup(states []MemberState, reset bool, ports nat.PortRange) Setup {
	var bsp []BackendSpec
	for i, b := range backends {
		st := Ready
		if i < len(states) {
			st = states[i]
		}
		bsp = append(bsp, BackendSpec{Addr: b, Weight: 1, State: st})
	}
	return Setup{
		Services: []ServiceSpec{{Name: "web", VIP: vip, Ports: []uint16{80}, Scheduler: "rr", Backends: bsp, ResetOnMaint: reset}},
		SNAT:     []netip.Addr{snat}, NATPorts: ports,
		Ifaces: []Iface{{Index: ifindex, Name: "eth0", MAC: lbMAC}},
	}
}

func syn(port uint16) seg {
	return seg{src: ap(client, port), dst: ap(vip, 80), srcMAC: clientMAC, syn: true, seq: 1}
}

func backendOf(f *packet.Frame) netip.AddrPort {
	tu := f.Tuple()
	return ap(addrOf(tu.Dst), tu.DstPort)
}

func TestDrainAndMaint(t *testing.T) {
	e := newEngine(t, FullNAT, true)
	w := e.Worker(0)
	// A connection on each backend.
	for i := 0; i < 3; i++ {
		run(t, w, frame(t, syn(uint16(100+i))))
	}
	// be1 drains, be2 goes to maint with reset: new connections go to be3 only.
	if err := e.Apply(setup([]MemberState{Drain, Maint}, true, nat.PortRange{Lo: 61000, Hi: 65535})); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		out, _ := run(t, w, frame(t, syn(uint16(200+i))))
		if out == nil || backendOf(out) != backends[2] {
			t.Fatalf("new connection went to %v", backendOf(out))
		}
	}
	// The drained backend's connection continues.
	if out, _ := run(t, w, frame(t, seg{src: ap(client, 100), dst: ap(vip, 80), srcMAC: clientMAC, ack: true, seq: 2, ackn: 9})); out == nil || backendOf(out) != backends[0] {
		t.Fatal("drained backend's connection stopped")
	}
	// The maint backend's connection is answered with a RST to the client.
	out, _ := run(t, w, frame(t, seg{src: ap(client, 101), dst: ap(vip, 80), srcMAC: clientMAC, ack: true, seq: 2, ackn: 777}))
	if out == nil || out.TCP.Flags() != packet.TCPFlagRST || out.TCP.Seq() != 777 || out.Tuple().Dst != client.As4() {
		t.Fatalf("maint+reset: %+v", out)
	}
	// Service IDs survive the Apply.
	if e.Services()[0].ID != 0 || e.ServiceByID(0) == nil {
		t.Fatal("service ID changed")
	}
}

func TestMaintKeep(t *testing.T) {
	e := newEngine(t, FullNAT, true)
	w := e.Worker(0)
	run(t, w, frame(t, syn(100))) // to be1
	if err := e.Apply(setup([]MemberState{Maint}, false, nat.PortRange{Lo: 61000, Hi: 65535})); err != nil {
		t.Fatal(err)
	}
	if out, _ := run(t, w, frame(t, seg{src: ap(client, 100), dst: ap(vip, 80), srcMAC: clientMAC, ack: true})); out == nil || backendOf(out) != backends[0] {
		t.Fatal("maint with keep stopped an existing connection")
	}
}

func TestApplyAtomic(t *testing.T) {
	e := newEngine(t, FullNAT, true)
	bad := setup(nil, false, nat.PortRange{Lo: 61000, Hi: 65535})
	bad.Services[0].Backends = append(bad.Services[0].Backends, BackendSpec{Addr: netip.MustParseAddrPort("198.18.0.99:80"), Weight: 1},
		BackendSpec{Addr: backends[0], Weight: 1})
	if err := e.Apply(bad); err == nil {
		t.Fatal("duplicate backend accepted")
	}
	if len(e.Backends()) != 3 {
		t.Fatalf("a failed Apply left %d backends", len(e.Backends()))
	}
	good := setup(nil, false, nat.PortRange{Lo: 61000, Hi: 65535})
	good.Services[0].Backends = append(good.Services[0].Backends, BackendSpec{Addr: netip.MustParseAddrPort("198.18.0.99:80"), Weight: 1})
	if err := e.Apply(good); err != nil || len(e.Backends()) != 4 || e.Backends()[3].ID != 3 {
		t.Fatalf("apply: %v, %d backends", err, len(e.Backends()))
	}
}

// TestNATTakeover: with every NAT port held by connections that have ended
// and linger, a new connection takes over the port of one of them (the same
// client's first) instead of being dropped.
func TestNATTakeover(t *testing.T) {
	e := New(Config{MaxConns: 100, Timeouts: timeouts, Workers: 1})
	s := setup(nil, false, nat.PortRange{Lo: 61000, Hi: 61001})
	s.Services[0].Backends = s.Services[0].Backends[:1]
	if err := e.Apply(s); err != nil {
		t.Fatal(err)
	}
	e.SetHop(backends[0].Addr(), &Hop{Ifindex: ifindex, Src: lbMAC, Dst: beMAC})
	e.SetHealth(backends[0], true)
	w := e.Worker(0)
	ports := map[uint16]uint16{} // client port -> NAT port
	for _, cp := range []uint16{100, 101} {
		out, _ := run(t, w, frame(t, syn(cp)))
		ports[cp] = out.Tuple().SrcPort
	}
	if out, _ := run(t, w, frame(t, syn(102))); out != nil {
		t.Fatal("a third connection got a port while both are in use")
	}
	// Connection 101 ends: the backend closes first, the client answers.
	natp := ap(snat, ports[101])
	run(t, w, frame(t, seg{src: backends[0], dst: natp, srcMAC: beMAC, syn: true, ack: true}))
	run(t, w, frame(t, seg{src: ap(client, 101), dst: ap(vip, 80), srcMAC: clientMAC, ack: true}))
	run(t, w, frame(t, seg{src: backends[0], dst: natp, srcMAC: beMAC, fin: true, ack: true}))
	run(t, w, frame(t, seg{src: ap(client, 101), dst: ap(vip, 80), srcMAC: clientMAC, fin: true, ack: true}))
	// The same client opens another connection: once 101 has lingered
	// nat.MinLinger, it takes 101's port.
	time.Sleep((nat.MinLinger + 10) * time.Millisecond)
	out, _ := run(t, w, frame(t, syn(103)))
	if out == nil || out.Tuple().SrcPort != ports[101] {
		t.Fatalf("no takeover: %+v drops %+v", out, e.Stats().Drops)
	}
	if s := e.Stats(); s.NATTakeover != 1 || s.NATEarlyReuse != 0 {
		t.Fatalf("takeover %d early %d", s.NATTakeover, s.NATEarlyReuse)
	}
	var fl conntrack.Flow
	k := conntrack.Tuple{Src: conntrack.AddrFrom4(client.As4()), Dst: conntrack.AddrFrom4(vip.As4()), SrcPort: 101, DstPort: 80, Proto: 6}
	if e.Table().Lookup(&k, conntrack.Orig, &fl) {
		t.Fatal("the lingering connection is still in the table")
	}
}

func TestPassiveOutcomes(t *testing.T) {
	e := New(Config{MaxConns: 100, Timeouts: timeouts, Workers: 1})
	s := setup(nil, false, nat.PortRange{Lo: 61000, Hi: 65535})
	s.Services[0].Backends = s.Services[0].Backends[:1]
	if err := e.Apply(s); err != nil {
		t.Fatal(err)
	}
	e.SetHop(backends[0].Addr(), &Hop{Ifindex: ifindex, Src: lbMAC, Dst: beMAC})
	e.SetHealth(backends[0], true)
	w := e.Worker(0)
	b := e.Backends()[0]
	// Refused: the backend answers the SYN with a RST.
	out, _ := run(t, w, frame(t, syn(100)))
	run(t, w, frame(t, seg{src: backends[0], dst: ap(snat, out.Tuple().SrcPort), srcMAC: beMAC, rst: true, ack: true}))
	// Unanswered: the client retransmits its SYN.
	run(t, w, frame(t, syn(101)))
	run(t, w, frame(t, syn(101)))
	// Answered.
	out, _ = run(t, w, frame(t, syn(102)))
	run(t, w, frame(t, seg{src: backends[0], dst: ap(snat, out.Tuple().SrcPort), srcMAC: beMAC, syn: true, ack: true}))
	if a, r, rt := b.SynOutcomes(); a != 1 || r != 1 || rt != 1 {
		t.Fatalf("answered %d refused %d retried %d", a, r, rt)
	}
}

// TestNewPortKeepsHop: a new endpoint on an address whose next hop is known
// (a service port added by a reload) forwards at once.
func TestNewPortKeepsHop(t *testing.T) {
	e := newEngine(t, FullNAT, true)
	s := setup(nil, false, nat.PortRange{Lo: 61000, Hi: 65535})
	s.Services[0].Ports = []uint16{80, 81}
	for i := range s.Services[0].Backends {
		s.Services[0].Backends[i].Addr = netip.AddrPortFrom(backends[i].Addr(), 0)
	}
	if err := e.Apply(s); err != nil {
		t.Fatal(err)
	}
	for _, b := range backends {
		e.SetHealth(netip.AddrPortFrom(b.Addr(), 81), true)
	}
	if out, _ := run(t, e.Worker(0), frame(t, seg{src: ap(client, 300), dst: ap(vip, 81), srcMAC: clientMAC, syn: true})); out == nil {
		t.Fatalf("new port: SYN dropped: %+v", e.Stats().Drops)
	}
}

// TestEstablishedCount: a backend's ESTABLISHED connections are counted
// apart from the ones in their handshake or closing (IPVS's ActiveConn and
// InActConn).
func TestEstablishedCount(t *testing.T) {
	e := newEngine(t, FullNAT, true)
	w := e.Worker(0)
	out, _ := run(t, w, frame(t, syn(500)))
	natp := ap(snat, out.Tuple().SrcPort)
	b := e.Backends()[0]
	run(t, w, frame(t, seg{src: backends[0], dst: natp, srcMAC: beMAC, syn: true, ack: true}))
	if b.Active() != 1 || b.Established() != 0 {
		t.Fatalf("handshake: active %d established %d", b.Active(), b.Established())
	}
	run(t, w, frame(t, seg{src: ap(client, 500), dst: ap(vip, 80), srcMAC: clientMAC, ack: true}))
	if b.Established() != 1 {
		t.Fatalf("established %d", b.Established())
	}
	run(t, w, frame(t, seg{src: ap(client, 500), dst: ap(vip, 80), srcMAC: clientMAC, fin: true, ack: true}))
	if b.Active() != 1 || b.Established() != 0 {
		t.Fatalf("closing: active %d established %d", b.Active(), b.Established())
	}
}
