package forward

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/l4raw/l4raw/pkg/conntrack"
	"github.com/l4raw/l4raw/pkg/nat"
	"github.com/l4raw/l4raw/pkg/packet"
)

var (
	clientMAC = [6]byte{2, 0, 0, 0, 0, 0x10}
	lbMAC     = [6]byte{2, 0, 0, 0, 0, 0x02}
	beMAC     = [6]byte{2, 0, 0, 0, 0, 0x21}
	vip       = netip.MustParseAddr("198.18.0.100")
	snat      = netip.MustParseAddr("198.18.0.2")
	client    = netip.MustParseAddr("198.18.0.10")
	backends  = []netip.AddrPort{netip.MustParseAddrPort("198.18.0.21:8080"), netip.MustParseAddrPort("198.18.0.22:8080"), netip.MustParseAddrPort("198.18.0.23:8080")}
	timeouts  = conntrack.Timeouts{SYN: time.Minute, Established: 15 * time.Minute, FIN: 2 * time.Minute, TimeWait: 10 * time.Second, Close: 10 * time.Second}
)

const ifindex = 7

func newEngine(t testing.TB, mode Mode, up bool) *Engine {
	t.Helper()
	e := New(Config{MaxConns: 1000, Timeouts: timeouts, Workers: 2})
	var bsp []BackendSpec
	for _, b := range backends {
		bsp = append(bsp, BackendSpec{Addr: b, Weight: 1})
	}
	err := e.Apply(Setup{
		Services: []ServiceSpec{{Name: "web", VIP: vip, Ports: []uint16{80}, Mode: mode, Scheduler: "rr", Backends: bsp}},
		SNAT:     []netip.Addr{snat}, NATPorts: nat.PortRange{Lo: 61000, Hi: 65535},
		Ifaces: []Iface{{Index: ifindex, Name: "eth0", MAC: lbMAC}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range backends {
		e.SetHop(b.Addr(), &Hop{Ifindex: ifindex, Src: lbMAC, Dst: beMAC})
		e.SetHealth(b, up)
	}
	return e
}

type seg struct {
	src, dst     netip.AddrPort
	srcMAC       [6]byte
	syn, ack     bool
	fin, rst     bool
	seq, ackn    uint32
	payload      int
	partial, gso bool
	ts           bool // add a timestamp option with tsval/tsecr
	tsval, tsecr uint32
}

func frame(t testing.TB, s seg) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(s.srcMAC[:]), DstMAC: net.HardwareAddr(lbMAC[:]), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: s.src.Addr().AsSlice(), DstIP: s.dst.Addr().AsSlice(), Flags: layers.IPv4DontFragment}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(s.src.Port()), DstPort: layers.TCPPort(s.dst.Port()), SYN: s.syn, ACK: s.ack, FIN: s.fin, RST: s.rst, Seq: s.seq, Ack: s.ackn, Window: 1000}
	if s.ts {
		d := make([]byte, 8)
		binary.BigEndian.PutUint32(d, s.tsval)
		binary.BigEndian.PutUint32(d[4:], s.tsecr)
		tcp.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: d}}
	}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	sb := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp, gopacket.Payload(make([]byte, s.payload))); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, packet.VnetHdrLen+len(sb.Bytes()), 70000)
	copy(b[packet.VnetHdrLen:], sb.Bytes())
	if s.partial {
		var f packet.Frame
		f.Parse(b, true)
		f.TCP.SetChecksum(packet.PseudoSum(f.IP.Src(), f.IP.Dst(), packet.ProtocolTCP, uint16(len(f.TCP))))
		v := packet.VnetHdr(b)
		v.SetFlags(packet.VnetFlagNeedsCsum)
		v.SetCsumStart(uint16(f.L4Off))
		v.SetCsumOffset(packet.TCPChecksumOffset)
		if s.gso {
			v.SetGSOType(packet.VnetGSOTCPv4)
			v.SetGSOSize(1448)
		}
	}
	return b
}

