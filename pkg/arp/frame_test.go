package arp

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	testMAC   = [6]byte{0x02, 0, 0, 0, 0, 0x0a}
	otherMAC  = [6]byte{0x02, 0, 0, 0, 0, 0x0b}
	testVIP   = netip.MustParseAddr("198.18.5.100")
	otherIP   = netip.MustParseAddr("198.18.5.2")
	zeroMAC   [6]byte
	bcastMAC  = broadcast()
	unspec4   = netip.IPv4Unspecified()
	padding18 = strings.Repeat("00", minFrame-FrameLen)
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeGopacket decodes frame with gopacket, the independent oracle.
func decodeGopacket(t testing.TB, frame []byte) (*layers.Ethernet, *layers.ARP) {
	t.Helper()
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	a, _ := pkt.Layer(layers.LayerTypeARP).(*layers.ARP)
	if eth == nil || a == nil {
		t.Fatalf("gopacket cannot decode %x: %v", frame, pkt.ErrorLayer())
	}
	return eth, a
}

// gopacketEncode builds p's frame with gopacket, the reference encoder.
func gopacketEncode(t testing.TB, p Packet) []byte {
	t.Helper()
	sip, tip := p.SenderIP.As4(), p.TargetIP.As4()
	buf := gopacket.NewSerializeBuffer()
	// layers.Ethernet pads to the 60-byte minimum.
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{},
		&layers.Ethernet{SrcMAC: p.EthSrc[:], DstMAC: p.EthDst[:], EthernetType: layers.EthernetTypeARP},
		&layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
			HwAddressSize: 6, ProtAddressSize: 4, Operation: uint16(p.Op),
			SourceHwAddress: p.SenderMAC[:], SourceProtAddress: sip[:],
			DstHwAddress: p.TargetMAC[:], DstProtAddress: tip[:],
		})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestFramesGolden checks the three frames a claim sends byte for byte.
// The expected bytes follow RFC 826's layout; RFC 5227 sections 2.1.1 and
// 2.3 give the probe's and announcement's address fields.
func TestFramesGolden(t *testing.T) {
	req := Packet{EthDst: bcastMAC, EthSrc: otherMAC, Op: OpRequest, SenderMAC: otherMAC, SenderIP: otherIP, TargetIP: testVIP}
	tests := []struct {
		name string
		p    Packet
		want string
	}{
		{"probe", probe(testMAC, testVIP),
			"ffffffffffff 02000000000a 0806 0001 0800 06 04 0001 02000000000a 00000000 000000000000 c6120564" + padding18},
		{"announcement", announcement(testMAC, testVIP),
			"ffffffffffff 02000000000a 0806 0001 0800 06 04 0001 02000000000a c6120564 000000000000 c6120564" + padding18},
		{"reply", reply(testMAC, testVIP, req),
			"02000000000b 02000000000a 0806 0001 0800 06 04 0002 02000000000a c6120564 02000000000b c6120502" + padding18},
		{"reply to a probe", reply(testMAC, testVIP, probe(otherMAC, testVIP)),
			"02000000000b 02000000000a 0806 0001 0800 06 04 0002 02000000000a c6120564 02000000000b 00000000" + padding18},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.p.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if want := mustHex(t, tt.want); !bytes.Equal(got, want) {
				t.Fatalf("frame\n got %x\nwant %x", got, want)
			}
			if ref := gopacketEncode(t, tt.p); !bytes.Equal(got, ref) {
				t.Fatalf("frame\n     got %x\ngopacket %x", got, ref)
			}
			// gopacket reads back what we meant.
			eth, a := decodeGopacket(t, got)
			if !bytes.Equal(eth.DstMAC, tt.p.EthDst[:]) || !bytes.Equal(eth.SrcMAC, tt.p.EthSrc[:]) || eth.EthernetType != layers.EthernetTypeARP {
				t.Errorf("ethernet %v > %v type %v", eth.SrcMAC, eth.DstMAC, eth.EthernetType)
			}
			sip, tip := tt.p.SenderIP.As4(), tt.p.TargetIP.As4()
			if a.Operation != uint16(tt.p.Op) || !bytes.Equal(a.SourceHwAddress, tt.p.SenderMAC[:]) || !bytes.Equal(a.SourceProtAddress, sip[:]) ||
				!bytes.Equal(a.DstHwAddress, tt.p.TargetMAC[:]) || !bytes.Equal(a.DstProtAddress, tip[:]) {
				t.Errorf("arp %+v", a)
			}
			// And so does Parse.
			back, err := Parse(got)
			if err != nil || back != tt.p {
				t.Errorf("Parse = %+v, %v; want %+v", back, err, tt.p)
			}
		})
	}
}

func TestParse(t *testing.T) {
	good := "ffffffffffff 02000000000b 0806 0001 0800 06 04 0001 02000000000b c6120502 000000000000 c6120564"
	tests := []struct {
		name    string
		frame   string
		want    Packet
		wantErr string
	}{
		{name: "request unpadded", frame: good,
			want: Packet{EthDst: bcastMAC, EthSrc: otherMAC, Op: OpRequest, SenderMAC: otherMAC, SenderIP: otherIP, TargetIP: testVIP}},
		{name: "request padded with a trailer", frame: good + padding18 + "deadbeef",
			want: Packet{EthDst: bcastMAC, EthSrc: otherMAC, Op: OpRequest, SenderMAC: otherMAC, SenderIP: otherIP, TargetIP: testVIP}},
		{name: "probe", frame: "ffffffffffff 02000000000b 0806 0001 0800 06 04 0001 02000000000b 00000000 000000000000 c6120564",
			want: Packet{EthDst: bcastMAC, EthSrc: otherMAC, Op: OpRequest, SenderMAC: otherMAC, SenderIP: unspec4, TargetIP: testVIP}},
		{name: "empty", frame: "", wantErr: "frame of 0 bytes"},
		{name: "truncated", frame: good[:len(good)-2], wantErr: "frame of 41 bytes"},
		{name: "IPv4 frame", frame: strings.Replace(good, "0806", "0800", 1), wantErr: "ethertype 0x0800"},
		{name: "802.1Q tag", frame: "ffffffffffff 02000000000b 8100 000a 0806 0001 0800 06 04 0001 02000000000b c6120502 000000000000 c6120564", wantErr: "ethertype 0x8100"},
		{name: "token ring", frame: strings.Replace(good, "0806 0001", "0806 0006", 1), wantErr: "hardware type 6"},
		{name: "IPv6 protocol", frame: strings.Replace(good, "0001 0800", "0001 86dd", 1), wantErr: "protocol 0x86dd"},
		{name: "long addresses", frame: strings.Replace(good, "06 04", "08 04", 1), wantErr: "address lengths 8/4"},
		{name: "RARP op", frame: strings.Replace(good, "06 04 0001", "06 04 0003", 1), wantErr: "operation 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(mustHex(t, tt.frame))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Parse = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestMarshalRejectsNonIPv4(t *testing.T) {
	for _, p := range []Packet{
		{Op: OpRequest, SenderIP: netip.MustParseAddr("2001:db8::1"), TargetIP: testVIP},
		{Op: OpRequest, SenderIP: testVIP},
	} {
		if b, err := p.MarshalBinary(); err == nil {
			t.Errorf("MarshalBinary(%+v) = %x, want an error", p, b)
		}
	}
}

func TestOperationString(t *testing.T) {
	for op, want := range map[Operation]string{OpRequest: "request", OpReply: "reply", 3: "op3"} {
		if got := op.String(); got != want {
			t.Errorf("%d: %q, want %q", uint16(op), got, want)
		}
	}
}
