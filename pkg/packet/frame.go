package packet

import "encoding/binary"

// Reason says why Parse refused a frame. Every reason is a counter in the
// data path; none is ever a crash.
type Reason uint8

// Parse outcomes.
const (
	OK              Reason = iota
	ErrRunt                // shorter than the headers it claims
	ErrNotIPv4             // EtherType is not IPv4 (VLAN-tagged frames included)
	ErrIPVersion           // IPv4 EtherType with a version other than 4
	ErrIPHeaderLen         // IHL below 5 or past the frame
	ErrIPLength            // total length below the header length or past the frame
	ErrFragment            // an IP fragment: only the first carries ports
	ErrNotTCP              // another protocol
	ErrTCPHeaderLen        // data offset below 5 or past the datagram
	ErrVnet                // a virtio-net header inconsistent with the frame
	NumReasons
)

var reasonNames = [NumReasons]string{
	OK:              "ok",
	ErrRunt:         "runt",
	ErrNotIPv4:      "not_ipv4",
	ErrIPVersion:    "bad_ip_version",
	ErrIPHeaderLen:  "bad_ip_header_len",
	ErrIPLength:     "bad_ip_length",
	ErrFragment:     "fragment",
	ErrNotTCP:       "not_tcp",
	ErrTCPHeaderLen: "bad_tcp_header_len",
	ErrVnet:         "bad_vnet_header",
}

// String returns the reason as a metric label.
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Frame is a parsed Ethernet/IPv4/TCP frame. All fields are views into the
// buffer given to Parse; a Frame lives on the stack of the worker that owns the
// buffer.
type Frame struct {
	Vnet VnetHdr  // nil when the socket has no virtio-net header
	Eth  Ethernet // Ethernet header and everything after it, trimmed to the IP total length
	IP   IPv4     // IP header and payload
	TCP  TCP      // TCP header and payload
	// L4Off is the offset of the TCP header from the start of Eth: the
	// csum_start of a NEEDS_CSUM frame.
	L4Off int
}

// Partial reports whether the TCP checksum field is a NEEDS_CSUM seed.
func (f *Frame) Partial() bool { return f.Vnet != nil && f.Vnet.NeedsCsum() }

// Payload returns the TCP payload.
func (f *Frame) Payload() []byte { return f.TCP[f.TCP.DataOffset():] }

// Parse parses buf, which starts with a virtio-net header when vnet is true,
// then an Ethernet header. It checks every length before using it, so any
// input is safe. IP options are accepted (the data path rewrites only the
// fixed fields). Trailing Ethernet padding past the IP total length is cut
// off. An IPv4 total length of 0 on a GSO frame is IPv4 BIG TCP
// (gso_ipv4_max_size > 64 KiB): the frame length is used instead.
func (f *Frame) Parse(buf []byte, vnet bool) Reason {
	*f = Frame{}
	if vnet {
		if len(buf) < VnetHdrLen {
			return ErrRunt
		}
		f.Vnet = VnetHdr(buf[:VnetHdrLen])
		buf = buf[VnetHdrLen:]
	}
	if len(buf) < EthernetLen+IPv4MinLen {
		return ErrRunt
	}
	if binary.BigEndian.Uint16(buf[12:14]) != EtherTypeIPv4 {
		return ErrNotIPv4
	}
	ip := IPv4(buf[EthernetLen:])
	if ip.Version() != 4 {
		return ErrIPVersion
	}
	hl := ip.HeaderLen()
	if hl < IPv4MinLen || hl > len(ip) {
		return ErrIPHeaderLen
	}
	tl := int(ip.TotalLen())
	if tl == 0 && f.Vnet != nil && f.Vnet.GSOType()&^VnetGSOECN == VnetGSOTCPv4 {
		tl = len(ip)
	}
	if tl < hl || tl > len(ip) {
		return ErrIPLength
	}
	ip = ip[:tl]
	if ip.IsFragment() {
		return ErrFragment
	}
	if ip.Protocol() != ProtocolTCP {
		return ErrNotTCP
	}
	tcp := TCP(ip[hl:])
	if len(tcp) < TCPMinLen {
		return ErrTCPHeaderLen
	}
	if do := tcp.DataOffset(); do < TCPMinLen || do > len(tcp) {
		return ErrTCPHeaderLen
	}
	f.Eth = Ethernet(buf[:EthernetLen+tl])
	f.IP = ip
	f.TCP = tcp
	f.L4Off = EthernetLen + hl
	if f.Vnet != nil && f.Vnet.NeedsCsum() {
		if int(f.Vnet.CsumStart()) != f.L4Off || f.Vnet.CsumOffset() != TCPChecksumOffset {
			return ErrVnet
		}
	}
	return OK
}