// run sends one frame through worker w and returns the parsed output (nil if dropped).
func run(t testing.TB, w *Worker, b []byte) (*packet.Frame, int) {
	t.Helper()
	bufs, sizes, ifs := [][]byte{b[:cap(b)]}, []int{len(b)}, []int{ifindex}
	w.Process(bufs, sizes, ifs)
	if sizes[0] == 0 {
		return nil, 0
	}
	var f packet.Frame
	if r := f.Parse(bufs[0][:sizes[0]], true); r != packet.OK {
		t.Fatalf("output does not parse: %v", r)
	}
	checkSums(t, &f)
	return &f, ifs[0]
}

func checkSums(t testing.TB, f *packet.Frame) {
	t.Helper()
	if f.IP.Checksum() != f.IP.CalculateChecksum() {
		t.Fatalf("bad IP checksum")
	}
	if f.Partial() {
		if f.TCP.Checksum() != packet.PseudoSum(f.IP.Src(), f.IP.Dst(), packet.ProtocolTCP, uint16(len(f.TCP))) {
			t.Fatalf("bad TCP seed")
		}
	} else if f.TCP.Checksum() != f.TCP.CalculateChecksum(f.IP.Src(), f.IP.Dst()) {
		t.Fatalf("bad TCP checksum")
	}
}

func ap(a netip.Addr, p uint16) netip.AddrPort { return netip.AddrPortFrom(a, p) }
func addrOf(a [4]byte) netip.Addr              { return netip.AddrFrom4(a) }

func TestFullNATConnection(t *testing.T) {
	e := newEngine(t, FullNAT, true)
	w0, w1 := e.Worker(0), e.Worker(1)
	cli, svc := ap(client, 40000), ap(vip, 80)

	out, oif := run(t, w0, frame(t, seg{src: cli, dst: svc, srcMAC: clientMAC, syn: true, seq: 100}))
	if out == nil || oif != ifindex {
		t.Fatalf("SYN not forwarded: %+v", e.Stats().Drops)
	}
	tu := out.Tuple()
	be := ap(addrOf(tu.Dst), tu.DstPort)
	if be != backends[0] || addrOf(tu.Src) != snat || tu.SrcPort < 61000 || out.Eth.Dst() != beMAC || out.Eth.Src() != lbMAC {
		t.Fatalf("SYN rewritten to %+v macs %x %x", tu, out.Eth.Src(), out.Eth.Dst())
	}
	natp := ap(snat, tu.SrcPort)

	// The reply, handled by the other worker (PACKET_FANOUT hashes the two directions apart).
	out, _ = run(t, w1, frame(t, seg{src: be, dst: natp, srcMAC: beMAC, syn: true, ack: true, seq: 5000, ackn: 101}))
	if out == nil {
		t.Fatalf("SYN-ACK not forwarded: %+v", e.Stats().Drops)
	}
	if got := out.Tuple(); got != (packet.Tuple4{Src: vip.As4(), Dst: client.As4(), SrcPort: 80, DstPort: 40000}) || out.Eth.Dst() != clientMAC || out.Eth.Src() != lbMAC {
		t.Fatalf("SYN-ACK rewritten to %+v", got)
	}
	// Data both ways, including a 64 KiB GSO frame with a partial checksum.
	if out, _ = run(t, w0, frame(t, seg{src: cli, dst: svc, srcMAC: clientMAC, ack: true, seq: 101, ackn: 5001, payload: 65000, partial: true, gso: true})); out == nil || !out.Partial() || len(out.Payload()) != 65000 {
		t.Fatal("GSO frame not forwarded intact")
	}
	if out, _ = run(t, w1, frame(t, seg{src: be, dst: natp, srcMAC: beMAC, ack: true, payload: 1000})); out == nil {
		t.Fatal("reply data dropped")
	}
	var fl conntrack.Flow
	k := conntrack.Tuple{Src: conntrack.AddrFrom4(client.As4()), Dst: conntrack.AddrFrom4(vip.As4()), SrcPort: 40000, DstPort: 80, Proto: 6}
	if !e.Table().Lookup(&k, conntrack.Orig, &fl) || fl.State != conntrack.Established {
		t.Fatalf("state %v", fl.State)
	}
	// Close: backend FIN, client FIN+ACK, last ACK still forwarded.
	run(t, w1, frame(t, seg{src: be, dst: natp, srcMAC: beMAC, fin: true, ack: true}))
	run(t, w0, frame(t, seg{src: cli, dst: svc, srcMAC: clientMAC, fin: true, ack: true}))
	if out, _ = run(t, w1, frame(t, seg{src: be, dst: natp, srcMAC: beMAC, ack: true})); out == nil {
		t.Fatal("last ACK dropped after two FINs")
	}
	e.Table().Lookup(&k, conntrack.Orig, &fl)
	if fl.State != conntrack.TimeWait {
		t.Fatalf("state %v", fl.State)
	}
	b := e.Backends()[0]
	if c := b.Stats(); c.Conns != 1 || c.PktsIn != 3 || c.PktsOut != 4 || b.Active() != 1 || b.NATPortsInUse() != 1 {
		t.Fatalf("backend counters %+v active %d ports %d", c, b.Active(), b.NATPortsInUse())
	}
	// After the linger the entry and its port are gone.
	e.Table().Expire(e.Now()+12_100, 100)
	if e.Table().Len() != 0 || b.Active() != 0 || b.NATPortsInUse() != 0 {
		t.Fatalf("after expiry: len %d active %d ports %d", e.Table().Len(), b.Active(), b.NATPortsInUse())
	}
}

