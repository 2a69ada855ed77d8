package packet

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// naiveSum is the RFC 1071 16-bit loop, kept as the oracle for Sum.
func naiveSum(b []byte, initial uint16) uint16 {
	s := uint32(initial)
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

func TestSumMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 70000)
	for i := 0; i < 100000; i++ {
		n := r.IntN(200)
		if i%100 == 0 {
			n = r.IntN(len(buf))
		}
		b := buf[:n]
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		if i%7 == 0 { // long runs of 0xff stress the carries
			for j := range b {
				b[j] = 0xff
			}
		}
		init := uint16(r.Uint32())
		if got, want := Sum(b, init), naiveSum(b, init); got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
			t.Fatalf("len %d init %#x: Sum %#x, naive %#x", n, init, got, want)
		}
	}
}

// segment describes a TCP/IPv4 frame to build with gopacket, the reference.
type segment struct {
	src, dst     [4]byte
	sport, dport uint16
	flags        uint8
	seq, ack     uint32
	payload      []byte
	ipOptions    bool
	tcpOptions   bool
}

func build(t testing.TB, s segment) []byte {
	t.Helper()
	return buildWithOptions(t, s, nil)
}

func buildWithOptions(t testing.TB, s segment, opts []layers.TCPOption) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IP(s.src[:]), DstIP: net.IP(s.dst[:]), Flags: layers.IPv4DontFragment, Id: 7}
	if s.ipOptions {
		ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}} // NOP NOP NOP EOL
	}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport), Seq: s.seq, Ack: s.ack, Window: 512,
		SYN: s.flags&TCPFlagSYN != 0, ACK: s.flags&TCPFlagACK != 0, FIN: s.flags&TCPFlagFIN != 0, RST: s.flags&TCPFlagRST != 0, PSH: s.flags&TCPFlagPSH != 0}
	tcp.Options = opts
	if s.tcpOptions {
		tcp.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{5, 0xb4}},
			{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}}}
	}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	sb := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp, gopacket.Payload(s.payload)); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), sb.Bytes()...)
}

// withVnet prepends a virtio-net header; partial turns the TCP checksum into a
// NEEDS_CSUM seed, as the kernel hands a TSO frame from a veth.
func withVnet(frame []byte, partial bool) []byte {
	b := make([]byte, VnetHdrLen+len(frame))
	copy(b[VnetHdrLen:], frame)
	if partial {
		ip := IPv4(b[VnetHdrLen+EthernetLen:])
		l4 := EthernetLen + ip.HeaderLen()
		tcp := TCP(ip[ip.HeaderLen():ip.TotalLen()])
		tcp.SetChecksum(PseudoSum(ip.Src(), ip.Dst(), ProtocolTCP, uint16(len(tcp))))
		v := VnetHdr(b)
		v.SetFlags(VnetFlagNeedsCsum)
		v.SetCsumStart(uint16(l4))
		v.SetCsumOffset(TCPChecksumOffset)
		if len(tcp) > 1500 {
			v.SetGSOType(VnetGSOTCPv4)
			v.SetGSOSize(1448)
			v.SetHdrLen(uint16(l4 + tcp.DataOffset()))
		}
	}
	return b
}

func randSegment(r *rand.Rand) segment {
	var s segment
	binary.BigEndian.PutUint32(s.src[:], r.Uint32())
	binary.BigEndian.PutUint32(s.dst[:], r.Uint32())
	s.sport, s.dport = uint16(r.Uint32()), uint16(r.Uint32())
	s.seq, s.ack = r.Uint32(), r.Uint32()
	s.flags = uint8(r.Uint32()) & (TCPFlagSYN | TCPFlagACK | TCPFlagFIN | TCPFlagPSH)
	n := r.IntN(1600)
	if r.IntN(20) == 0 {
		n = 60000 + r.IntN(5000)
	}
	s.payload = make([]byte, n)
	for i := range s.payload {
		s.payload[i] = byte(r.Uint32())
	}
	s.ipOptions = r.IntN(4) == 0
	s.tcpOptions = r.IntN(2) == 0
	return s
}

func randTuple(r *rand.Rand) Tuple4 {
	var t Tuple4
	binary.BigEndian.PutUint32(t.Src[:], r.Uint32())
	binary.BigEndian.PutUint32(t.Dst[:], r.Uint32())
	t.SrcPort, t.DstPort = uint16(r.Uint32()), uint16(r.Uint32())
	switch r.IntN(4) { // sometimes change only some fields
	case 0:
		t.SrcPort = 0
	case 1:
		t.Src = [4]byte{}
	}
	return t
}