// Len returns the length of the frame from the start of the virtio-net header
// (if any) to the end of the IP datagram: what to send.
func (f *Frame) Len() int {
	if f.Vnet != nil {
		return VnetHdrLen + len(f.Eth)
	}
	return len(f.Eth)
}

// SegLen returns the TCP segment length as sequence space counts it: the
// payload plus one for SYN and one for FIN.
func (f *Frame) SegLen() uint32 {
	n := uint32(len(f.TCP) - f.TCP.DataOffset())
	fl := f.TCP.Flags()
	if fl&TCPFlagSYN != 0 {
		n++
	}
	if fl&TCPFlagFIN != 0 {
		n++
	}
	return n
}

// RSTReplyLen is the length of the frame MakeRSTReply builds, without the
// virtio-net header.
const RSTReplyLen = EthernetLen + IPv4MinLen + TCPMinLen

// MakeRSTReply turns f, in its own buffer, into the RST that the receiver of
// f would send back (RFC 9293 section 3.10.7.1): if f carries an ACK, the RST
// takes its sequence number from that ACK; otherwise it has sequence 0 and
// acknowledges everything f occupied (so a SYN gets a RST+ACK, which the
// client's kernel reports as "connection refused"). MACs, addresses and ports
// are swapped, IP options and payload dropped, both checksums computed in
// full, and the virtio-net header cleared. It returns the new frame length,
// as Len would. f must be a frame that Parse accepted; it must not be used
// afterwards.
func (f *Frame) MakeRSTReply(ttl uint8) int {
	eth := f.Eth
	src, dst := eth.Src(), eth.Dst()
	ipSrc, ipDst := f.IP.Src(), f.IP.Dst()
	sport, dport := f.TCP.SrcPort(), f.TCP.DstPort()
	seq, ack, flags := f.TCP.Seq(), f.TCP.Ack(), f.TCP.Flags()
	segLen := f.SegLen()

	eth.SetDst(src)
	eth.SetSrc(dst)
	ip := IPv4(eth[EthernetLen : EthernetLen+IPv4MinLen])
	ip[0] = 0x45
	ip[1] = 0
	ip.SetTotalLen(IPv4MinLen + TCPMinLen)
	binary.BigEndian.PutUint16(ip[4:6], 0)
	binary.BigEndian.PutUint16(ip[6:8], 0x4000) // DF
	ip.SetTTL(ttl)
	ip[9] = ProtocolTCP
	ip.SetSrc(ipDst)
	ip.SetDst(ipSrc)
	ip.SetChecksum(0)
	ip.SetChecksum(ip.CalculateChecksum())

	t := TCP(eth[EthernetLen+IPv4MinLen : RSTReplyLen])
	t.SetSrcPort(dport)
	t.SetDstPort(sport)
	if flags&TCPFlagACK != 0 {
		t.SetSeq(ack)
		t.SetAck(0)
		t.SetFlags(TCPFlagRST)
	} else {
		t.SetSeq(0)
		t.SetAck(seq + segLen)
		t.SetFlags(TCPFlagRST | TCPFlagACK)
	}
	t.SetDataOffset(TCPMinLen)
	t.SetWindow(0)
	t.SetUrgent(0)
	t.SetChecksum(0)
	t.SetChecksum(t.CalculateChecksum(ipDst, ipSrc))

	if f.Vnet != nil {
		f.Vnet.Clear()
		return VnetHdrLen + RSTReplyLen
	}
	return RSTReplyLen
}
