package datapath

import (
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"
)

type pkt struct {
	src, dst   netip.AddrPort
	udp        bool
	ipOptions  bool
	fragOffset uint16
	arp        bool
}

func mkframe(t *testing.T, p pkt) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	sb := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if p.arp {
		eth.EthernetType = layers.EthernetTypeARP
		arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: 1,
			SourceHwAddress: eth.SrcMAC, SourceProtAddress: p.src.Addr().AsSlice(), DstHwAddress: make([]byte, 6), DstProtAddress: p.dst.Addr().AsSlice()}
		if err := gopacket.SerializeLayers(sb, opts, eth, arp); err != nil {
			t.Fatal(err)
		}
		return sb.Bytes()
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: p.src.Addr().AsSlice(), DstIP: p.dst.Addr().AsSlice(), FragOffset: p.fragOffset}
	if p.ipOptions {
		ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
	}
	var l4 gopacket.SerializableLayer
	if p.udp {
		ip.Protocol = layers.IPProtocolUDP
		u := &layers.UDP{SrcPort: layers.UDPPort(p.src.Port()), DstPort: layers.UDPPort(p.dst.Port())}
		_ = u.SetNetworkLayerForChecksum(ip)
		l4 = u
	} else {
		tc := &layers.TCP{SrcPort: layers.TCPPort(p.src.Port()), DstPort: layers.TCPPort(p.dst.Port()), SYN: true}
		_ = tc.SetNetworkLayerForChecksum(ip)
		l4 = tc
	}
	if err := gopacket.SerializeLayers(sb, opts, eth, ip, l4); err != nil {
		t.Fatal(err)
	}
	return sb.Bytes()
}

// runFilter runs prog in x/net/bpf's VM, which lacks the packet-type
// extension: the first instruction is replaced by a constant load of pkttype.
func runFilter(t *testing.T, prog []bpf.Instruction, frame []byte, pkttype uint32) bool {
	t.Helper()
	p := append([]bpf.Instruction(nil), prog...)
	if _, ok := p[0].(bpf.LoadExtension); !ok {
		t.Fatal("filter does not start with the packet-type check")
	}
	p[0] = bpf.LoadConstant{Dst: bpf.RegA, Val: pkttype}
	vm, err := bpf.NewVM(p)
	if err != nil {
		t.Fatal(err)
	}
	n, err := vm.Run(frame)
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func TestFilter(t *testing.T) {
	spec := FilterSpec{
		Dst: []DstMatch{
			{Addr: netip.MustParseAddr("198.18.0.100"), Ports: []PortRange{{Lo: 80, Hi: 80}, {Lo: 443, Hi: 443}}},
			{Addr: netip.MustParseAddr("198.18.0.2"), Ports: []PortRange{{Lo: 61000, Hi: 65535}}},
		},
		Src:   []SrcMatch{{Addr: netip.MustParseAddrPort("198.18.2.21:8080")}},
		Local: []netip.Addr{netip.MustParseAddr("198.18.2.1"), netip.MustParseAddr("198.18.0.2")},
	}
	prog, err := BuildFilter(spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bpf.Assemble(prog); err != nil {
		t.Fatalf("assemble: %v", err)
	}
	ap := netip.MustParseAddrPort
	cases := []struct {
		name    string
		p       pkt
		pkttype uint32
		want    bool
	}{
		{"client to VIP:80", pkt{src: ap("198.18.0.10:40000"), dst: ap("198.18.0.100:80")}, 0, true},
		{"client to VIP:443 with IP options", pkt{src: ap("198.18.0.10:40000"), dst: ap("198.18.0.100:443"), ipOptions: true}, 0, true},
		{"client to VIP:22", pkt{src: ap("198.18.0.10:40000"), dst: ap("198.18.0.100:22")}, 0, false},
		{"VIP:80 for another host (promiscuous)", pkt{src: ap("198.18.0.10:40000"), dst: ap("198.18.0.100:80")}, 3, false},
		{"UDP to VIP:80", pkt{src: ap("198.18.0.10:40000"), dst: ap("198.18.0.100:80"), udp: true}, 0, false},
		{"ARP", pkt{src: ap("198.18.0.10:0"), dst: ap("198.18.0.100:0"), arp: true}, 0, false},
		{"non-first fragment", pkt{src: ap("198.18.0.10:40000"), dst: ap("198.18.0.100:80"), fragOffset: 100}, 0, false},
		{"reply to NAT port low end", pkt{src: ap("198.18.0.21:8080"), dst: ap("198.18.0.2:61000")}, 0, true},
		{"reply to NAT port high end", pkt{src: ap("198.18.0.21:8080"), dst: ap("198.18.0.2:65535")}, 0, true},
		{"host's own connection on SNAT address", pkt{src: ap("198.18.0.21:8080"), dst: ap("198.18.0.2:45000")}, 0, false},
		{"host's ssh", pkt{src: ap("198.18.0.99:50000"), dst: ap("198.18.0.2:22")}, 0, false},
		{"DNAT reply to a client", pkt{src: ap("198.18.2.21:8080"), dst: ap("198.18.1.10:40000")}, 0, true},
		{"DNAT backend answering a health check", pkt{src: ap("198.18.2.21:8080"), dst: ap("198.18.2.1:45000")}, 0, false},
		{"DNAT backend other port", pkt{src: ap("198.18.2.21:22"), dst: ap("198.18.1.10:40000")}, 0, false},
	}
	for _, c := range cases {
		if got := runFilter(t, prog, mkframe(t, c.p), c.pkttype); got != c.want {
			t.Errorf("%s: accepted %v, want %v", c.name, got, c.want)
		}
	}
}

func TestFilterManyPorts(t *testing.T) {
	var ports []PortRange
	for p := uint16(1000); p < 1600; p++ { // more than one block
		ports = append(ports, PortRange{Lo: p, Hi: p})
	}
	prog, err := BuildFilter(FilterSpec{Dst: []DstMatch{{Addr: netip.MustParseAddr("198.18.0.100"), Ports: ports}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bpf.Assemble(prog); err != nil {
		t.Fatal(err)
	}
	for _, port := range []uint16{1000, 1234, 1599} {
		if !runFilter(t, prog, mkframe(t, pkt{src: netip.MustParseAddrPort("198.18.0.10:1"), dst: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.100"), port)}), 0) {
			t.Errorf("port %d refused", port)
		}
	}
	if runFilter(t, prog, mkframe(t, pkt{src: netip.MustParseAddrPort("198.18.0.10:1"), dst: netip.MustParseAddrPort("198.18.0.100:1600")}), 0) {
		t.Error("port 1600 accepted")
	}
	// Too many for the kernel: a clear error.
	for p := uint16(2000); p < 5000; p++ {
		ports = append(ports, PortRange{Lo: p, Hi: p})
	}
	if _, err := BuildFilter(FilterSpec{Dst: []DstMatch{{Addr: netip.MustParseAddr("198.18.0.100"), Ports: ports}}}); err == nil {
		t.Error("oversized filter accepted")
	}
}