func TestParse(t *testing.T) {
	s := segment{src: [4]byte{198, 18, 0, 10}, dst: [4]byte{198, 18, 0, 100}, sport: 40000, dport: 80, flags: TCPFlagSYN, seq: 100, ipOptions: true, tcpOptions: true, payload: []byte("hi")}
	raw := build(t, s)
	var f Frame
	if r := f.Parse(raw, false); r != OK {
		t.Fatalf("parse: %v", r)
	}
	if got := f.Tuple(); got != (Tuple4{s.src, s.dst, s.sport, s.dport}) {
		t.Fatalf("tuple %+v", got)
	}
	if f.L4Off != EthernetLen+24 || string(f.Payload()) != "hi" || f.SegLen() != 3 {
		t.Fatalf("l4off %d payload %q seglen %d", f.L4Off, f.Payload(), f.SegLen())
	}
	// Ethernet padding is trimmed.
	padded := append(append([]byte(nil), raw...), 0, 0, 0, 0)
	if r := f.Parse(padded, false); r != OK || len(f.Eth) != len(raw) {
		t.Fatalf("padded: %v len %d", r, len(f.Eth))
	}

	mut := func(fn func(b []byte)) []byte { b := append([]byte(nil), raw...); fn(b); return b }
	cases := []struct {
		name string
		b    []byte
		vnet bool
		want Reason
	}{
		{"empty", nil, false, ErrRunt},
		{"short", raw[:30], false, ErrRunt},
		{"vnet short", raw[:5], true, ErrRunt},
		{"arp", mut(func(b []byte) { b[12], b[13] = 0x08, 0x06 }), false, ErrNotIPv4},
		{"vlan", mut(func(b []byte) { b[12], b[13] = 0x81, 0x00 }), false, ErrNotIPv4},
		{"version 6", mut(func(b []byte) { b[14] = 0x65 }), false, ErrIPVersion},
		{"ihl 4", mut(func(b []byte) { b[14] = 0x44 }), false, ErrIPHeaderLen},
		{"ihl 15 past end", mut(func(b []byte) { b[14] = 0x4f })[:70], false, ErrIPHeaderLen},
		{"total len short", mut(func(b []byte) { b[16], b[17] = 0, 10 }), false, ErrIPLength},
		{"total len long", mut(func(b []byte) { b[16], b[17] = 0xff, 0 }), false, ErrIPLength},
		{"total len zero no gso", mut(func(b []byte) { b[16], b[17] = 0, 0 }), false, ErrIPLength},
		{"fragment MF", mut(func(b []byte) { b[20] |= 0x20 }), false, ErrFragment},
		{"fragment offset", mut(func(b []byte) { b[21] = 1 }), false, ErrFragment},
		{"udp", mut(func(b []byte) { b[23] = ProtocolUDP }), false, ErrNotTCP},
		{"tcp offset 4", mut(func(b []byte) { b[14+24+12] = 0x40 }), false, ErrTCPHeaderLen},
		{"tcp offset 15", mut(func(b []byte) { b[14+24+12] = 0xf0 }), false, ErrTCPHeaderLen},
		{"bad csum_start", func() []byte { b := withVnet(raw, true); VnetHdr(b).SetCsumStart(3); return b }(), true, ErrVnet},
		{"vnet partial ok", withVnet(raw, true), true, OK},
		{"vnet none ok", withVnet(raw, false), true, OK},
	}
	for _, c := range cases {
		if got := f.Parse(c.b, c.vnet); got != c.want {
			t.Errorf("%s: got %v want %v", c.name, got, c.want)
		}
	}
}

func TestParseBigTCP(t *testing.T) {
	s := segment{src: [4]byte{198, 18, 0, 10}, dst: [4]byte{198, 18, 0, 100}, sport: 1, dport: 2, flags: TCPFlagACK, payload: make([]byte, 3000)}
	b := withVnet(build(t, s), true)
	IPv4(b[VnetHdrLen+EthernetLen:]).SetTotalLen(0)
	var f Frame
	if r := f.Parse(b, true); r != OK || len(f.Payload()) != 3000 {
		t.Fatalf("big tcp: %v", r)
	}
}

// checkSums verifies the frame's checksums against a full recompute: the IPv4
// header checksum always, the TCP checksum either complete or, for a
// NEEDS_CSUM frame, equal to the pseudo-header seed.
func checkSums(t testing.TB, f *Frame) {
	t.Helper()
	if got, want := f.IP.Checksum(), f.IP.CalculateChecksum(); got != want {
		t.Fatalf("ip checksum %#04x, recomputed %#04x", got, want)
	}
	if f.Partial() {
		if got, want := f.TCP.Checksum(), PseudoSum(f.IP.Src(), f.IP.Dst(), ProtocolTCP, uint16(len(f.TCP))); got != want {
			t.Fatalf("tcp seed %#04x, recomputed %#04x", got, want)
		}
		return
	}
	if got, want := f.TCP.Checksum(), f.TCP.CalculateChecksum(f.IP.Src(), f.IP.Dst()); got != want {
		t.Fatalf("tcp checksum %#04x, recomputed %#04x", got, want)
	}
}

