package forward

import (
	"net/netip"
	"testing"

	"github.com/l4raw/l4raw/pkg/nat"
)

// The scheduler's key carries both hashes: sh keeps one client's
// connections on one backend, maglev spreads them by 4-tuple.
func TestPickKey(t *testing.T) {
	backendsOf := func(sched string, clients, ports int) map[netip.AddrPort]int {
		e := New(Config{MaxConns: 1000, Timeouts: timeouts, Workers: 1})
		var bsp []BackendSpec
		for _, b := range backends {
			bsp = append(bsp, BackendSpec{Addr: b, Weight: 1})
		}
		err := e.Apply(Setup{
			Services: []ServiceSpec{{Name: "web", VIP: vip, Ports: []uint16{80}, Mode: FullNAT, Scheduler: sched, Backends: bsp}},
			SNAT:     []netip.Addr{snat}, NATPorts: nat.PortRange{Lo: 61000, Hi: 65535},
			Ifaces: []Iface{{Index: ifindex, Name: "eth0", MAC: lbMAC}},
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range backends {
			e.SetHop(b.Addr(), &Hop{Ifindex: ifindex, Src: lbMAC, Dst: beMAC})
			e.SetHealth(b, true)
		}
		count := map[netip.AddrPort]int{}
		for c := range clients {
			src := netip.AddrFrom4([4]byte{198, 18, 1, byte(c + 1)})
			for p := range ports {
				out, _ := run(t, e.Worker(0), frame(t, seg{src: ap(src, uint16(20000+p)), dst: ap(vip, 80), srcMAC: clientMAC, syn: true}))
				if out == nil {
					t.Fatalf("%s: dropped", sched)
				}
				tu := out.Tuple()
				count[ap(addrOf(tu.Dst), tu.DstPort)]++
			}
		}
		return count
	}
	if c := backendsOf("sh", 1, 60); len(c) != 1 {
		t.Fatalf("sh sent one client to %v", c)
	}
	// 60 connections over 3 equal backends use all three, but for a
	// chance of about 3 × (2/3)^60 ≈ 10^-10 (the engine's hash seed is
	// random); likewise 60 clients under sh.
	if c := backendsOf("maglev", 1, 60); len(c) != 3 {
		t.Fatalf("maglev sent one client's connections to %v", c)
	}
	if c := backendsOf("sh", 60, 1); len(c) != 3 {
		t.Fatalf("sh sent 60 clients to %v", c)
	}
}
