package datapath_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/l4raw/l4raw/pkg/conntrack"
	"github.com/l4raw/l4raw/pkg/datapath"
	"github.com/l4raw/l4raw/pkg/datapath/datapathtest"
	"github.com/l4raw/l4raw/pkg/forward"
	"github.com/l4raw/l4raw/pkg/nat"
	"github.com/l4raw/l4raw/pkg/packet"
)

func tcpFrame(t *testing.T, src, dst netip.AddrPort, syn, ack bool) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0x10}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
	tc := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), SYN: syn, ACK: ack, Window: 100}
	_ = tc.SetNetworkLayerForChecksum(ip)
	sb := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tc); err != nil {
		t.Fatal(err)
	}
	return append(make([]byte, packet.VnetHdrLen), sb.Bytes()...)
}

// TestLaneForwards runs the whole frame path — lane, parse, connection
// table, NAT, rewrite — over channel-backed sockets.
func TestLaneForwards(t *testing.T) {
	e := forward.New(forward.Config{MaxConns: 100, Workers: 1, Timeouts: conntrack.Timeouts{SYN: time.Minute, Established: time.Hour, FIN: time.Minute, TimeWait: time.Second, Close: time.Second}})
	be := netip.MustParseAddrPort("198.18.0.21:8080")
	if err := e.Apply(forward.Setup{
		Services: []forward.ServiceSpec{{Name: "web", VIP: netip.MustParseAddr("198.18.0.100"), Ports: []uint16{80}, Backends: []forward.BackendSpec{{Addr: be, Weight: 1}}}},
		SNAT:     []netip.Addr{netip.MustParseAddr("198.18.0.2")}, NATPorts: nat.PortRange{Lo: 61000, Hi: 61001},
		Ifaces: []forward.Iface{{Index: 3, MAC: [6]byte{2, 0, 0, 0, 0, 2}}, {Index: 4, MAC: [6]byte{2, 0, 0, 0, 0, 4}}},
	}); err != nil {
		t.Fatal(err)
	}
	e.SetHop(be.Addr(), &forward.Hop{Ifindex: 4, Src: [6]byte{2, 0, 0, 0, 0, 4}, Dst: [6]byte{2, 0, 0, 0, 0, 0x21}})
	e.SetHealth(be, true)

	rx, tx := datapathtest.NewRx(3), datapathtest.NewTx()
	lane := datapath.NewLane(rx, tx, e.Worker(0), 8)
	done := make(chan error, 1)
	go func() { done <- lane.Run() }()

	rx.C <- tcpFrame(t, netip.MustParseAddrPort("198.18.0.10:40000"), netip.MustParseAddrPort("198.18.0.100:80"), true, false)
	rx.C <- tcpFrame(t, netip.MustParseAddrPort("198.18.0.10:40001"), netip.MustParseAddrPort("198.18.0.100:80"), false, true) // no flow: dropped
	select {
	case f := <-tx.C:
		var fr packet.Frame
		if fr.Parse(f.Data, true) != packet.OK || f.Ifindex != 4 {
			t.Fatalf("bad output on if%d", f.Ifindex)
		}
		if tu := fr.Tuple(); tu.Dst != be.Addr().As4() || tu.DstPort != 8080 || tu.SrcPort != 61000 {
			t.Fatalf("rewritten to %+v", tu)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing sent")
	}
	rx.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := e.Stats(); s.RxFrames != 2 || s.TxFrames != 1 || s.Drops[forward.DropNoFlow] != 1 {
		t.Fatalf("counters %+v", s)
	}
	select {
	case f := <-tx.C:
		t.Fatalf("unexpected frame %x", f.Data)
	default:
	}
}
