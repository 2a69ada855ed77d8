package packet

// Tuple4 is the address part of a TCP/IPv4 segment that NAT rewrites.
type Tuple4 struct {
	Src, Dst         [4]byte
	SrcPort, DstPort uint16
}

// Tuple returns the frame's addresses and ports.
func (f *Frame) Tuple() Tuple4 {
	return Tuple4{Src: f.IP.Src(), Dst: f.IP.Dst(), SrcPort: f.TCP.SrcPort(), DstPort: f.TCP.DstPort()}
}

// Rewrite sets the frame's addresses and ports to t and fixes the IPv4 header
// checksum and the TCP checksum incrementally. A complete TCP checksum is
// updated over the changed address and port words (RFC 1624 eqn. 3); a
// NEEDS_CSUM seed over the changed address words only, uncomplemented, since
// the device will sum the header, ports included, on top of it. Lengths do not
// change, so a GSO frame stays valid as it is.
func (f *Frame) Rewrite(t Tuple4) {
	ip, tcp := f.IP, f.TCP
	oldSrc, oldDst := ip.Src(), ip.Dst()
	addr := Delta(0).Addr(oldSrc, t.Src).Addr(oldDst, t.Dst)
	if addr != 0 {
		ip.SetSrc(t.Src)
		ip.SetDst(t.Dst)
		ip.SetChecksum(addr.ApplyFull(ip.Checksum()))
	}
	ports := Delta(0).Word(tcp.SrcPort(), t.SrcPort).Word(tcp.DstPort(), t.DstPort)
	tcp.SetSrcPort(t.SrcPort)
	tcp.SetDstPort(t.DstPort)
	if f.Partial() {
		tcp.SetChecksum(addr.ApplyPartial(tcp.Checksum()))
		return
	}
	tcp.SetChecksum(addr.Plus(ports).ApplyFull(tcp.Checksum()))
}
