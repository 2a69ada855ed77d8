package packet

import "encoding/binary"

// Ethernet is a view of an Ethernet II header.
type Ethernet []byte

// Ethernet constants.
const (
	EthernetLen   = 14
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeVLAN = 0x8100
	EtherTypeIPv6 = 0x86dd
)

func (e Ethernet) Dst() (m [6]byte)      { copy(m[:], e[0:6]); return }
func (e Ethernet) Src() (m [6]byte)      { copy(m[:], e[6:12]); return }
func (e Ethernet) EtherType() uint16     { return binary.BigEndian.Uint16(e[12:14]) }
func (e Ethernet) SetDst(m [6]byte)      { copy(e[0:6], m[:]) }
func (e Ethernet) SetSrc(m [6]byte)      { copy(e[6:12], m[:]) }
func (e Ethernet) SetEtherType(t uint16) { binary.BigEndian.PutUint16(e[12:14], t) }

// IPv4 is a view of an IPv4 header (and what follows it).
type IPv4 []byte

// IPv4 constants (RFC 791).
const (
	IPv4MinLen     = 20
	ProtocolICMP   = 1
	ProtocolTCP    = 6
	ProtocolUDP    = 17
	ipv4FlagMF     = 0x2000
	ipv4FragOffset = 0x1fff
)

func (b IPv4) Version() uint8       { return b[0] >> 4 }
func (b IPv4) HeaderLen() int       { return int(b[0]&0x0f) * 4 }
func (b IPv4) TotalLen() uint16     { return binary.BigEndian.Uint16(b[2:4]) }
func (b IPv4) ID() uint16           { return binary.BigEndian.Uint16(b[4:6]) }
func (b IPv4) TTL() uint8           { return b[8] }
func (b IPv4) Protocol() uint8      { return b[9] }
func (b IPv4) Checksum() uint16     { return binary.BigEndian.Uint16(b[10:12]) }
func (b IPv4) Src() (a [4]byte)     { copy(a[:], b[12:16]); return }
func (b IPv4) Dst() (a [4]byte)     { copy(a[:], b[16:20]); return }
func (b IPv4) SetTotalLen(l uint16) { binary.BigEndian.PutUint16(b[2:4], l) }
func (b IPv4) SetTTL(t uint8)       { b[8] = t }
func (b IPv4) SetChecksum(c uint16) { binary.BigEndian.PutUint16(b[10:12], c) }
func (b IPv4) SetSrc(a [4]byte)     { copy(b[12:16], a[:]) }
func (b IPv4) SetDst(a [4]byte)     { copy(b[16:20], a[:]) }

// IsFragment reports whether the datagram is a fragment (MF set or a non-zero
// offset). Only a first fragment carries the TCP ports.
func (b IPv4) IsFragment() bool {
	return binary.BigEndian.Uint16(b[6:8])&(ipv4FlagMF|ipv4FragOffset) != 0
}

// CalculateChecksum returns the header checksum computed from scratch (the
// field itself counted as zero).
func (b IPv4) CalculateChecksum() uint16 {
	hl := b.HeaderLen()
	s := Sum(b[0:10], 0)
	s = Sum(b[12:hl], s)
	return ^s
}

// TCP is a view of a TCP header (and its payload).
type TCP []byte

// TCP constants (RFC 9293).
const (
	TCPMinLen = 20
	// TCPChecksumOffset is the checksum's offset in the TCP header: the
	// csum_offset a NEEDS_CSUM virtio-net header carries for TCP.
	TCPChecksumOffset = 16

	TCPFlagFIN = 0x01
	TCPFlagSYN = 0x02
	TCPFlagRST = 0x04
	TCPFlagPSH = 0x08
	TCPFlagACK = 0x10
	TCPFlagURG = 0x20
	TCPFlagECE = 0x40
	TCPFlagCWR = 0x80
)

func (t TCP) SrcPort() uint16      { return binary.BigEndian.Uint16(t[0:2]) }
func (t TCP) DstPort() uint16      { return binary.BigEndian.Uint16(t[2:4]) }
func (t TCP) Seq() uint32          { return binary.BigEndian.Uint32(t[4:8]) }
func (t TCP) Ack() uint32          { return binary.BigEndian.Uint32(t[8:12]) }
func (t TCP) DataOffset() int      { return int(t[12]>>4) * 4 }
func (t TCP) Flags() uint8         { return t[13] }
func (t TCP) Window() uint16       { return binary.BigEndian.Uint16(t[14:16]) }
func (t TCP) Checksum() uint16     { return binary.BigEndian.Uint16(t[16:18]) }
func (t TCP) SetSrcPort(p uint16)  { binary.BigEndian.PutUint16(t[0:2], p) }
func (t TCP) SetDstPort(p uint16)  { binary.BigEndian.PutUint16(t[2:4], p) }
func (t TCP) SetSeq(s uint32)      { binary.BigEndian.PutUint32(t[4:8], s) }
func (t TCP) SetAck(a uint32)      { binary.BigEndian.PutUint32(t[8:12], a) }
func (t TCP) SetDataOffset(n int)  { t[12] = byte(n/4) << 4 }
func (t TCP) SetFlags(f uint8)     { t[13] = f }
func (t TCP) SetWindow(w uint16)   { binary.BigEndian.PutUint16(t[14:16], w) }
func (t TCP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(t[16:18], c) }
func (t TCP) SetUrgent(u uint16)   { binary.BigEndian.PutUint16(t[18:20], u) }

// CalculateChecksum returns the complete TCP checksum of t (header and
// payload, the field counted as zero) for the given addresses.
func (t TCP) CalculateChecksum(src, dst [4]byte) uint16 {
	s := PseudoSum(src, dst, ProtocolTCP, uint16(len(t)))
	s = Sum(t[0:16], s)
	s = Sum(t[18:], s)
	return ^s
}

// ICMPv4 is a view of an ICMP message.
type ICMPv4 []byte

// ICMPv4 constants (RFC 792).
const (
	ICMPv4MinLen          = 8
	ICMPv4DestUnreachable = 3
	ICMPv4TimeExceeded    = 11
	ICMPv4FragNeeded      = 4 // code of DestUnreachable: "fragmentation needed and DF set"
)

func (c ICMPv4) Type() uint8          { return c[0] }
func (c ICMPv4) Code() uint8          { return c[1] }
func (c ICMPv4) Checksum() uint16     { return binary.BigEndian.Uint16(c[2:4]) }
func (c ICMPv4) SetChecksum(v uint16) { binary.BigEndian.PutUint16(c[2:4], v) }

// Payload is what follows the 8-byte ICMP header: for error messages the
// offending datagram's IP header and at least 8 bytes of its L4 header — only
// the ports and the sequence number of TCP, never the whole header (RFC 792).
func (c ICMPv4) Payload() []byte { return c[ICMPv4MinLen:] }