// TestRewriteProperty rewrites random frames to random tuples and checks the
// incremental checksums against a full recompute, for complete checksums and
// NEEDS_CSUM seeds, and against gopacket's own serializer.
func TestRewriteProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 3000; i++ {
		raw := build(t, randSegment(r))
		for _, mode := range []int{0, 1, 2} { // plain, vnet complete, vnet partial
			b := append([]byte(nil), raw...)
			if mode > 0 {
				b = withVnet(raw, mode == 2)
			}
			var f Frame
			if rs := f.Parse(b, mode > 0); rs != OK {
				t.Fatalf("parse: %v", rs)
			}
			orig := f.Tuple()
			before := append([]byte(nil), b...)
			nt := randTuple(r)
			if nt.Src == ([4]byte{}) {
				nt.Src = orig.Src
			}
			if nt.SrcPort == 0 {
				nt.SrcPort = orig.SrcPort
			}
			f.Rewrite(nt)
			if f.Tuple() != nt {
				t.Fatalf("tuple after rewrite %+v want %+v", f.Tuple(), nt)
			}
			checkSums(t, &f)
			if mode != 2 {
				// gopacket as an independent reference.
				p := gopacket.NewPacket(f.Eth, layers.LayerTypeEthernet, gopacket.Default)
				ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
				gotIP, gotTCP := ip.Checksum, tcp.Checksum
				if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
					t.Fatal(err)
				}
				sb := gopacket.NewSerializeBuffer()
				if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{ComputeChecksums: true}, ip, tcp, gopacket.Payload(tcp.Payload)); err != nil {
					t.Fatal(err)
				}
				ref := sb.Bytes()
				refIP := binary.BigEndian.Uint16(ref[10:12])
				refTCP := binary.BigEndian.Uint16(ref[ip.IHL*4+16:])
				if gotIP != refIP || gotTCP != refTCP {
					t.Fatalf("checksums ip %#04x tcp %#04x, gopacket ip %#04x tcp %#04x", gotIP, gotTCP, refIP, refTCP)
				}
			}
			// And back: the frame is restored byte for byte.
			f.Rewrite(orig)
			if string(b) != string(before) {
				t.Fatalf("round trip changed the frame")
			}
		}
	}
}

func TestMakeRSTReply(t *testing.T) {
	for _, s := range []segment{
		{src: [4]byte{198, 18, 0, 10}, dst: [4]byte{198, 18, 0, 100}, sport: 40000, dport: 80, flags: TCPFlagSYN, seq: 1000, ipOptions: true, tcpOptions: true},
		{src: [4]byte{198, 18, 0, 10}, dst: [4]byte{198, 18, 0, 100}, sport: 40000, dport: 80, flags: TCPFlagACK | TCPFlagPSH, seq: 1000, ack: 5555, payload: []byte("GET /")},
	} {
		b := withVnet(build(t, s), true)
		var f Frame
		if r := f.Parse(b, true); r != OK {
			t.Fatal(r)
		}
		n := f.MakeRSTReply(64)
		if n != VnetHdrLen+RSTReplyLen {
			t.Fatalf("len %d", n)
		}
		if r := f.Parse(b[:n], true); r != OK {
			t.Fatalf("reparse: %v", r)
		}
		if f.Partial() || f.Vnet.GSOType() != 0 {
			t.Fatal("vnet header not cleared")
		}
		checkSums(t, &f)
		if f.Tuple() != (Tuple4{s.dst, s.src, s.dport, s.sport}) {
			t.Fatalf("tuple %+v", f.Tuple())
		}
		if f.Eth.Dst() != [6]byte{2, 0, 0, 0, 0, 1} {
			t.Fatalf("dst mac %x", f.Eth.Dst())
		}
		fl := f.TCP.Flags()
		if s.flags&TCPFlagACK != 0 {
			if fl != TCPFlagRST || f.TCP.Seq() != s.ack {
				t.Fatalf("flags %#x seq %d", fl, f.TCP.Seq())
			}
		} else if fl != TCPFlagRST|TCPFlagACK || f.TCP.Ack() != s.seq+1 || f.TCP.Seq() != 0 {
			t.Fatalf("flags %#x ack %d", fl, f.TCP.Ack())
		}
	}
}