func TestRoundRobinSpread(t *testing.T) {
	e := newEngine(t, FullNAT, true)
	count := map[netip.AddrPort]int{}
	for i := 0; i < 300; i++ {
		out, _ := run(t, e.Worker(i%2), frame(t, seg{src: ap(client, uint16(20000+i)), dst: ap(vip, 80), srcMAC: clientMAC, syn: true}))
		if out == nil {
			t.Fatal("dropped")
		}
		tu := out.Tuple()
		count[ap(addrOf(tu.Dst), tu.DstPort)]++
	}
	for _, b := range backends {
		if count[b] != 100 {
			t.Fatalf("spread %v", count)
		}
	}
}

func TestRetransmittedSYN(t *testing.T) {
	e := newEngine(t, FullNAT, true)
	syn := seg{src: ap(client, 40000), dst: ap(vip, 80), srcMAC: clientMAC, syn: true, seq: 7}
	a, _ := run(t, e.Worker(0), frame(t, syn))
	b, _ := run(t, e.Worker(1), frame(t, syn))
	if a == nil || b == nil || a.Tuple() != b.Tuple() || e.Table().Len() != 1 || e.Stats().NewConns != 1 {
		t.Fatalf("retransmitted SYN: len %d new %d", e.Table().Len(), e.Stats().NewConns)
	}
}

func TestNoBackendRST(t *testing.T) {
	e := newEngine(t, FullNAT, false)
	out, oif := run(t, e.Worker(0), frame(t, seg{src: ap(client, 40000), dst: ap(vip, 80), srcMAC: clientMAC, syn: true, seq: 41}))
	if out == nil || oif != ifindex {
		t.Fatal("no RST")
	}
	if fl := out.TCP.Flags(); fl != packet.TCPFlagRST|packet.TCPFlagACK || out.TCP.Ack() != 42 || out.Eth.Dst() != clientMAC ||
		out.Tuple() != (packet.Tuple4{Src: vip.As4(), Dst: client.As4(), SrcPort: 80, DstPort: 40000}) {
		t.Fatalf("RST %+v flags %#x", out.Tuple(), fl)
	}
	if s := e.Stats(); s.RSTSent != 1 || s.Drops[DropNoBackend] != 1 || e.Table().Len() != 0 {
		t.Fatalf("stats %+v", s)
	}
	// One backend comes back: connections go to it only.
	e.SetHealth(backends[1], true)
	for i := 0; i < 3; i++ {
		out, _ := run(t, e.Worker(0), frame(t, seg{src: ap(client, uint16(41000+i)), dst: ap(vip, 80), srcMAC: clientMAC, syn: true}))
		if out == nil || ap(addrOf(out.Tuple().Dst), out.Tuple().DstPort) != backends[1] {
			t.Fatal("not sent to the live backend")
		}
	}
}

