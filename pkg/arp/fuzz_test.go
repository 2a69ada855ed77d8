package arp

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// FuzzParse feeds arbitrary frames to Parse. Invariants: no panic; Parse
// accepts exactly the frames gopacket decodes as Ethernet/IPv4 ARP request
// or reply, with the same fields; an accepted packet marshals to a frame
// whose first 42 bytes are the input's, and to the bytes gopacket's
// encoder produces for it.
func FuzzParse(f *testing.F) {
	for _, p := range []Packet{
		probe(testMAC, testVIP),
		announcement(testMAC, testVIP),
		reply(testMAC, testVIP, probe(otherMAC, testVIP)),
	} {
		b, err := p.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:FrameLen])
		f.Add(b[:FrameLen-1])
	}
	f.Add([]byte{})
	f.Add(make([]byte, 60))
	f.Fuzz(func(t *testing.T, frame []byte) {
		in := bytes.Clone(frame)
		p, err := Parse(frame)
		if !bytes.Equal(in, frame) {
			t.Fatal("Parse modified its input")
		}
		want := gopacketAccepts(frame)
		if (err == nil) != want {
			t.Fatalf("Parse error %v, gopacket accepts %v: %x", err, want, frame)
		}
		if err != nil {
			return
		}
		b, err := p.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of a parsed packet: %v", err)
		}
		if len(b) != minFrame || !bytes.Equal(b[:FrameLen], frame[:FrameLen]) {
			t.Fatalf("round trip\n got %x\nwant %x", b, frame[:FrameLen])
		}
		if ref := gopacketEncode(t, p); !bytes.Equal(b, ref) {
			t.Fatalf("MarshalBinary\n     got %x\ngopacket %x", b, ref)
		}
		eth, a := decodeGopacket(t, frame)
		sip, tip := p.SenderIP.As4(), p.TargetIP.As4()
		if !bytes.Equal(eth.SrcMAC, p.EthSrc[:]) || !bytes.Equal(eth.DstMAC, p.EthDst[:]) ||
			!bytes.Equal(a.SourceHwAddress, p.SenderMAC[:]) || !bytes.Equal(a.DstHwAddress, p.TargetMAC[:]) ||
			!bytes.Equal(a.SourceProtAddress, sip[:]) || !bytes.Equal(a.DstProtAddress, tip[:]) {
			t.Fatalf("Parse %+v, gopacket %+v", p, a)
		}
	})
}

// gopacketAccepts tells whether gopacket sees an untagged Ethernet frame
// carrying an Ethernet/IPv4 ARP request or reply.
func gopacketAccepts(frame []byte) bool {
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.NoCopy)
	eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	a, _ := pkt.Layer(layers.LayerTypeARP).(*layers.ARP)
	if eth == nil || a == nil || len(frame) < 14 || binary.BigEndian.Uint16(frame[12:]) != etherTypeARP {
		return false
	}
	return a.AddrType == layers.LinkTypeEthernet && a.Protocol == layers.EthernetTypeIPv4 &&
		a.HwAddressSize == 6 && a.ProtAddressSize == 4 &&
		(a.Operation == uint16(OpRequest) || a.Operation == uint16(OpReply))
}
