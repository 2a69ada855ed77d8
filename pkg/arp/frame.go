package arp

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
)

// Operation is an ARP opcode (RFC 826: ar$op).
type Operation uint16

// The two opcodes of RFC 826; everything else (RARP, InARP) is not ours.
const (
	OpRequest Operation = 1
	OpReply   Operation = 2
)

func (o Operation) String() string {
	switch o {
	case OpRequest:
		return "request"
	case OpReply:
		return "reply"
	}
	return fmt.Sprintf("op%d", uint16(o))
}

// Layout of an ARP packet for Ethernet and IPv4 (RFC 826) inside an
// untagged Ethernet II frame: 14 bytes of Ethernet header, 28 of ARP.
const (
	etherTypeARP = 0x0806
	etherTypeIP4 = 0x0800
	hwEthernet   = 1      // ar$hrd: ARPHRD_ETHER
	sizes        = 0x0604 // ar$hln = 6, ar$pln = 4

	offEthDst    = 0
	offEthSrc    = 6
	offEtherType = 12
	offHType     = 14
	offPType     = 16
	offSizes     = 18
	offOp        = 20
	offSenderMAC = 22
	offSenderIP  = 28
	offTargetMAC = 32
	offTargetIP  = 38

	// FrameLen is the length of an Ethernet/IPv4 ARP frame without padding.
	FrameLen = 42
	// minFrame is the shortest Ethernet frame without FCS (IEEE 802.3
	// ETH_ZLEN); frames we send are padded to it, as NIC drivers do.
	minFrame = 60
)

// broadcast is the Ethernet broadcast address, where requests go.
func broadcast() [6]byte { return [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff} }

// Packet is an Ethernet/IPv4 ARP packet and the Ethernet addresses of the
// frame that carried it. Addresses are values: a Packet holds no pointers
// into the frame it came from.
type Packet struct {
	EthDst, EthSrc [6]byte
	Op             Operation
	SenderMAC      [6]byte
	SenderIP       netip.Addr // 0.0.0.0 in an RFC 5227 probe
	TargetMAC      [6]byte    // ignored in requests; zero in ours
	TargetIP       netip.Addr
}

// Parse reads an ARP packet from an Ethernet frame. It accepts only what an
// IPv4 host on Ethernet can act on: EtherType 0x0806, hardware type
// Ethernet, protocol IPv4, address lengths 6 and 4, a request or a reply.
// Bytes past the 42 of the packet (padding, trailers) are ignored.
func Parse(frame []byte) (Packet, error) {
	if len(frame) < FrameLen {
		return Packet{}, fmt.Errorf("arp: frame of %d bytes: shorter than %d", len(frame), FrameLen)
	}
	be := binary.BigEndian
	if et := be.Uint16(frame[offEtherType:]); et != etherTypeARP {
		return Packet{}, fmt.Errorf("arp: ethertype %#04x: not ARP", et)
	}
	if h, p, s := be.Uint16(frame[offHType:]), be.Uint16(frame[offPType:]), be.Uint16(frame[offSizes:]); h != hwEthernet || p != etherTypeIP4 || s != sizes {
		return Packet{}, fmt.Errorf("arp: hardware type %d, protocol %#04x, address lengths %d/%d: not Ethernet/IPv4", h, p, s>>8, s&0xff)
	}
	op := Operation(be.Uint16(frame[offOp:]))
	if op != OpRequest && op != OpReply {
		return Packet{}, fmt.Errorf("arp: operation %d: neither request nor reply", uint16(op))
	}
	var p Packet
	p.Op = op
	copy(p.EthDst[:], frame[offEthDst:])
	copy(p.EthSrc[:], frame[offEthSrc:])
	copy(p.SenderMAC[:], frame[offSenderMAC:])
	copy(p.TargetMAC[:], frame[offTargetMAC:])
	p.SenderIP = netip.AddrFrom4([4]byte(frame[offSenderIP : offSenderIP+4]))
	p.TargetIP = netip.AddrFrom4([4]byte(frame[offTargetIP : offTargetIP+4]))
	return p, nil
}

// MarshalBinary builds the Ethernet frame for p, padded to the 60-byte
// Ethernet minimum. Both addresses must be IPv4.
//
// The frame is written by hand rather than with gopacket's layers, which
// the tests use as the reference encoder and decoder: linking gopacket
// into the daemon for these 42 bytes would add about 2.6 MB to the binary
// and gopacket's layer registrations to its start-up.
func (p *Packet) MarshalBinary() ([]byte, error) {
	if !p.SenderIP.Is4() {
		return nil, fmt.Errorf("arp: sender address %v: not IPv4", p.SenderIP)
	}
	if !p.TargetIP.Is4() {
		return nil, fmt.Errorf("arp: target address %v: not IPv4", p.TargetIP)
	}
	b := make([]byte, minFrame)
	be := binary.BigEndian
	copy(b[offEthDst:], p.EthDst[:])
	copy(b[offEthSrc:], p.EthSrc[:])
	be.PutUint16(b[offEtherType:], etherTypeARP)
	be.PutUint16(b[offHType:], hwEthernet)
	be.PutUint16(b[offPType:], etherTypeIP4)
	be.PutUint16(b[offSizes:], sizes)
	be.PutUint16(b[offOp:], uint16(p.Op))
	copy(b[offSenderMAC:], p.SenderMAC[:])
	sip, tip := p.SenderIP.As4(), p.TargetIP.As4()
	copy(b[offSenderIP:], sip[:])
	copy(b[offTargetMAC:], p.TargetMAC[:])
	copy(b[offTargetIP:], tip[:])
	return b, nil
}

// probe is an RFC 5227 section 2.1.1 ARP Probe for ip: a broadcast
// request with sender address 0.0.0.0, so that no neighbour cache learns
// a mapping for an address we do not hold yet, and target MAC zero.
func probe(mac [6]byte, ip netip.Addr) Packet {
	return Packet{
		EthDst: broadcast(), EthSrc: mac, Op: OpRequest,
		SenderMAC: mac, SenderIP: netip.IPv4Unspecified(),
		TargetIP: ip,
	}
}

// announcement is an RFC 5227 section 2.3 ARP Announcement: a broadcast
// request with sender = target = ip and target MAC zero. Linux updates an
// existing neighbour entry from it even with arp_accept=0.
func announcement(mac [6]byte, ip netip.Addr) Packet {
	return Packet{
		EthDst: broadcast(), EthSrc: mac, Op: OpRequest,
		SenderMAC: mac, SenderIP: ip,
		TargetIP: ip,
	}
}

// reply answers req (a request for ip) as RFC 826 says: to the requester's
// sender MAC, unicast. The target address is the requester's sender
// address, 0.0.0.0 for a probe, which is what Linux sends too.
func reply(mac [6]byte, ip netip.Addr, req Packet) Packet {
	return Packet{
		EthDst: req.SenderMAC, EthSrc: mac, Op: OpReply,
		SenderMAC: mac, SenderIP: ip,
		TargetMAC: req.SenderMAC, TargetIP: req.SenderIP,
	}
}

func macString(m [6]byte) string { return net.HardwareAddr(m[:]).String() }