func TestDNAT(t *testing.T) {
	e := newEngine(t, DNAT, true)
	out, _ := run(t, e.Worker(0), frame(t, seg{src: ap(client, 40000), dst: ap(vip, 80), srcMAC: clientMAC, syn: true}))
	if out == nil || out.Tuple() != (packet.Tuple4{Src: client.As4(), Dst: backends[0].Addr().As4(), SrcPort: 40000, DstPort: 8080}) {
		t.Fatalf("DNAT SYN: %+v", out.Tuple())
	}
	out, _ = run(t, e.Worker(1), frame(t, seg{src: backends[0], dst: ap(client, 40000), srcMAC: beMAC, syn: true, ack: true}))
	if out == nil || out.Tuple() != (packet.Tuple4{Src: vip.As4(), Dst: client.As4(), SrcPort: 80, DstPort: 40000}) {
		t.Fatal("DNAT reply")
	}
}

func TestDropsAreCounted(t *testing.T) {
	e := newEngine(t, FullNAT, true)
	w := e.Worker(0)
	if out, _ := run(t, w, frame(t, seg{src: ap(client, 1), dst: ap(vip, 80), srcMAC: clientMAC, ack: true})); out != nil {
		t.Fatal("ACK without a connection forwarded")
	}
	if out, _ := run(t, w, frame(t, seg{src: backends[0], dst: ap(snat, 61000), srcMAC: beMAC, ack: true})); out != nil {
		t.Fatal("reply without a connection forwarded")
	}
	bad := frame(t, seg{src: ap(client, 1), dst: ap(vip, 80), srcMAC: clientMAC, syn: true})
	bad[packet.VnetHdrLen+packet.EthernetLen] = 0x44 // IHL 4
	if out, _ := run(t, w, bad); out != nil {
		t.Fatal("malformed frame forwarded")
	}
	s := e.Stats()
	if s.Drops[DropNoFlow] != 1 || s.Drops[DropNoFlowReply] != 1 || s.Malformed[packet.ErrIPHeaderLen] != 1 || s.RxFrames != 3 || s.TxFrames != 0 {
		t.Fatalf("counters %+v", s)
	}
}

func TestTableFull(t *testing.T) {
	e := New(Config{MaxConns: 2, Timeouts: timeouts, Workers: 1})
	if err := e.Apply(Setup{Services: []ServiceSpec{{Name: "s", VIP: vip, Ports: []uint16{80}, Backends: []BackendSpec{{Addr: backends[0], Weight: 1}}}},
		SNAT: []netip.Addr{snat}, NATPorts: nat.PortRange{Lo: 61000, Hi: 61010}, Ifaces: []Iface{{Index: ifindex, MAC: lbMAC}}}); err != nil {
		t.Fatal(err)
	}
	e.SetHop(backends[0].Addr(), &Hop{Ifindex: ifindex, Src: lbMAC, Dst: beMAC})
	e.SetHealth(backends[0], true)
	w := e.Worker(0)
	for i := 0; i < 3; i++ {
		run(t, w, frame(t, seg{src: ap(client, uint16(100+i)), dst: ap(vip, 80), srcMAC: clientMAC, syn: true}))
	}
	if e.Stats().Drops[DropTableFull] != 1 || e.Backends()[0].NATPortsInUse() != 2 {
		t.Fatalf("full: %+v ports %d", e.Stats().Drops, e.Backends()[0].NATPortsInUse())
	}
	// Established flows still pass.
	if out, _ := run(t, w, frame(t, seg{src: ap(client, 100), dst: ap(vip, 80), srcMAC: clientMAC, ack: true})); out == nil {
		t.Fatal("existing flow dropped when full")
	}
}

func TestProcessAllocs(t *testing.T) {
	e := newEngine(t, FullNAT, true)
	w := e.Worker(0)
	syn := frame(t, seg{src: ap(client, 40000), dst: ap(vip, 80), srcMAC: clientMAC, syn: true})
	run(t, w, syn)
	data := frame(t, seg{src: ap(client, 40000), dst: ap(vip, 80), srcMAC: clientMAC, ack: true, payload: 1400})
	bufs, sizes, ifs := [][]byte{make([]byte, 2000)}, []int{0}, []int{0}
	n := testing.AllocsPerRun(1000, func() {
		copy(bufs[0], data)
		sizes[0], ifs[0] = len(data), ifindex
		w.Process(bufs, sizes, ifs)
	})
	if n != 0 || sizes[0] == 0 {
		t.Fatalf("%v allocs per frame (size %d)", n, sizes[0])
	}
	// New connections allocate nothing either.
	port := uint16(0)
	n = testing.AllocsPerRun(500, func() {
		port++
		s := frame(t, seg{src: ap(client, port), dst: ap(vip, 80), srcMAC: clientMAC, syn: true})
		copy(bufs[0], s)
		sizes[0], ifs[0] = len(s), ifindex
		w.Process(bufs, sizes, ifs)
	})
	// frame() itself allocates (gopacket); measure it alone and subtract.
	base := testing.AllocsPerRun(500, func() { frame(t, seg{src: ap(client, 1), dst: ap(vip, 80), srcMAC: clientMAC, syn: true}) })
	if n-base > 0 {
		t.Fatalf("%v allocs per new connection", n-base)
	}
}

func BenchmarkProcessEstablished(b *testing.B) {
	e := newEngine(b, FullNAT, true)
	w := e.Worker(0)
	const batch = 32
	bufs, sizes, ifs := make([][]byte, batch), make([]int, batch), make([]int, batch)
	var frames [][]byte
	for i := 0; i < batch; i++ {
		run(b, w, frame(b, seg{src: ap(client, uint16(30000+i)), dst: ap(vip, 80), srcMAC: clientMAC, syn: true}))
		frames = append(frames, frame(b, seg{src: ap(client, uint16(30000+i)), dst: ap(vip, 80), srcMAC: clientMAC, ack: true, payload: 1400}))
		bufs[i] = make([]byte, 2000)
	}
	b.ReportAllocs()
	b.SetBytes(batch * 1400)
	for b.Loop() {
		for i := range bufs {
			// The rewrite is in place: restore the original frame each time.
			copy(bufs[i], frames[i])
			sizes[i], ifs[i] = len(frames[i]), ifindex
		}
		w.Process(bufs, sizes, ifs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/frame")
}

// BenchmarkProcessNewConn measures a connection's set-up on the frame path:
// SYN parse, scheduler, NAT port, table insert, rewrite; the entry is then
// removed (port returned) so the table stays at a steady size.
func BenchmarkProcessNewConn(b *testing.B) {
	e := newEngine(b, FullNAT, true)
	w := e.Worker(0)
	syn := frame(b, seg{src: ap(client, 1), dst: ap(vip, 80), srcMAC: clientMAC, syn: true})
	bufs, sizes, ifs := [][]byte{make([]byte, 200)}, []int{0}, []int{0}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		copy(bufs[0], syn)
		var f packet.Frame
		f.Parse(bufs[0][:len(syn)], true)
		src := [4]byte{10, byte(i >> 24), byte(i >> 16), byte(i >> 8)}
		f.Rewrite(packet.Tuple4{Src: src, Dst: vip.As4(), SrcPort: uint16(i), DstPort: 80})
		sizes[0], ifs[0] = len(syn), ifindex
		w.Process(bufs, sizes, ifs)
		if sizes[0] == 0 {
			b.Fatalf("dropped: %+v", e.Stats().Drops)
		}
		k := conntrack.Tuple{Src: conntrack.AddrFrom4(src), Dst: conntrack.AddrFrom4(vip.As4()), SrcPort: uint16(i), DstPort: 80, Proto: 6}
		e.Table().Delete(&k, conntrack.Orig)
		i++
	}
}
